import { useCallback, useEffect, useRef, useState } from "react";
import { commands, type AppError, type EffectCatalog, type EffectsChoice_Serialize as EffectsChoice, type EffectsPanel_Serialize as Panel, type GainReductionDb } from "./bindings";
import { presetLabel, formatHz, eqCurvePath, CURVE_FREQS } from "./effects";
import { Power } from "./Power";
import { GainReductionMeter } from "./GainReductionMeter";
import { liveMeters, useStore } from "./meterStore";
import "./panels.css";

interface Props {
  /** The persisted panel (current choice and user presets). */
  panel: Panel;
  onPanel: (p: Panel) => void;
  /** The ear monitor hears the effects (on, source "with effects"). */
  preview: boolean;
  onPreview: (on: boolean) => void;
  live: boolean;
  onError: (e: AppError) => void;
}

/** How long slider moves are gathered before the new rack is sent (each send is a 20 ms crossfade). */
const COMMIT_MS = 60;

function Slider({ id, label, min, max, step, value: raw, unit, onChange, format }: {
  id: string; label: string; min: number; max: number; step: number; value: number | null; unit?: string;
  onChange: (v: number) => void; format?: (v: number) => string;
}) {
  const value = raw ?? 0;
  return (
    <label className="fader fx-fader">
      <span>{label}</span>
      <input id={id} type="range" min={min} max={max} step={step} value={value} onChange={(e) => onChange(Number(e.target.value))} />
      <output htmlFor={id}>{format ? format(value) : `${Number.isInteger(step) ? value.toFixed(0) : value.toFixed(step < 0.1 ? 2 : 1)}${unit ?? ""}`}</output>
    </label>
  );
}

function Tiles({ group, names, value, onPick }: { group: string; names: string[]; value: string | null; onPick: (v: string | null) => void }) {
  return (
    <div className="preset-tiles" role="radiogroup" aria-label={group} id={`fx-${group}`}>
      <button type="button" role="radio" aria-checked={value === null} className={`preset-tile off${value === null ? " active" : ""}`} data-preset="off" onClick={() => onPick(null)}>
        Off
      </button>
      {names.map((n) => (
        <button key={n} type="button" role="radio" aria-checked={value === n} className={`preset-tile${value === n ? " active" : ""}`} data-preset={n} onClick={() => onPick(n)}>
          {presetLabel(n)}
        </button>
      ))}
    </div>
  );
}

/** A dynamics stage's gain-reduction meter, fed by the live meters (~30 Hz) while on air: only
 *  the meter re-renders with each frame, not the panel. */
function LiveGr({ id, label, live, pick }: { id: string; label: string; live: boolean; pick: (gr: GainReductionDb) => number | null }) {
  const gr = useStore(liveMeters, (s) => (live && s.meters ? s.meters.gainReduction : null));
  return <GainReductionMeter id={id} label={label} db={gr ? pick(gr) : null} />;
}

/** Voice effects: presets, pitch, EQ with its curve, dynamics, reverb, user presets; live on air. */
export function EffectsPanel({ panel, onPanel, preview, onPreview, live, onError }: Props) {
  const [catalog, setCatalog] = useState<EffectCatalog | null>(null);
  const [choice, setChoice] = useState<EffectsChoice>(panel.current);
  const [curve, setCurve] = useState<number[]>([]);
  const [presetName, setPresetName] = useState("");
  const timer = useRef<number | null>(null);
  const pending = useRef<EffectsChoice | null>(null);

  useEffect(() => {
    void commands.effectsCatalog().then(setCatalog);
  }, []);
  const inflight = useRef(0);
  // The stored panel replaces the local choice only when no change of ours is waiting or on
  // its way: an answer to an older send would otherwise pull a slider back mid-move (keyboard
  // steps taken meanwhile were lost).
  useEffect(() => {
    if (timer.current === null && inflight.current === 0) setChoice(panel.current);
  }, [panel.current]);
  useEffect(() => {
    void commands.eqCurve(choice, CURVE_FREQS).then((r) => r.status === "ok" && setCurve(r.data.map((d) => d ?? 0)));
  }, [choice.eq]);

  const commit = useCallback(async () => {
    timer.current = null;
    const next = pending.current;
    pending.current = null;
    if (!next) return;
    inflight.current += 1;
    const r = await commands.setEffects(next);
    inflight.current -= 1;
    if (r.status === "ok") onPanel(r.data);
    else onError(r.error);
  }, [onPanel, onError]);

  const change = (patch: Partial<EffectsChoice>) => {
    const next = { ...choice, ...patch };
    setChoice(next);
    pending.current = next;
    if (timer.current === null) timer.current = window.setTimeout(() => void commit(), COMMIT_MS);
  };

  const preset = async (op: "save" | "load" | "delete", name: string) => {
    const r = await commands.effectsPreset({ op, name });
    if (r.status === "ok") {
      onPanel(r.data);
      if (op === "save") setPresetName("");
    } else onError(r.error);
  };

  const { eq, gate, compressor: comp, deEsser, reverb } = choice;
  const bands = (catalog?.eqBandsHz ?? []).map((h) => h ?? 0);
  return (
    <div className="fx-panel" id="effects-panel" data-enabled={choice.enabled ? "true" : "false"}>
      <section className="card">
        <header className="card-head">
          <h2>Voice effects</h2>
          <div className="fx-head-tools">
            <label className="inline-switch" title="Hear the effects in your ear monitor (turns the ear monitor on, source: with effects)">
              <span>Preview in ear</span>
              <Power id="fx-preview" on={preview} onChange={onPreview} label="Preview the effects on the ear monitor" />
            </label>
            <label className="inline-switch" title="Bypass every effect at once">
              <span>{choice.enabled ? "Effects on" : "Bypassed"}</span>
              <Power id="fx-enabled" on={choice.enabled} onChange={(on) => change({ enabled: on })} label="Effects on or bypassed" />
            </label>
          </div>
        </header>
        <p className="muted small fx-where">
          {live ? "On air: every change crossfades in (20 ms) — no click." : "Applied when you go live; listeners hear them on the publish bus."}
        </p>
        <div className="user-presets">
          <select id="fx-user-preset" aria-label="Saved presets" value="" onChange={(e) => e.target.value && void preset("load", e.target.value)}>
            <option value="">{panel.presets.length ? "Load a saved preset…" : "No saved presets yet"}</option>
            {panel.presets.map((p) => (
              <option key={p.name} value={p.name}>{p.name}</option>
            ))}
          </select>
          <input id="fx-preset-name" placeholder="Name this setup" value={presetName} maxLength={40} onChange={(e) => setPresetName(e.target.value)} />
          <button type="button" id="fx-preset-save" disabled={!presetName.trim()} onClick={() => void preset("save", presetName)}>Save</button>
          {panel.presets.length > 0 && (
            <select id="fx-preset-delete" className="ghost-select" aria-label="Delete a preset" value="" onChange={(e) => e.target.value && void preset("delete", e.target.value)}>
              <option value="">Delete…</option>
              {panel.presets.map((p) => (
                <option key={p.name} value={p.name}>{p.name}</option>
              ))}
            </select>
          )}
        </div>
      </section>

      <div className="fx-columns">
        <section className="card">
          <header className="card-head"><h2>Room acoustics</h2></header>
          <Tiles group="room" names={catalog?.rooms ?? []} value={choice.room} onPick={(room) => change({ room })} />
          {choice.room === "3d_voice" && (
            <Slider id="fx-rotate-period" label="Turn" min={1} max={60} step={1} value={choice.rotatePeriodS} unit=" s" onChange={(v) => change({ rotatePeriodS: v })} />
          )}
        </section>
        <section className="card">
          <header className="card-head"><h2>Voice changer</h2></header>
          <Tiles group="changer" names={catalog?.changers ?? []} value={choice.changer} onPick={(changer) => change({ changer })} />
          <header className="card-head sub"><h2>Beautifier</h2></header>
          <Tiles group="beautifier" names={catalog?.beautifiers ?? []} value={choice.beautifier} onPick={(beautifier) => change({ beautifier })} />
          <Slider id="fx-pitch" label="Pitch" min={-12} max={12} step={0.5} value={choice.pitchSemitones}
            format={(v) => (v === 0 ? "0 st" : `${v > 0 ? "+" : ""}${v.toFixed(1)} st`)} onChange={(v) => change({ pitchSemitones: v })} />
        </section>
      </div>

      <section className="card">
        <header className="card-head">
          <h2>Equalizer</h2>
          <div className="fx-head-tools">
            <button type="button" className="ghost small-btn" id="fx-eq-flat" onClick={() => change({ eq: { ...eq, bandsDb: eq.bandsDb.map(() => 0), preampDb: 0 } })}>Flat</button>
            <Power id="fx-eq-on" on={eq.enabled} onChange={(on) => change({ eq: { ...eq, enabled: on } })} label="Equalizer on or off" />
          </div>
        </header>
        <div className={`eq${eq.enabled ? "" : " off"}`}>
          <svg className="eq-curve" viewBox="0 0 400 90" preserveAspectRatio="none" aria-label="EQ response" id="fx-eq-curve">
            {[-12, -6, 0, 6, 12].map((db) => (
              <line key={db} x1={0} x2={400} y1={45 - (db / 15) * 43} y2={45 - (db / 15) * 43} className={db === 0 ? "eq-zero" : "eq-grid"} />
            ))}
            <path d={eqCurvePath(curve, 400, 90, 15)} className="eq-line" />
          </svg>
          <div className="eq-bands">
            {bands.map((hz, i) => (
              <label key={hz} className="eq-band">
                <output>{(eq.bandsDb[i] ?? 0) > 0 ? "+" : ""}{(eq.bandsDb[i] ?? 0).toFixed(1).replace(/\.0$/, "")}</output>
                <div className="eq-fader">
                  <input type="range" className="vertical" id={`fx-eq-${i}`} min={-15} max={15} step={0.5} value={eq.bandsDb[i] ?? 0}
                    aria-label={`${formatHz(hz)} band`}
                    onChange={(e) => change({ eq: { ...eq, bandsDb: eq.bandsDb.map((b, j) => (j === i ? Number(e.target.value) : b)) } })} />
                </div>
                <span>{formatHz(hz)}</span>
              </label>
            ))}
          </div>
          <Slider id="fx-eq-preamp" label="Pre-amp" min={-12} max={12} step={0.5} value={eq.preampDb} unit=" dB" onChange={(v) => change({ eq: { ...eq, preampDb: v } })} />
        </div>
      </section>

      <div className="fx-columns three">
        <section className={`card dyn${gate.enabled ? "" : " off"}`}>
          <header className="card-head"><h2>Noise gate</h2><Power id="fx-gate-on" on={gate.enabled} onChange={(on) => change({ gate: { ...gate, enabled: on } })} label="Noise gate on or off" /></header>
          <LiveGr id="fx-gate-gr" label="Noise gate" live={live} pick={(gr) => gr.gateDb} />
          <Slider id="fx-gate-close" label="Close" min={-96} max={0} step={1} value={gate.closeThresholdDb} unit=" dB" onChange={(v) => change({ gate: { ...gate, closeThresholdDb: v } })} />
          <Slider id="fx-gate-open" label="Open" min={-96} max={0} step={1} value={gate.openThresholdDb} unit=" dB" onChange={(v) => change({ gate: { ...gate, openThresholdDb: v } })} />
          <Slider id="fx-gate-attack" label="Attack" min={0} max={500} step={1} value={gate.attackMs} unit=" ms" onChange={(v) => change({ gate: { ...gate, attackMs: v } })} />
          <Slider id="fx-gate-hold" label="Hold" min={0} max={2000} step={10} value={gate.holdMs} unit=" ms" onChange={(v) => change({ gate: { ...gate, holdMs: v } })} />
          <Slider id="fx-gate-release" label="Release" min={0} max={2000} step={10} value={gate.releaseMs} unit=" ms" onChange={(v) => change({ gate: { ...gate, releaseMs: v } })} />
        </section>
        <section className={`card dyn${comp.enabled ? "" : " off"}`}>
          <header className="card-head"><h2>Compressor</h2><Power id="fx-comp-on" on={comp.enabled} onChange={(on) => change({ compressor: { ...comp, enabled: on } })} label="Compressor on or off" /></header>
          <LiveGr id="fx-comp-gr" label="Compressor" live={live} pick={(gr) => gr.compressorDb} />
          <Slider id="fx-comp-ratio" label="Ratio" min={1} max={32} step={0.5} value={comp.ratio} format={(v) => `${v.toFixed(1)}:1`} onChange={(v) => change({ compressor: { ...comp, ratio: v } })} />
          <Slider id="fx-comp-threshold" label="Threshold" min={-60} max={0} step={1} value={comp.thresholdDb} unit=" dB" onChange={(v) => change({ compressor: { ...comp, thresholdDb: v } })} />
          <Slider id="fx-comp-attack" label="Attack" min={0} max={500} step={1} value={comp.attackMs} unit=" ms" onChange={(v) => change({ compressor: { ...comp, attackMs: v } })} />
          <Slider id="fx-comp-release" label="Release" min={0} max={2000} step={10} value={comp.releaseMs} unit=" ms" onChange={(v) => change({ compressor: { ...comp, releaseMs: v } })} />
          <Slider id="fx-comp-gain" label="Output" min={-32} max={32} step={0.5} value={comp.outputGainDb} unit=" dB" onChange={(v) => change({ compressor: { ...comp, outputGainDb: v } })} />
        </section>
        <section className={`card dyn${deEsser.enabled ? "" : " off"}`}>
          <header className="card-head"><h2>De-esser</h2><Power id="fx-deess-on" on={deEsser.enabled} onChange={(on) => change({ deEsser: { ...deEsser, enabled: on } })} label="De-esser on or off" /></header>
          <LiveGr id="fx-deesser-gr" label="De-esser" live={live} pick={(gr) => gr.deesserDb} />
          <Slider id="fx-deess-freq" label="Above" min={2000} max={12000} step={100} value={deEsser.frequencyHz} format={formatHz} onChange={(v) => change({ deEsser: { ...deEsser, frequencyHz: v } })} />
          <Slider id="fx-deess-threshold" label="Threshold" min={-60} max={0} step={1} value={deEsser.thresholdDb} unit=" dB" onChange={(v) => change({ deEsser: { ...deEsser, thresholdDb: v } })} />
          <Slider id="fx-deess-ratio" label="Ratio" min={1} max={20} step={0.5} value={deEsser.ratio} format={(v) => `${v.toFixed(1)}:1`} onChange={(v) => change({ deEsser: { ...deEsser, ratio: v } })} />
          <Slider id="fx-deess-max" label="Most cut" min={0} max={24} step={0.5} value={deEsser.maxReductionDb} unit=" dB" onChange={(v) => change({ deEsser: { ...deEsser, maxReductionDb: v } })} />
        </section>
      </div>

      <section className={`card dyn${reverb.enabled ? "" : " off"}`}>
        <header className="card-head"><h2>Custom reverb</h2><Power id="fx-reverb-on" on={reverb.enabled} onChange={(on) => change({ reverb: { ...reverb, enabled: on } })} label="Custom reverb on or off" /></header>
        <div className="fx-grid-2">
          <Slider id="fx-reverb-size" label="Room size" min={0} max={1} step={0.01} value={reverb.roomSize} onChange={(v) => change({ reverb: { ...reverb, roomSize: v } })} />
          <Slider id="fx-reverb-damping" label="Damping" min={0} max={1} step={0.01} value={reverb.damping} onChange={(v) => change({ reverb: { ...reverb, damping: v } })} />
          <Slider id="fx-reverb-wet" label="Wet" min={0} max={1} step={0.01} value={reverb.wet} onChange={(v) => change({ reverb: { ...reverb, wet: v } })} />
          <Slider id="fx-reverb-dry" label="Dry" min={0} max={1} step={0.01} value={reverb.dry} onChange={(v) => change({ reverb: { ...reverb, dry: v } })} />
          <Slider id="fx-reverb-predelay" label="Pre-delay" min={0} max={200} step={1} value={reverb.preDelayMs} unit=" ms" onChange={(v) => change({ reverb: { ...reverb, preDelayMs: v } })} />
          <Slider id="fx-reverb-width" label="Width" min={0} max={1} step={0.01} value={reverb.width} onChange={(v) => change({ reverb: { ...reverb, width: v } })} />
        </div>
      </section>
    </div>
  );
}
