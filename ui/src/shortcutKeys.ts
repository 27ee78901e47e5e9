// Keyboard events as shortcut text, written the way the Studio's Rust side normalises it
// (`Ctrl+Alt+Shift+Super+KEY`, with `KeyM` as `M` and `Digit1` as `1`).

/** Keys that only modify. */
export function isModifierKey(code: string): boolean {
  return /^(Control|Shift|Alt|Meta|OS)(Left|Right)?$/.test(code);
}

/** The shortcut text of a key event. */
export function acceleratorOf(e: { ctrlKey: boolean; altKey: boolean; shiftKey: boolean; metaKey: boolean; code: string }): string {
  let out = "";
  if (e.ctrlKey) out += "Ctrl+";
  if (e.altKey) out += "Alt+";
  if (e.shiftKey) out += "Shift+";
  if (e.metaKey) out += "Super+";
  return out + e.code.replace(/^Key(?=[A-Z]$)/, "").replace(/^Digit(?=[0-9]$)/, "");
}

/** The `KeyboardEvent.code` of a shortcut's main key. */
export function keyOfAccelerator(acc: string): string {
  const key = acc.split("+").pop() ?? "";
  if (/^[A-Z]$/.test(key)) return `Key${key}`;
  if (/^[0-9]$/.test(key)) return `Digit${key}`;
  return key;
}

/** Whether a shortcut holds Ctrl, Alt or Super (so it cannot be typing). */
export function hasCommandModifier(acc: string): boolean {
  return /(^|\+)(Ctrl|Alt|Super)\+/.test(acc);
}
