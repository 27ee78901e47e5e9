import { useEffect, useRef, useState } from "react";
import { Channel } from "@tauri-apps/api/core";
import { commands, type AppError, type DeviceListView, type MusicSettings_Serialize as MusicSettings, type MusicView_Serialize as MusicView, type MusicView_Deserialize, type SongView } from "./bindings";
import { formatClock, formatProgress } from "./effects";
import { Power } from "./Power";
import "./panels.css";

interface Props {
  music: MusicSettings;
  onMusic: (m: MusicSettings) => void;
  live: boolean;
  onError: (e: AppError) => void;
  /** The machine's devices (the cue output and capture source pickers). */
  devices: DeviceListView | null;
}

/** f32 settings arrive as number | null (NaN). */
const n = (v: number | null | undefined) => v ?? 0;

const PAD_KEYS = ["1", "2", "3", "4", "5", "6", "7", "8"];

function Switch({ id, on, label, onChange }: { id: string; on: boolean; label: string; onChange: (on: boolean) => void }) {
  return (
    <label className="inline-switch">
      <span>{label}</span>
      <Power id={id} on={on} label={label} onChange={onChange} />
    </label>
  );
}

/** The deck's waveform strip: played part lit, click to seek. */
function Waveform({ points, fraction, loaded, onSeek }: { points: number[]; fraction: number; loaded: boolean; onSeek: (f: number) => void }) {
  const n = points.length || 1;
  return (
    <div
      className="waveform"
      id="deck-waveform"
      data-points={points.length}
      role="slider"
      aria-label="Position"
      aria-valuemin={0}
      aria-valuemax={100}
      aria-valuenow={Math.round(fraction * 100)}
      onClick={(e) => {
        const r = e.currentTarget.getBoundingClientRect();
        onSeek(Math.max(0, Math.min(1, (e.clientX - r.left) / r.width)));
      }}
    >
      {points.length === 0 ? (
        <div className="waveform-pending">{loaded && fraction === 0 ? "Reading the waveform…" : ""}</div>
      ) : (
        points.map((p, i) => <span key={i} className={i / n < fraction ? "played" : ""} style={{ height: `${Math.max(4, p * 100)}%` }} />)
      )}
      <div className="waveform-head" style={{ left: `${fraction * 100}%` }} />
    </div>
  );
}

/** A device picker that keeps showing a saved device that is not plugged in now. */
function DevicePicker({ id, value, list, none, onChange }: { id: string; value: string | null; list: { id: string; name: string }[]; none: string; onChange: (v: string | null) => void }) {
  return (
    <select id={id} value={value ?? ""} onChange={(e) => onChange(e.target.value === "" ? null : e.target.value)}>
      <option value="">{none}</option>
      {value && !list.some((d) => d.id === value) && <option value={value}>{value} (not found)</option>}
      {list.map((d) => (
        <option key={d.id} value={d.id}>{d.name}</option>
      ))}
    </select>
  );
}

/** Deck, playlist, routing, ducking, PCM source, catalog songs with lyrics, pads. */
export function MusicPanel({ music, onMusic, live, onError, devices }: Props) {
  const [view, setView] = useState<MusicView | null>(null);
  const [location, setLocation] = useState("");
  const [query, setQuery] = useState("");
  const [songs, setSongs] = useState<SongView[] | null>(null);
  const [padPath, setPadPath] = useState<{ index: number; path: string } | null>(null);
  const padField = useRef<HTMLInputElement>(null);
  const padOpen = padPath?.index ?? null;
  // Opening a pad's form brings its field into view (the pads sit low in the panel) and into focus.
  useEffect(() => {
    if (padOpen === null) return;
    padField.current?.scrollIntoView({ block: "nearest" });
    padField.current?.focus();
  }, [padOpen]);
  const [dragSeek, setDragSeek] = useState<number | null>(null);
  const musicRef = useRef(music);
  musicRef.current = music;

  useEffect(() => {
    const ch = new Channel<MusicView_Deserialize>();
    ch.onmessage = (v) => setView(v as MusicView);
    void commands.musicWatch(ch).then(setView);
  }, []);

  // Only the answer to the latest save replaces the panel: an older one arriving while a slider
  // moves would pull it back (keyboard steps taken meanwhile were lost).
  const saves = useRef(0);
  const save = async (patch: Partial<MusicSettings>) => {
    const next = { ...musicRef.current, ...patch };
    onMusic(next);
    const mine = ++saves.current;
    const r = await commands.setMusic(next);
    if (r.status !== "ok") onError(r.error);
    else if (mine === saves.current) onMusic(r.data.music);
  };
  const run = async <T,>(p: Promise<{ status: "ok"; data: T } | { status: "error"; error: AppError }>, ok?: (d: T) => void) => {
    const r = await p;
    if (r.status === "ok") ok?.(r.data);
    else onError(r.error);
  };
  const fire = (i: number) => void run(commands.padFire(i), setView);

  // Pads answer the number keys 1–8 (not while typing in a field).
  useEffect(() => {
    const onKey = (e: KeyboardEvent) => {
      const t = e.target as HTMLElement | null;
      if (t && (t.tagName === "INPUT" || t.tagName === "SELECT" || t.tagName === "TEXTAREA")) return;
      const i = PAD_KEYS.indexOf(e.key);
      if (i >= 0 && musicRef.current.pads[i]?.path) fire(i);
    };
    window.addEventListener("keydown", onKey);
    return () => window.removeEventListener("keydown", onKey);
  });

  const deck = view?.deck ?? null;
  const duration = deck?.durationMs ?? 0;
  const position = dragSeek ?? deck?.positionMs ?? 0;
  const fraction = duration > 0 ? Math.min(1, position / duration) : 0;
  const seek = (ms: number) => void run(commands.musicDeck({ op: "seek", positionMs: Math.round(ms) }), setView);
  const addToPlaylist = () => {
    const l = location.trim();
    if (!l) return;
    void save({ playlist: [...music.playlist, l] });
    setLocation("");
  };
  const pre = view?.preload;
  const pcm = view?.pcm;
  const cap = view?.capture;
  const cue = view?.cue;
  const cueOn = !!music.cue.device;
  const cueTitle = cueOn ? "Pre-listen on the cue output" : "Pick a cue output below first";
  const cueAct = (op: "pause" | "resume" | "stop" | "take") => void run(commands.musicCueControl({ op }), setView);

  return (
    <div className="music-panel" id="music-panel" data-live={live ? "true" : "false"}>
      {!live && <p className="muted small offline-note">Music plays through the room's audio: go live to play. Settings, playlist and pads are kept.</p>}
      {view?.error && (
        <p className="music-error" role="alert" id="music-error">{view.error}</p>
      )}

      <section className="card deck" id="deck" data-state={deck?.state ?? "empty"} data-position-ms={deck?.positionMs ?? 0}>
        <header className="card-head">
          <h2>Deck</h2>
          <span className="muted small" id="deck-voices">{view ? `${view.voices} of 8 voices` : ""}{view?.crossfading ? " · crossfading" : ""}</span>
        </header>
        <div className="deck-title" id="deck-title" title={deck?.title}>
          {deck ? deck.title : <span className="muted">Nothing loaded — open a file, play a playlist entry or a catalog song</span>}
          {deck && <span className={`deck-state st-${deck.state}`}>{deck.state}</span>}
        </div>
        <Waveform points={(deck?.waveform ?? []).map(n)} fraction={fraction} loaded={deck !== null} onSeek={(f) => duration > 0 && seek(f * duration)} />
        <div className="deck-time">
          <span id="deck-position">{formatClock(position)}</span>
          <input
            type="range"
            id="deck-seek"
            aria-label="Seek"
            min={0}
            max={Math.max(1, duration)}
            step={100}
            value={Math.min(position, Math.max(1, duration))}
            disabled={!deck || duration === 0}
            onChange={(e) => setDragSeek(Number(e.target.value))}
            onMouseUp={() => { if (dragSeek !== null) { seek(dragSeek); setDragSeek(null); } }}
            onKeyUp={() => { if (dragSeek !== null) { seek(dragSeek); setDragSeek(null); } }}
          />
          <span id="deck-duration">{formatClock(deck?.durationMs ?? null)}</span>
        </div>
        {deck?.hasLyrics && (
          <div className="lyrics" id="lyrics" data-index={deck.lyricIndex ?? -1}>
            <div className="lyric-now" id="lyric-line">{deck.lyric || (deck.lyricIndex === null ? "…" : "♪")}</div>
            <div className="lyric-next muted">{deck.nextLyric ?? ""}</div>
          </div>
        )}
        <div className="transport">
          <button type="button" id="deck-play" disabled={!live || !deck} onClick={() => void run(commands.musicDeck({ op: deck?.state === "playing" ? "pause" : "play" }), setView)}>
            {deck?.state === "playing" ? "❚❚ Pause" : "▶ Play"}
          </button>
          <button type="button" id="deck-stop" className="ghost" disabled={!live || !deck} onClick={() => void run(commands.musicDeck({ op: "stop" }), setView)}>■ Stop</button>
          <form className="open-form" onSubmit={(e) => { e.preventDefault(); const l = location.trim(); if (l) void run(commands.musicOpen(l), setView); }}>
            <input id="music-location" placeholder="File path or http(s) URL" value={location} onChange={(e) => setLocation(e.target.value)} />
            <button type="submit" id="music-open" disabled={!live || !location.trim()}>Open</button>
            <button type="button" id="music-cue" className="ghost" disabled={!cueOn || !location.trim()} title={cueTitle} onClick={() => void run(commands.musicCue({ kind: "location", location: location.trim() }), setView)}>🎧 Cue</button>
            <button type="button" id="playlist-add" className="ghost" disabled={!location.trim()} onClick={addToPlaylist} title="Add to the playlist">+ List</button>
          </form>
        </div>
      </section>

      <div className="music-columns">
        <section className="card">
          <header className="card-head"><h2>Mix</h2></header>
          <label className="fader">
            <span>Publish</span>
            <input id="music-publish-volume" type="range" min={0} max={150} step={1} value={n(music.publishVolume)} onChange={(e) => void save({ publishVolume: Number(e.target.value) })} />
            <output>{n(music.publishVolume).toFixed(0)} %</output>
          </label>
          <label className="fader">
            <span>Playout</span>
            <input id="music-playout-volume" type="range" min={0} max={150} step={1} value={n(music.playoutVolume)} onChange={(e) => void save({ playoutVolume: Number(e.target.value) })} />
            <output>{n(music.playoutVolume).toFixed(0)} %</output>
          </label>
          <label className="fader">
            <span>Key</span>
            <input id="music-key" type="range" min={-12} max={12} step={1} value={music.keyShift} onChange={(e) => void save({ keyShift: Number(e.target.value) })} />
            <output>{music.keyShift > 0 ? "+" : ""}{music.keyShift} st</output>
          </label>
          <div className="switch-grid">
            <Switch id="music-loopback" label="Only me (loopback)" on={music.loopback} onChange={(v) => void save({ loopback: v })} />
            <Switch id="music-replace" label="Replace mic" on={music.replace} onChange={(v) => void save({ replace: v })} />
          </div>
          <label className="field-row">
            <span>Repeat</span>
            <select id="music-cycle" value={music.cycle} onChange={(e) => void save({ cycle: Number(e.target.value) })}>
              <option value={1}>Once</option>
              <option value={2}>Twice</option>
              <option value={3}>3 times</option>
              <option value={5}>5 times</option>
              <option value={-1}>Forever</option>
            </select>
          </label>
          <header className="card-head sub">
            <h2>Ducking</h2>
            <Power id="music-ducking" on={music.ducking.enabled} label="Ducking" onChange={(enabled) => void save({ ducking: { ...music.ducking, enabled } })} />
          </header>
          <div className={music.ducking.enabled ? "" : "dim"}>
            <label className="fader">
              <span>Amount</span>
              <input id="duck-amount" type="range" min={0} max={40} step={1} value={n(music.ducking.amountDb)} onChange={(e) => void save({ ducking: { ...music.ducking, amountDb: Number(e.target.value) } })} />
              <output>−{n(music.ducking.amountDb).toFixed(0)} dB</output>
            </label>
            <label className="fader">
              <span>Attack</span>
              <input id="duck-attack" type="range" min={5} max={1000} step={5} value={n(music.ducking.attackMs)} onChange={(e) => void save({ ducking: { ...music.ducking, attackMs: Number(e.target.value) } })} />
              <output>{n(music.ducking.attackMs).toFixed(0)} ms</output>
            </label>
            <label className="fader">
              <span>Release</span>
              <input id="duck-release" type="range" min={20} max={3000} step={10} value={n(music.ducking.releaseMs)} onChange={(e) => void save({ ducking: { ...music.ducking, releaseMs: Number(e.target.value) } })} />
              <output>{n(music.ducking.releaseMs).toFixed(0)} ms</output>
            </label>
            <label className="fader" title="The voice level above which the music ducks">
              <span>Threshold</span>
              <input id="duck-threshold" type="range" min={-80} max={0} step={1} value={n(music.ducking.thresholdDbfs)} onChange={(e) => void save({ ducking: { ...music.ducking, thresholdDbfs: Number(e.target.value) } })} />
              <output>{n(music.ducking.thresholdDbfs).toFixed(0)} dBFS</output>
            </label>
          </div>
        </section>

        <section className="card playlist-card">
          <header className="card-head">
            <h2>Playlist</h2>
            <Switch id="playlist-auto" label="Auto-advance" on={music.autoAdvance} onChange={(v) => void save({ autoAdvance: v })} />
          </header>
          <label className="fader">
            <span>Crossfade</span>
            <input id="playlist-crossfade" type="range" min={0} max={12} step={0.5} value={n(music.crossfadeS)} onChange={(e) => void save({ crossfadeS: Number(e.target.value) })} />
            <output>{n(music.crossfadeS) === 0 ? "off" : `${n(music.crossfadeS).toFixed(1)} s`}</output>
          </label>
          <ol className="playlist" id="playlist">
            {music.playlist.length === 0 && <li className="muted small empty-note">Type a path or URL above and press “+ List”.</li>}
            {music.playlist.map((p, i) => (
              <li key={`${i}-${p}`} className={deck?.playlistIndex === i ? "current" : ""} data-index={i}>
                <button type="button" className="ghost small-btn pl-play" disabled={!live} title="Play now" onClick={() => void run(commands.playlistPlay(i), setView)}>▶</button>
                <span className="pl-name" title={p}>{p.split(/[\\/]/).pop()}</span>
                <button type="button" className={`ghost small-btn pl-cue${cue?.playlistIndex === i && cue.state ? " cued" : ""}`} disabled={!cueOn} title={cueTitle} aria-label={`Cue entry ${i + 1}`} onClick={() => void run(commands.musicCue({ kind: "entry", index: i }), setView)}>🎧</button>
                <button type="button" className="ghost small-btn pl-up" disabled={i === 0} title="Move up" onClick={() => { const l = [...music.playlist]; [l[i - 1], l[i]] = [l[i], l[i - 1]]; void save({ playlist: l }); }}>↑</button>
                <button type="button" className="ghost small-btn pl-remove" title="Remove" onClick={() => void save({ playlist: music.playlist.filter((_, j) => j !== i) })}>✕</button>
              </li>
            ))}
          </ol>
        </section>
      </div>

      <div className="music-columns">
        <section className="card" id="songs">
          <header className="card-head"><h2>Song catalog</h2></header>
          <form className="open-form" onSubmit={(e) => { e.preventDefault(); void run(commands.songSearch(query), setSongs); }}>
            <input id="song-query" placeholder="Title, artist or code" value={query} onChange={(e) => setQuery(e.target.value)} />
            <button type="submit" id="song-search" disabled={!live}>Search</button>
          </form>
          {pre && (
            <div className="preload" id="preload" data-code={pre.code} data-done={pre.done ? "true" : "false"}>
              <div className="meter-track"><div className="preload-bar" style={{ width: `${pre.total > 0 ? Math.min(100, (pre.received / pre.total) * 100) : 0}%` }} /></div>
              <span className="small muted">{pre.error ? pre.error : pre.done ? "Ready — decrypted in memory" : `Preloading ${formatProgress(pre.received, pre.total)}`}</span>
            </div>
          )}
          <ul className="song-list" id="song-list">
            {songs?.length === 0 && <li className="muted small">No song matches.</li>}
            {songs?.map((s) => {
              const ready = s.preloaded || (pre?.code === s.code && pre.done);
              return (
                <li key={s.code} data-code={s.code}>
                  <div className="song-meta">
                    <strong>{s.title}</strong>
                    <span className="muted small">{s.artist} · {formatClock(s.durationMs)}{s.hasLyrics ? " · lyrics" : ""}</span>
                  </div>
                  {ready ? (
                    <span className="song-actions">
                      <button type="button" className="ghost song-cue" disabled={!cueOn} title={cueTitle} onClick={() => void run(commands.musicCue({ kind: "song", code: s.code }), setView)}>🎧</button>
                      <button type="button" className="song-play" onClick={() => void run(commands.songPlay(s.code), setView)}>▶ Play</button>
                    </span>
                  ) : (
                    <button type="button" className="ghost song-preload" disabled={pre?.code === s.code && !pre.done && !pre.error} onClick={() => void run(commands.songPreload(s.code))}>Preload</button>
                  )}
                </li>
              );
            })}
          </ul>
        </section>

        <section className="card" id="pcm-source" data-listening={pcm?.listening ? "true" : "false"} data-receiving={pcm?.receiving ? "true" : "false"}>
          <header className="card-head">
            <h2>PCM source</h2>
            <Power id="pcm-enabled" on={music.pcm.enabled} label="PCM source on or off" onChange={(enabled) => void save({ pcm: { ...music.pcm, enabled } })} />
          </header>
          <label className="field-row">
            <span>TCP port</span>
            <input id="pcm-port" type="number" min={1024} max={65535} value={music.pcm.port} onChange={(e) => void save({ pcm: { ...music.pcm, port: Number(e.target.value) || 7611 } })} />
          </label>
          <Switch id="pcm-local" label="Local playback (I hear it too)" on={music.pcm.localPlayback} onChange={(v) => void save({ pcm: { ...music.pcm, localPlayback: v } })} />
          <p className="small pcm-status" id="pcm-status">
            <span className={`status-dot ${pcm?.receiving ? "status-reachable" : ""}`} />
            {pcm?.listening
              ? `${pcm.receiving ? "Receiving" : "Listening"} on ${pcm.listening} · ${pcm.connections} connection${pcm.connections === 1 ? "" : "s"} · ${(pcm.frames / 48000).toFixed(1)} s received`
              : pcm?.error ?? (music.pcm.enabled ? (live ? "Starting…" : "Listens once you are live") : "Off")}
            {pcm && pcm.badHeaders > 0 ? ` · ${pcm.badHeaders} refused (bad header)` : ""}
          </p>
        </section>
      </div>

      <div className="music-columns">
        <section className="card" id="cue" data-state={cue?.state ?? "empty"} data-position-ms={cue?.positionMs ?? 0} data-device={cue?.device ?? ""}>
          <header className="card-head">
            <h2>Cue</h2>
            <span className="muted small">pre-listen, not on air</span>
          </header>
          <label className="field-row">
            <span>Cue output</span>
            <DevicePicker id="cue-device" value={music.cue.device} list={devices?.outputs ?? []} none="— none (pick your headphones) —" onChange={(device) => void save({ cue: { device } })} />
          </label>
          <div className="cue-track" id="cue-track">
            {cue?.title ? (
              <>
                <span className="cue-title" title={cue.title}>{cue.title}</span>
                <span className={`deck-state st-${cue.state}`}>{cue.state}</span>
                <span className="muted small" id="cue-position">{formatClock(cue.positionMs)} / {formatClock(cue.durationMs ?? null)}</span>
              </>
            ) : (
              <span className="muted small">{cue?.error ?? (cueOn ? "Press 🎧 on a playlist entry, a song or a location to hear it here first." : "Pick the output your headphones are on.")}</span>
            )}
          </div>
          {cue?.title && cue.error && <p className="music-error small">{cue.error}</p>}
          <div className="transport">
            <button type="button" id="cue-play" className="ghost" disabled={!cue?.title} onClick={() => cueAct(cue?.state === "playing" ? "pause" : "resume")}>{cue?.state === "playing" ? "❚❚ Pause" : "▶ Resume"}</button>
            <button type="button" id="cue-stop" className="ghost" disabled={!cue?.title} onClick={() => cueAct("stop")}>■ Stop</button>
            <button type="button" id="cue-take" disabled={!live || !cue?.title || !(cue.state === "playing" || cue.state === "paused")} title="Put the cued track on air where it is (the deck's track fades out)" onClick={() => cueAct("take")}>⇪ Take to air</button>
          </div>
        </section>

        <section className="card" id="capture-source" data-active={cap?.device ? "true" : "false"} data-receiving={cap?.receiving ? "true" : "false"}>
          <header className="card-head">
            <h2>Capture source</h2>
            <Power id="capture-enabled" on={music.capture.enabled} label="Capture source on or off" onChange={(enabled) => void save({ capture: { ...music.capture, enabled } })} />
          </header>
          <label className="field-row">
            <span>Device</span>
            <DevicePicker id="capture-device" value={music.capture.device} list={devices?.inputs ?? []} none="— pick a line-in or a monitor —" onChange={(device) => void save({ capture: { ...music.capture, device } })} />
          </label>
          <Switch id="capture-local" label="Local playback (I hear it too)" on={music.capture.localPlayback} onChange={(v) => void save({ capture: { ...music.capture, localPlayback: v } })} />
          <p className="small pcm-status" id="capture-status">
            <span className={`status-dot ${cap?.receiving ? "status-reachable" : ""}`} />
            {cap?.device
              ? `${cap.receiving ? "Playing" : "Waiting for audio"} from ${devices?.inputs.find((d) => d.id === cap.device)?.name ?? cap.device} · ${n(cap.seconds).toFixed(1)} s${cap.underruns > 0 ? ` · ${cap.underruns} gaps` : ""}`
              : cap?.error ?? (music.capture.enabled ? (live ? "Starting…" : "Plays once you are live") : "Off — another app's output (a monitor) or a line-in as music")}
          </p>
        </section>
      </div>

      <section className="card" id="pads">
        <header className="card-head"><h2>Pads</h2><span className="muted small">click or press 1–8</span></header>
        <div className="pad-grid">
          {music.pads.map((p, i) => {
            const pv = view?.pads[i];
            return (
              <div key={i} className={`pad${pv?.playing ? " playing" : ""}${p.path ? "" : " empty"}`} data-pad={i}>
                <button type="button" className="pad-fire" id={`pad-${i}`} disabled={!p.path || !live} onClick={() => fire(i)} title={p.path ?? "No clip"}>
                  <kbd>{PAD_KEYS[i]}</kbd>
                  <span className="pad-name">{p.name || "—"}</span>
                  <span className="pad-route">{p.path ? (p.publish ? "on air" : "only me") : ""}</span>
                </button>
                <button type="button" className="ghost small-btn pad-edit" aria-label={`Assign pad ${i + 1}`} onClick={() => setPadPath({ index: i, path: p.path ?? "" })}>✎</button>
              </div>
            );
          })}
        </div>
        {padPath && (
          <form className="open-form pad-form" onSubmit={(e) => { e.preventDefault(); void run(commands.padAssign(padPath.index, padPath.path.trim() || null, true), (s) => { onMusic(s.music); setPadPath(null); }); }}>
            <span className="muted small">Pad {padPath.index + 1}</span>
            <input id="pad-path" ref={padField} placeholder="Clip file (WAV, MP3, Ogg…)" value={padPath.path} onChange={(e) => setPadPath({ ...padPath, path: e.target.value })} />
            <button type="submit" id="pad-save">Assign</button>
            <button type="button" className="ghost" id="pad-only-me" onClick={() => void run(commands.padAssign(padPath.index, padPath.path.trim() || null, false), (s) => { onMusic(s.music); setPadPath(null); })}>Only me</button>
            <button type="button" className="ghost" onClick={() => setPadPath(null)}>Cancel</button>
          </form>
        )}
      </section>
    </div>
  );
}
