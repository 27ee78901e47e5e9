import { useEffect, useReducer, useRef } from "react";

/**
 * Text that changes many times a second (a meter's readout, the latency and link figures),
 * drawn so that a change repaints only the text itself.
 *
 * In WebKitGTK (the Studio's web view on Linux) a change to text in the normal flow lays out its
 * flex/grid ancestors again and redraws the whole column around it: with damage-only compositing
 * on, the audio column was redrawn in full on every meter frame, and together with the seat
 * levels' frames that took each frame from ~17 to ~45 ms without a GPU (docs/studio.md,
 * "Eighth round"). Out of the flow, in a box whose size does not depend on the text, a change
 * lays out and repaints the text alone. The box keeps the element's id and classes; the text sits
 * in `.live-text-inner`, aligned right by default (`align="left"` puts it on the left).
 */
export function LiveText({
  text,
  className,
  align = "right",
  holdMs = 0,
  ...rest
}: {
  text: string;
  className?: string;
  align?: "left" | "right";
  /** Shows a new text at most this often (ms; 0: every change), then the latest one. */
  holdMs?: number;
} & Omit<React.HTMLAttributes<HTMLSpanElement>, "children" | "className">) {
  const shown = useHeldText(text, holdMs);
  const cls = `live-text${align === "left" ? " live-text-left" : ""}${className ? ` ${className}` : ""}`;
  return (
    <span className={cls} {...rest}>
      <span className="live-text-inner">{shown}</span>
    </span>
  );
}

/** A meter readout's hold (ms): the bars follow every meter frame (15–30 a second), the figure
 *  beside them changes at most four times a second — as fast as anyone reads a number, and each
 *  change costs the web view a text repaint and the re-upload of its tile (without a GPU ~11 ms
 *  of a core per meter frame, docs/studio.md, "Ninth round"). */
export const READOUT_HOLD_MS = 250;

/** `text`, changed at most every `holdMs` ms: a change within the hold shows when the hold ends
 *  (a timer renders it then, so the last value always shows even if no other change comes). */
export function useHeldText(text: string, holdMs: number): string {
  const [, rerender] = useReducer((n: number) => n + 1, 0);
  const held = useRef<{ text: string; at: number } | null>(null);
  const now = Date.now();
  const h = held.current;
  let shown = text;
  if (holdMs > 0 && h !== null && h.text !== text && now >= h.at && now - h.at < holdMs) {
    shown = h.text;
  } else if (h === null || h.text !== text) {
    held.current = { text, at: now };
  }
  const since = held.current?.at ?? now;
  useEffect(() => {
    if (shown === text) return;
    const t = setTimeout(rerender, Math.max(0, holdMs - (Date.now() - since)));
    return () => clearTimeout(t);
  }, [shown, text, holdMs, since]);
  return shown;
}
