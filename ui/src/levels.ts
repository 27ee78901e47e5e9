// Meter scale: what a level in dBFS looks like on screen.

/** The bottom of the meter; anything quieter shows as an empty bar. */
export const FLOOR_DB = -60;

/** Position of `db` on a bar from FLOOR_DB (0) to 0 dBFS (1); null and NaN count as silence. */
export function barFraction(db: number | null | undefined): number {
  if (db == null || Number.isNaN(db) || db <= FLOOR_DB) return 0;
  if (db >= 0) return 1;
  return (db - FLOOR_DB) / -FLOOR_DB;
}

/**
 * The style that fills a level bar to `fraction` (0–1) of its track. The bar spans the track and
 * is scaled, not resized: a scale is a change the compositor makes to the bar's own layer, where
 * a width lays the track out and repaints it (without a GPU that repaint is most of a frame's
 * cost; docs/studio.md, "Sixth round").
 */
export function barFill(fraction: number): { transform: string } {
  return { transform: `scaleX(${unit(fraction).toFixed(3)})` };
}

/** The style that puts a marker (the peak hold) at `fraction` of its track: the marker spans the
 *  track with its right edge drawn, and is moved by a translation (see `barFill`). */
export function barMark(fraction: number): { transform: string } {
  return { transform: `translateX(${(unit(fraction) * 100 - 100).toFixed(1)}%)` };
}

/** `fraction` held to 0–1; not a number: 0. */
function unit(fraction: number): number {
  return Number.isFinite(fraction) ? Math.min(1, Math.max(0, fraction)) : 0;
}

/** A level as the readout shows it: one decimal, a real minus sign, "−∞" for silence. */
export function formatDb(db: number | null | undefined): string {
  if (db == null || Number.isNaN(db) || db <= -99.5) return "−∞ dB";
  // A figure that rounds to 0 reads "0.0", not "−0.0".
  const text = (Math.abs(db) < 0.05 ? 0 : db).toFixed(1).replace("-", "−");
  return `${text} dB`;
}

/** The colour zone of a level: green below −18, amber to −6, red above. */
export function zone(db: number | null | undefined): "ok" | "hot" | "clip" {
  if (db == null || Number.isNaN(db) || db < -18) return "ok";
  return db < -6 ? "hot" : "clip";
}

/** Channel names for an n-channel device. */
export function channelLabel(index: number, count: number): string {
  if (count === 1) return "Mono";
  if (count === 2) return index === 0 ? "L" : "R";
  return `Ch ${index + 1}`;
}

/** The deepest gain reduction a gain-reduction meter draws; deeper fills the whole bar. */
export const GR_FLOOR_DB = -30;

/** How long a gain-reduction meter holds its deepest reading before letting it go, ms. */
export const GR_HOLD_MS = 1000;

/** Share of a gain-reduction bar that `db` (≤ 0) fills, from 0 dB (empty) to GR_FLOOR_DB (full). */
export function grFraction(db: number | null | undefined): number {
  if (db == null || Number.isNaN(db) || db >= 0) return 0;
  if (db <= GR_FLOOR_DB) return 1;
  return db / GR_FLOOR_DB;
}

/** A held reading: the deepest reduction and when it was seen. */
export interface GrHold {
  db: number;
  at: number;
}

/** The peak hold after reading `db` at `now`: a deeper (or equal) reading restarts the hold; a
 *  hold older than GR_HOLD_MS falls back to the reading. */
export function holdDeepest(prev: GrHold | null, db: number, now: number): GrHold {
  if (prev === null || db <= prev.db || now - prev.at > GR_HOLD_MS) return { db, at: now };
  return prev;
}
