/**
 * Event-to-paint probe: for each room status the Studio sends (stamped with `emittedAtMs`, Unix
 * ms, when the Rust side emitted it), the delay until the first animation frame after React
 * committed it or a later status to the DOM. A status that a newer one replaced before React
 * rendered is counted too, with its own (longer) delay: what it carried was painted then. Kept
 * in bounded rings on `window.__onmicPaint` (one entry per status; its emission time on
 * `window.__onmicPaintAt`), `window.__onmicCommit` (the
 * emission to React's commit, per committed status) and `window.__onmicFrames` (statuses per
 * painted commit) for the `studio_paint` benchmark (docs/studio.md, Live stats);
 * costs one rAF per commit.
 */
const KEEP = 20_000;

declare global {
  interface Window {
    __onmicPaint?: number[];
    /** The emission times of the statuses on `__onmicPaint`, in the same order. */
    __onmicPaintAt?: number[];
    __onmicReceive?: number[];
    __onmicReceiveAt?: number[];
    __onmicCommit?: number[];
    __onmicFrames?: number[];
    /** Diagnosis: the live meters show at most one frame per this many ms (App.tsx). */
    __onmicMeterEveryMs?: number;
  }
}

function keep(ring: number[], value: number): void {
  if (ring.length >= KEEP) ring.splice(0, ring.length - KEEP + 1);
  ring.push(value);
}

/** The delay from the Rust side's emission to the status's arrival in the web view's handler
 *  (`window.__onmicReceive`, with the emission times alongside in `window.__onmicReceiveAt`):
 *  what of the event-to-paint delay is transport and a busy main thread, before React renders. */
export function noteReceive(emittedAtMs: number | null | undefined): void {
  if (!(emittedAtMs != null && emittedAtMs > 0)) return;
  keep((window.__onmicReceive ??= []), performance.timeOrigin + performance.now() - emittedAtMs);
  keep((window.__onmicReceiveAt ??= []), emittedAtMs);
  if (unpainted.length >= KEEP) unpainted.shift();
  unpainted.push(emittedAtMs);
}

/** Emission times of the statuses received and not yet painted, oldest first. */
const unpainted: number[] = [];

/** React committed the status emitted at `emittedAtMs` (called from a layout effect, i.e. in the
 *  commit, before the browser can paint): its delay from emission to the commit goes on
 *  `window.__onmicCommit`, and at the next frame that status and every older one received before
 *  it count as painted. */
export function notePaint(emittedAtMs: number): void {
  if (!(emittedAtMs > 0)) return;
  keep((window.__onmicCommit ??= []), performance.timeOrigin + performance.now() - emittedAtMs);
  requestAnimationFrame(() => {
    const now = performance.timeOrigin + performance.now();
    const paint = (window.__onmicPaint ??= []);
    const paintAt = (window.__onmicPaintAt ??= []);
    // Emission times come in order: the painted ones are a prefix.
    const n = unpainted.findIndex((e) => e > emittedAtMs);
    const painted = unpainted.splice(0, n < 0 ? unpainted.length : n);
    // Nothing left: an older commit's frame counted these statuses already.
    if (painted.length === 0) return;
    for (const e of painted) {
      keep(paint, now - e);
      keep(paintAt, e);
    }
    keep((window.__onmicFrames ??= []), painted.length);
  });
}
