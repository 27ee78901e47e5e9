import { acceleratorOf, hasCommandModifier, isModifierKey, keyOfAccelerator } from "./shortcutKeys";

const ev = (code: string, mods: Partial<{ ctrlKey: boolean; altKey: boolean; shiftKey: boolean; metaKey: boolean }> = {}) => ({
  ctrlKey: false,
  altKey: false,
  shiftKey: false,
  metaKey: false,
  ...mods,
  code,
});

describe("shortcut text", () => {
  it("writes modifiers in the Rust side's order and short key names", () => {
    expect(acceleratorOf(ev("KeyM", { shiftKey: true, ctrlKey: true }))).toBe("Ctrl+Shift+M");
    expect(acceleratorOf(ev("Digit1", { altKey: true }))).toBe("Alt+1");
    expect(acceleratorOf(ev("F9"))).toBe("F9");
    expect(acceleratorOf(ev("Space", { metaKey: true }))).toBe("Super+Space");
    expect(acceleratorOf(ev("KeyboardLayout"))).toBe("KeyboardLayout");
  });
  it("finds the main key's code back for key-up matching", () => {
    for (const code of ["KeyM", "Digit7", "F9", "Space", "ArrowUp"]) {
      expect(keyOfAccelerator(acceleratorOf(ev(code, { ctrlKey: true })))).toBe(code);
    }
  });
  it("knows modifiers and typing-safe shortcuts", () => {
    expect(isModifierKey("ShiftLeft")).toBe(true);
    expect(isModifierKey("ControlRight")).toBe(true);
    expect(isModifierKey("KeyA")).toBe(false);
    expect(hasCommandModifier("Ctrl+Shift+M")).toBe(true);
    expect(hasCommandModifier("Shift+M")).toBe(false);
    expect(hasCommandModifier("F9")).toBe(false);
  });
});
