import { useState } from "react";
import { Channel } from "@tauri-apps/api/core";
import { commands, type AppError, type MicTestProgress, type MicTestReport } from "./bindings";
import { formatDb } from "./levels";

interface Props {
  /** On air: the test would go out to the room, so it waits. */
  live: boolean;
  onError: (e: AppError) => void;
  /** Settles once an input picked a moment ago has applied (the test records the input the
   *  settings name). */
  inputReady: () => Promise<void>;
}

const VERDICT_LABEL: Record<MicTestReport["verdict"], string> = {
  good: "Sounds good",
  hot: "Loud",
  clipped: "Clipped",
  tooQuiet: "Too quiet",
};

/** "Test my mic": 5 s through the chosen chain, played back on the chosen output, with advice. */
export function MicTest({ live, onError, inputReady }: Props) {
  const [progress, setProgress] = useState<MicTestProgress | null>(null);
  const [report, setReport] = useState<MicTestReport | null>(null);
  const running = progress !== null;

  const start = async () => {
    setReport(null);
    setProgress({ phase: "starting", elapsedMs: 0, totalMs: 5000, levelDbfs: -100 });
    const channel = new Channel<MicTestProgress>();
    channel.onmessage = setProgress;
    await inputReady();
    const result = await commands.testMic(channel);
    setProgress(null);
    if (result.status === "ok") setReport(result.data);
    else if (result.error.message !== "Mic test stopped.") onError(result.error);
  };

  const phase = progress?.phase;
  const fraction = progress && progress.totalMs > 0 ? Math.min(1, progress.elapsedMs / progress.totalMs) : 0;
  const secondsLeft = progress ? Math.max(0, Math.ceil((progress.totalMs - progress.elapsedMs) / 1000)) : 0;
  const phaseText =
    phase === "starting"
      ? "Opening your input…"
      : phase === "recording"
        ? `Recording — talk as you would on air · ${secondsLeft} s`
        : phase === "playing"
          ? `Playing it back · ${secondsLeft} s`
          : "";

  return (
    <section className="card mic-test" aria-labelledby="mic-test-title">
      <header className="card-head">
        <h2 id="mic-test-title">Test my mic</h2>
        {running ? (
          <button type="button" id="mic-test-cancel" className="ghost small-btn" onClick={() => void commands.cancelMicTest()}>
            Stop
          </button>
        ) : (
          <button type="button" id="mic-test-start" className="small-btn" disabled={live} title={live ? "Leave the room first: the test would go out to your listeners" : "Record 5 s through your chain and hear it back"} onClick={() => void start()}>
            {report ? "Test again" : "Start"}
          </button>
        )}
      </header>
      {running ? (
        <div id="mic-test-progress" data-phase={phase}>
          <p className="small mic-test-phase" aria-live="polite">
            {phase === "recording" && <span className="rec-dot" aria-hidden="true" />}
            {phaseText}
          </p>
          <div className="mic-test-bar" role="progressbar" aria-valuemin={0} aria-valuemax={100} aria-valuenow={Math.round(fraction * 100)}>
            <span className={`phase-${phase}`} style={{ width: `${(fraction * 100).toFixed(1)}%` }} />
          </div>
          {phase === "recording" && <p className="muted small">Level now {formatDb(progress.levelDbfs)}</p>}
        </div>
      ) : report ? (
        <div id="mic-test-result" data-verdict={report.verdict}>
          <p className="mic-test-verdict">
            <span className={`verdict-badge verdict-${report.verdict}`}>{VERDICT_LABEL[report.verdict]}</span>
            <span className="muted small">
              voice {formatDb(report.publishedRmsDbfs)} · peak {formatDb(report.publishedPeakDbfs)} · input peak {formatDb(report.inputPeakDbfs)}
            </span>
          </p>
          <p className="small" id="mic-test-advice">
            {report.advice}
          </p>
        </div>
      ) : (
        <p className="muted small">
          {live
            ? "Available when you are off air."
            : "Records 5 s through your mode, processing and gain, then plays it back on the output chosen under Monitor."}
        </p>
      )}
    </section>
  );
}
