/** Display helpers for the effects and music panels (pure, unit-tested). */

const LABELS: Record<string, string> = {
  ktv: "KTV",
  vocal_concert: "Vocal concert",
  studio: "Studio",
  phonograph: "Phonograph",
  virtual_stereo: "Virtual stereo",
  spacious: "Spacious",
  ethereal: "Ethereal",
  "3d_voice": "3D voice",
  uncle: "Uncle",
  old_man: "Old man",
  boy: "Boy",
  sister: "Sister",
  girl: "Girl",
  pig_king: "Pig king",
  hulk: "Hulk",
  magnetic: "Magnetic",
  fresh: "Fresh",
  vital: "Vital",
};

/** A preset's display name ("vocal_concert" → "Vocal concert"). */
export function presetLabel(name: string): string {
  if (LABELS[name]) return LABELS[name];
  const s = name.replace(/_/g, " ");
  return s.charAt(0).toUpperCase() + s.slice(1);
}

/** "31 Hz", "1k", "16k". */
export function formatHz(hz: number): string {
  if (hz >= 1000) {
    const k = hz / 1000;
    return `${Number.isInteger(k) ? k.toFixed(0) : k.toFixed(1)}k`;
  }
  return `${Math.round(hz)} Hz`;
}

/** Log-spaced frequencies for the EQ curve, 20 Hz – 20 kHz. */
export const CURVE_FREQS: number[] = Array.from({ length: 120 }, (_, i) => 20 * Math.pow(1000, i / 119));

/** An SVG path through `db` values (one per CURVE_FREQS point), ±range dB over the height. */
export function eqCurvePath(db: number[], width: number, height: number, range: number): string {
  if (db.length === 0) return `M0 ${height / 2} L${width} ${height / 2}`;
  const y = (d: number) => height / 2 - (Math.max(-range, Math.min(range, d)) / range) * (height / 2 - 2);
  return db.map((d, i) => `${i === 0 ? "M" : "L"}${((i / (db.length - 1)) * width).toFixed(1)} ${y(d).toFixed(1)}`).join(" ");
}

/** "m:ss" for a position in ms. */
export function formatClock(ms: number | null | undefined): string {
  if (ms === null || ms === undefined || !Number.isFinite(ms) || ms < 0) return "–:––";
  const s = Math.floor(ms / 1000);
  return `${Math.floor(s / 60)}:${String(s % 60).padStart(2, "0")}`;
}

/** "3.2 of 5.1 MB" for a download. */
export function formatProgress(received: number, total: number): string {
  const mb = (b: number) => (b / 1048576).toFixed(1);
  return total > 0 ? `${mb(received)} of ${mb(total)} MB` : `${mb(received)} MB`;
}
