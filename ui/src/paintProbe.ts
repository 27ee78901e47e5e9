/**
 * Event-to-paint probe: for each room status the Studio sends (stamped with `emittedAtMs`, Unix
 * ms, when the Rust side emitted it), the delay until the first animation frame after React
 * committed it to the DOM. Kept in a bounded ring on `window.__onmicPaint` for the
 * `studio_paint` benchmark (docs/studio.md, Live stats); costs one rAF per status.
 */
const KEEP = 20_000;

declare global {
  interface Window {
    __onmicPaint?: number[];
    __onmicReceive?: number[];
  }
}

function keep(ring: number[], value: number): void {
  if (ring.length >= KEEP) ring.splice(0, ring.length - KEEP + 1);
  ring.push(value);
}

/** The delay from the Rust side's emission to the status's arrival in the web view's handler
 *  (`window.__onmicReceive`): what of the event-to-paint delay is transport and a busy main
 *  thread, before React renders. */
export function noteReceive(emittedAtMs: number | null | undefined): void {
  if (!(emittedAtMs != null && emittedAtMs > 0)) return;
  keep((window.__onmicReceive ??= []), performance.timeOrigin + performance.now() - emittedAtMs);
}

export function notePaint(emittedAtMs: number): void {
  if (!(emittedAtMs > 0)) return;
  requestAnimationFrame(() => {
    keep((window.__onmicPaint ??= []), performance.timeOrigin + performance.now() - emittedAtMs);
  });
}
