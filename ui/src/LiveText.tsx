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
  ...rest
}: {
  text: string;
  className?: string;
  align?: "left" | "right";
} & Omit<React.HTMLAttributes<HTMLSpanElement>, "children" | "className">) {
  const cls = `live-text${align === "left" ? " live-text-left" : ""}${className ? ` ${className}` : ""}`;
  return (
    <span className={cls} {...rest}>
      <span className="live-text-inner">{text}</span>
    </span>
  );
}
