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
  }
}

export function notePaint(emittedAtMs: number): void {
  if (!(emittedAtMs > 0)) return;
  requestAnimationFrame(() => {
    const delay = performance.timeOrigin + performance.now() - emittedAtMs;
    const ring = (window.__onmicPaint ??= []);
    if (ring.length >= KEEP) ring.splice(0, ring.length - KEEP + 1);
    ring.push(delay);
  });
}
