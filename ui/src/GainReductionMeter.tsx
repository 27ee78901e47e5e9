import { useRef } from "react";
import { formatDb, grFraction, holdDeepest, GR_FLOOR_DB, type GrHold } from "./levels";

export interface GainReductionMeterProps {
  /** The element id (tests read its `data-gr-db`). */
  id: string;
  /** The stage it measures ("Compressor"), for assistive tech. */
  label: string;
  /** The deepest reduction since the previous meter frame, dB (≤ 0); null when no meters arrive
   *  (not live): the meter is drawn empty and dim, with no number. */
  db: number | null;
  /** The clock for the peak hold, ms (tests pass their own). */
  now?: number;
}

const TICKS = [-24, -18, -12, -6];

/** `db` as the `data-gr-db` attribute holds it: two decimals, 0 rather than −0. */
function attr(db: number): string {
  const r = Math.round(db * 100) / 100;
  return String(r === 0 ? 0 : r);
}

/** A horizontal gain-reduction meter, as OBS draws one: the bar grows from the right (0 dB)
 *  towards GR_FLOOR_DB, a marker holds the deepest reduction for a second, the readout gives
 *  the figure ("−∞ dB" for a closed gate). */
export function GainReductionMeter({ id, label, db, now = Date.now() }: GainReductionMeterProps) {
  const value = db == null || Number.isNaN(db) ? null : Math.min(0, db);
  const held = useRef<GrHold | null>(null);
  held.current = value === null ? null : holdDeepest(held.current, value, now);
  const pct = (d: number | null) => `${(grFraction(d) * 100).toFixed(1)}%`;
  const hold = held.current !== null && held.current.db < 0 ? held.current.db : null;
  return (
    <div
      className={`gr-meter${value === null ? " idle" : ""}`}
      id={id}
      data-gr-db={value === null ? undefined : attr(value)}
      title={value === null ? "Gain reduction: shown while you are live" : `Gain reduction: ${formatDb(value)}`}
    >
      <span className="gr-label">Reduction</span>
      <div
        className="gr-track"
        role="meter"
        aria-label={`${label} gain reduction`}
        aria-valuemin={GR_FLOOR_DB}
        aria-valuemax={0}
        aria-valuenow={value === null ? undefined : Math.max(GR_FLOOR_DB, value)}
      >
        <div className="gr-fill" style={{ width: pct(value) }} />
        {hold !== null && <div className="gr-hold" data-testid="gr-hold" style={{ right: `min(${pct(hold)}, calc(100% - 2px))` }} />}
        <div className="gr-scale" aria-hidden="true">
          {TICKS.map((t) => (
            <span key={t} style={{ right: pct(t) }}>{t}</span>
          ))}
        </div>
      </div>
      <output className="gr-readout">{value === null ? "—" : formatDb(value)}</output>
    </div>
  );
}
