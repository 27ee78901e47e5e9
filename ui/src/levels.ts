// Meter scale: what a level in dBFS looks like on screen.

/** The bottom of the meter; anything quieter shows as an empty bar. */
export const FLOOR_DB = -60;

/** Position of `db` on a bar from FLOOR_DB (0) to 0 dBFS (1); null and NaN count as silence. */
export function barFraction(db: number | null | undefined): number {
  if (db == null || Number.isNaN(db) || db <= FLOOR_DB) return 0;
  if (db >= 0) return 1;
  return (db - FLOOR_DB) / -FLOOR_DB;
}

/** A level as the readout shows it: one decimal, a real minus sign, "−∞" for silence. */
export function formatDb(db: number | null | undefined): string {
  if (db == null || Number.isNaN(db) || db <= -99.5) return "−∞ dB";
  const text = db.toFixed(1).replace("-", "−");
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
