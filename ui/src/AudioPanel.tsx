import type { AudioSettings_Serialize as AudioSettings, DeviceListView } from "./bindings";
import { formatGain, formatMs } from "./console";
import { barFill, barFraction, formatDb, zone } from "./levels";
import { LiveText, READOUT_HOLD_MS } from "./LiveText";
import { liveMeters, useStore } from "./meterStore";

interface Props {
  audio: AudioSettings;
  devices: DeviceListView | null;
  /** The input in use (its channel count offers the channel pair). */
  inputId: string | null;
  /** The engine runs (from going live until leaving): its meters (`liveMeters`) replace the
   *  input meter, and the latency readout is filled. */
  live: boolean;
  onChange: (next: AudioSettings) => void;
  /** The per-channel input meter (before going live it is the only meter). */
  inputMeter: React.ReactNode;
}

/** A compact horizontal level strip with a clip light, as in a mixer. */
function Strip({ id, label, rms, peak, clipLit }: { id: string; label: string; rms: number | null; peak: number | null; clipLit: boolean }) {
  const pct = (db: number | null) => `${(barFraction(db) * 100).toFixed(1)}%`;
  return (
    <div className="strip" id={id} data-rms-dbfs={rms ?? -100} data-clip={clipLit ? "true" : "false"}>
      <span className="strip-label">{label}</span>
      <div className="meter-track strip-track" role="meter" aria-label={`${label} level`} aria-valuemin={-60} aria-valuemax={0} aria-valuenow={rms ?? -100}>
        <div className={`meter-peak zone-${zone(peak)}`} style={barFill(barFraction(peak))} />
        <div className={`meter-rms zone-${zone(rms)}`} style={barFill(barFraction(rms))} />
        <div className="meter-ticks" aria-hidden="true">
          {[-48, -36, -24, -18, -12, -6].map((db) => (
            <span key={db} style={{ left: pct(db) }} />
          ))}
        </div>
      </div>
      <span className={`clip-light${clipLit ? " lit" : ""}`} title={clipLit ? "Clipped: lower the gain" : "No clipping"}>
        CLIP
      </span>
      <LiveText className="meter-readout" holdMs={READOUT_HOLD_MS} text={formatDb(rms)} />
    </div>
  );
}

function Toggle({ id, label, hint, on, disabled, onChange }: { id: string; label: string; hint: string; on: boolean; disabled?: boolean; onChange: (on: boolean) => void }) {
  return (
    <button
      type="button"
      id={id}
      className={`fx-toggle${on ? " on" : ""}`}
      aria-pressed={on}
      title={hint}
      disabled={disabled}
      onClick={() => onChange(!on)}
    >
      <span className="fx-led" aria-hidden="true" />
      {label}
    </button>
  );
}

/** The input and on-air strips while live (else the input meter): the only part of the panel
 *  that follows the meter frames. */
function LiveStrips({ live, inputMeter }: { live: boolean; inputMeter: React.ReactNode }) {
  const { meters, clipLit } = useStore(liveMeters);
  if (!live || !meters) return <>{inputMeter}</>;
  return (
    <div className="strips">
      <Strip id="meter-input" label="Input" rms={meters.input.rmsDbfs} peak={meters.input.peakDbfs} clipLit={clipLit.input} />
      <Strip id="meter-published" label="On air" rms={meters.published.rmsDbfs} peak={meters.published.peakDbfs} clipLit={clipLit.published} />
    </div>
  );
}

/** The latency readout's figures while live (null otherwise); a new object only when a shown
 *  figure changes (`meterStore`), so the readout does not follow every meter frame. */
function useLatency(live: boolean) {
  return useStore(liveMeters, (s) => (live ? s.latency : null));
}

function EarLatency({ live, raw }: { live: boolean; raw: boolean }) {
  const lat = useLatency(live);
  return <>{raw ? "0 ms" : (lat?.earMs ?? formatMs(0))}</>;
}

function LatencyCard({ live }: { live: boolean }) {
  const lat = useLatency(live);
  return (
    <section className="card latency" aria-labelledby="latency-title">
      <header className="card-head">
        <h2 id="latency-title">Latency</h2>
        <LiveText className="latency-total" id="latency-total" text={lat ? lat.totalMs : "—"} />
      </header>
      {lat ? (
        <dl className="latency-list" id="latency">
          <div><dt>Input</dt><dd><LiveText text={lat.inputMs} /></dd></div>
          <div><dt>Chain</dt><dd><LiveText text={lat.chainMs} /></dd></div>
          <div><dt>Encoder frame</dt><dd><LiveText text={lat.encoderMs} /></dd></div>
          <div><dt>Jitter buffer</dt><dd><LiveText text={lat.jitterMs} /></dd></div>
          <div><dt>Output</dt><dd><LiveText text={lat.outputMs} /></dd></div>
          <div
            id="latency-thread"
            data-realtime={lat.realtime}
            title={
              lat.realtime
                ? "The audio thread runs at real-time priority: other programs' load does not delay it."
                : "The OS refused real-time priority to the audio thread: a busy machine can cause clicks. " +
                  "On Linux, add your user to a group with an rtprio limit (e.g. the audio group from the jackd2 package) and go live again."
            }
          >
            <dt>Audio thread priority</dt>
            <dd className={lat.realtime ? undefined : "warn-text"}>{lat.realtime ? "Real-time" : "Normal"}</dd>
          </div>
        </dl>
      ) : (
        <p className="muted small">Shown while on air.</p>
      )}
    </section>
  );
}

/** Mode, processing, gain, mutes, output, ear monitor and the latency readout; live while on air. */
export function AudioPanel({ audio, devices, inputId, live, onChange, inputMeter }: Props) {
  const set = (patch: Partial<AudioSettings>) => onChange({ ...audio, ...patch });
  const inputChannels = devices?.inputs.find((d) => d.id === inputId)?.channels ?? 2;
  const pair = audio.inputChannels ?? [1, 2];
  const channelOptions = Array.from({ length: inputChannels }, (_, i) => i + 1);
  const setPair = (l: number, r: number) => set({ inputChannels: l === 1 && r === 2 ? null : [l, r] });
  const ear = audio.ear;
  return (
    <div className="audio-panel">
      <section className="card" aria-labelledby="mixer-title">
        <header className="card-head">
          <h2 id="mixer-title">Mixer</h2>
          <div className="segmented" role="radiogroup" aria-label="Mode">
            {(["soundcard", "voice"] as const).map((m) => (
              <button
                key={m}
                type="button"
                role="radio"
                id={`mode-${m}`}
                aria-checked={audio.mode === m}
                className={audio.mode === m ? "active" : ""}
                onClick={() => {
                  if (audio.mode === m) return;
                  // A mode brings its own processing defaults, as the engine's chain does.
                  const on = m === "voice";
                  set({ mode: m, aec: on, ns: on, aiNs: on, agc: on });
                }}
              >
                {m === "soundcard" ? "Sound card" : "Voice"}
              </button>
            ))}
          </div>
        </header>
        <p className="muted small">
          {audio.mode === "soundcard" ? "Stereo · processing off · Opus 128 kbps stereo" : "Mono voice · processing on · Opus voice"}
        </p>
        <LiveStrips live={live} inputMeter={inputMeter} />
        {inputChannels > 2 || audio.inputChannels ? (
          <div className="field-row channel-pair" id="input-channels" data-channels={inputChannels}>
            <span title="Which two inputs of the sound card are used (voice mode mixes the two)">Channels</span>
            <select id="input-channel-left" aria-label="Left channel" value={pair[0]} onChange={(e) => setPair(Number(e.target.value), pair[1])}>
              {channelOptions.map((c) => (
                <option key={c} value={c}>
                  L {c}
                </option>
              ))}
            </select>
            <select id="input-channel-right" aria-label="Right channel" value={pair[1]} onChange={(e) => setPair(pair[0], Number(e.target.value))}>
              {channelOptions.map((c) => (
                <option key={c} value={c}>
                  R {c}
                </option>
              ))}
            </select>
          </div>
        ) : null}
        <label className="fader">
          <span>Gain</span>
          <input
            id="input-gain"
            type="range"
            min={-24}
            max={12}
            step={0.5}
            value={audio.inputGainDb ?? 0}
            onChange={(e) => set({ inputGainDb: Number(e.target.value) })}
          />
          <output htmlFor="input-gain">{formatGain(audio.inputGainDb ?? 0)}</output>
        </label>
        <div className="mute-row">
          <button
            type="button"
            id="mute-voice"
            className={`mute-btn${audio.voiceMuted ? " engaged" : ""}`}
            aria-pressed={audio.voiceMuted}
            onClick={() => set({ voiceMuted: !audio.voiceMuted })}
            title="Listeners stop hearing your voice; music keeps playing"
          >
            {audio.voiceMuted ? "Voice muted" : "Mute voice"}
          </button>
          <button
            type="button"
            id="mute-all"
            className={`mute-btn danger${audio.sendMuted ? " engaged" : ""}`}
            aria-pressed={audio.sendMuted}
            onClick={() => set({ sendMuted: !audio.sendMuted })}
            title="Nothing is sent: voice and music"
          >
            {audio.sendMuted ? "All muted" : "Mute all"}
          </button>
        </div>
      </section>

      <section className="card" aria-labelledby="fx-title">
        <header className="card-head">
          <h2 id="fx-title">Processing</h2>
        </header>
        <div className="fx-grid">
          <Toggle id="fx-aec" label="Echo cancel" hint="AEC: removes what your speakers play from your mic" on={audio.aec} onChange={(v) => set({ aec: v })} />
          <Toggle id="fx-ns" label="Noise suppr." hint="Classic noise suppression" on={audio.ns} onChange={(v) => set({ ns: v })} />
          <Toggle id="fx-ai-ns" label="AI noise" hint="AI noise suppression (keyboards, fans, traffic)" on={audio.aiNs} onChange={(v) => set({ aiNs: v })} />
          <Toggle id="fx-agc" label="Auto gain" hint="AGC: keeps your voice at a steady level" on={audio.agc} onChange={(v) => set({ agc: v })} />
        </div>
        <label className={`fader${audio.aiNs ? "" : " disabled"}`}>
          <span>AI strength</span>
          <input
            id="ai-ns-strength"
            type="range"
            min={0}
            max={100}
            step={5}
            disabled={!audio.aiNs}
            value={audio.aiNsStrength ?? 100}
            onChange={(e) => set({ aiNsStrength: Number(e.target.value) })}
          />
          <output htmlFor="ai-ns-strength">{Math.round(audio.aiNsStrength ?? 100)} %</output>
        </label>
      </section>

      <section className="card" aria-labelledby="monitor-title">
        <header className="card-head">
          <h2 id="monitor-title">Monitor</h2>
          <button
            type="button"
            id="ear-monitor"
            className={`switch${ear.enabled ? " on" : ""}`}
            role="switch"
            aria-checked={ear.enabled}
            onClick={() => set({ ear: { ...ear, enabled: !ear.enabled } })}
          >
            <span className="switch-knob" aria-hidden="true" />
            <span className="sr-only">Ear monitor</span>
          </button>
        </header>
        <label className="field-row">
          <span>Output</span>
          <select
            id="output-devices"
            value={audio.outputDevice ?? ""}
            onChange={(e) => set({ outputDevice: e.target.value === "" ? null : e.target.value })}
          >
            <option value="">System default</option>
            {devices?.outputs.map((d) => (
              <option key={d.id} value={d.id}>
                {d.name}
                {d.isDefault ? " (default)" : ""}
              </option>
            ))}
          </select>
        </label>
        <label className="field-row">
          <span>Hear</span>
          <select
            id="ear-source"
            value={ear.source}
            onChange={(e) => set({ ear: { ...ear, source: e.target.value as AudioSettings["ear"]["source"] } })}
          >
            <option value="raw">Raw input (lowest delay)</option>
            <option value="withNs">After noise suppression</option>
            <option value="withEffects">With effects</option>
          </select>
        </label>
        <label className={`fader${ear.enabled ? "" : " disabled"}`}>
          <span>Volume</span>
          <input
            id="ear-volume"
            type="range"
            min={0}
            max={150}
            step={1}
            value={ear.volume ?? 100}
            onChange={(e) => set({ ear: { ...ear, volume: Number(e.target.value) } })}
          />
          <output htmlFor="ear-volume">{Math.round(ear.volume ?? 100)} %</output>
        </label>
        <p className="muted small" id="ear-latency">
          {ear.enabled
            ? <>Adds <EarLatency live={live} raw={ear.source === "raw"} /> to your own voice in the headphones</>
            : "Use headphones: the monitor plays your voice back to you."}
        </p>
      </section>

      <LatencyCard live={live} />
    </div>
  );
}
