import { barFill, barFraction, barMark, channelLabel, formatDb, zone } from "./levels";
import { LiveText, READOUT_HOLD_MS } from "./LiveText";
import { inputMeters, useStore } from "./meterStore";

export interface MeterBarProps {
  label: string;
  rmsDbfs: number | null;
  peakDbfs: number | null;
  /** Highest recent peak, drawn as a thin marker that falls back slowly. */
  holdDbfs: number | null;
}

/** One channel's level: an RMS bar, the peak as a lighter bar, a peak-hold marker and a readout. */
export function MeterBar({ label, rmsDbfs, peakDbfs, holdDbfs }: MeterBarProps) {
  const pct = (db: number | null) => `${(barFraction(db) * 100).toFixed(1)}%`;
  return (
    <div
      className="meter"
      data-testid="meter-channel"
      data-rms-dbfs={rmsDbfs ?? -100}
      data-peak-dbfs={peakDbfs ?? -100}
    >
      <span className="meter-label">{label}</span>
      <div className="meter-track" role="meter" aria-label={`${label} level`} aria-valuemin={-60} aria-valuemax={0} aria-valuenow={rmsDbfs ?? -100}>
        <div className={`meter-peak zone-${zone(peakDbfs)}`} style={barFill(barFraction(peakDbfs))} />
        <div className={`meter-rms zone-${zone(rmsDbfs)}`} style={barFill(barFraction(rmsDbfs))} />
        <div className="meter-hold" style={barMark(barFraction(holdDbfs))} />
        <div className="meter-scale" aria-hidden="true">
          {[-48, -36, -24, -18, -12, -6].map((db) => (
            <span key={db} style={{ left: pct(db) }}>
              {db}
            </span>
          ))}
        </div>
      </div>
      <LiveText className="meter-readout" data-testid="meter-readout" holdMs={READOUT_HOLD_MS} text={formatDb(rmsDbfs)} />
    </div>
  );
}

/** The input meter's channels and the clip warning, drawn from the meter stream's store: a frame
 *  re-renders this block only. */
export function InputMeters() {
  const { frame, hold } = useStore(inputMeters);
  const channels = frame?.channels ?? [];
  return (
    <div className="meters" id="meters">
      {channels.map((c, i) => (
        <MeterBar key={i} label={channelLabel(i, channels.length)} rmsDbfs={c.rmsDbfs} peakDbfs={c.peakDbfs} holdDbfs={hold[i] ?? null} />
      ))}
      {frame?.clipped && (
        <p className="clip-warning" role="alert">
          Clipping: lower the gain on your sound card.
        </p>
      )}
    </div>
  );
}
