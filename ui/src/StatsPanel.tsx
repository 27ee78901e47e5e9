import "./StatsPanel.css";
import type { LiveStats, StatsPoint } from "./bindings";
import { LiveText } from "./LiveText";

/** A figure, or "—" while it is unknown. */
export function figure(v: number | null | undefined, digits: number, unit: string): string {
  if (v === null || v === undefined || !Number.isFinite(v)) return "—";
  return `${v.toFixed(digits)} ${unit}`;
}

/** Two statuses' stats are the same reading: each status carries them as a new object, equal to
 *  the last one between readings (compared as JSON, a few kB once per status). */
export function sameStats(a: LiveStats, b: LiveStats): boolean {
  return a === b || JSON.stringify(a) === JSON.stringify(b);
}

/** Loss above this is shown as a warning, above `LOSS_BAD` as bad. */
const LOSS_WARN = 2;
const LOSS_BAD = 8;

function lossClass(v: number | null | undefined): string {
  if (v === null || v === undefined) return "";
  return v >= LOSS_BAD ? " bad" : v >= LOSS_WARN ? " warn" : " good";
}

const W = 240;
const H = 56;
const SPAN_S = 60;

/** A polyline of `pick` over the last 60 s, scaled to `max` (or the series' own maximum). */
function series(points: StatsPoint[], pick: (p: StatsPoint) => number | null | undefined, max: number): string {
  const segs: string[] = [];
  let run: string[] = [];
  for (const p of points) {
    const v = pick(p);
    if (v === null || v === undefined) {
      if (run.length > 1) segs.push(run.join(" "));
      run = [];
      continue;
    }
    const x = W + ((p.t ?? 0) / SPAN_S) * W;
    const y = H - 2 - (Math.min(v, max) / max) * (H - 4);
    run.push(`${x.toFixed(1)},${y.toFixed(1)}`);
  }
  if (run.length > 1) segs.push(run.join(" "));
  return segs.join(" M");
}

function Graph({ points }: { points: StatsPoint[] }) {
  const rates = points.map((p) => p.bitrateKbps ?? 0);
  const rateMax = Math.max(64, ...rates) * 1.15;
  const losses = points.map((p) => p.lossPercent ?? 0);
  const lossMax = Math.max(10, ...losses) * 1.15;
  const rate = series(points, (p) => p.bitrateKbps, rateMax);
  const loss = series(points, (p) => p.lossPercent, lossMax);
  return (
    <svg className="stats-graph" viewBox={`0 0 ${W} ${H}`} preserveAspectRatio="none" role="img" aria-label="Bitrate and loss, last 60 seconds" id="stats-graph">
      {[0.25, 0.5, 0.75].map((f) => (
        <line key={f} x1={0} x2={W} y1={H * f} y2={H * f} className="grid" />
      ))}
      {rate && <path d={`M${rate}`} className="rate" />}
      {loss && <path d={`M${loss}`} className="loss" />}
    </svg>
  );
}

export interface StatsPanelProps {
  stats: LiveStats;
  /** The jitter buffer of the most-buffered speaker (the engine's playout), ms; null when nobody is heard. */
  jitterMs: number | null;
  /** Seat occupants' display names by uid (falls back to the uid). */
  names?: Record<string, string>;
}

/** Live link statistics with a 60-second graph (docs/studio.md, Live stats). */
export function StatsPanel({ stats, jitterMs, names }: StatsPanelProps) {
  const rows: [string, string, string, string][] = [
    ["listeners", "Listeners", stats.listeners == null ? "—" : String(stats.listeners), ""],
    ["bitrate", "Sending", figure(stats.bitrateKbps, 0, "kbit/s"), ""],
    ["loss", "Loss (10 s)", figure(stats.lossPercent, 1, "%"), lossClass(stats.lossPercent)],
    ["rtt", "Round trip", figure(stats.rttMs, stats.rttMs != null && stats.rttMs < 10 ? 1 : 0, "ms"), ""],
    ["jitter", "Jitter buffer", figure(jitterMs, 0, "ms"), ""],
  ];
  return (
    <section className="card stats-panel" id="stats-panel" aria-labelledby="stats-title">
      <header className="card-head">
        <h2 id="stats-title">Live stats</h2>
        {/* Before the first reading the interval is not known (0): no "every 0 s". */}
        <span className="muted small" id="stats-span">last 60 s{stats.intervalS != null && stats.intervalS > 0 && ` · every ${stats.intervalS} s`}</span>
      </header>
      <dl className="stats-figures">
        {rows.map(([id, label, value, cls]) => (
          <div key={id} className={`stat${cls}`}>
            <dt>{label}</dt>
            <dd id={`stat-${id}`} data-value={value}>
              <LiveText text={value} align="left" />
            </dd>
          </div>
        ))}
      </dl>
      <Graph points={stats.history} />
      <p className="stats-legend muted small">
        <span className="swatch rate" /> sending kbit/s <span className="swatch loss" /> loss %
        {stats.lastReportLossPercent != null && <> · last report {stats.lastReportLossPercent.toFixed(1)} %</>}
      </p>
      {stats.speakers.length > 0 && (
        <table className="speaker-loss" id="speaker-loss">
          <thead>
            <tr>
              <th>Speaker</th>
              <th>Seat</th>
              <th>Loss to you</th>
            </tr>
          </thead>
          <tbody>
            {stats.speakers.map((s) => (
              <tr key={s.uid} data-uid={s.uid}>
                <td className="name">{names?.[s.uid] ?? s.uid}</td>
                <td>{s.seat === 0 ? "Host" : s.seat}</td>
                <td className={`loss${lossClass(s.lossPercent)}`} data-value={s.lossPercent ?? ""}>
                  {figure(s.lossPercent, 1, "%")}
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
    </section>
  );
}
