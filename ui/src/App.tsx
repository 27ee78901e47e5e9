import { memo, useCallback, useEffect, useLayoutEffect, useMemo, useState } from "react";
import { Channel } from "@tauri-apps/api/core";
import {
  commands,
  events,
  type AppError,
  type AudioSettings_Serialize as AudioSettings,
  type DeviceListView,
  type DeviceView,
  type HostAction,
  type LiveMeters,
  type LiveStats,
  type MeterFrame_Deserialize as MeterFrame,
  type RoomStatus,
  type ServerStatus,
  type ShortcutSettings,
} from "./bindings";
import { InputMeters } from "./MeterBar";
import { ServerPanel } from "./ServerPanel";
import { ErrorBanner } from "./ErrorBanner";
import { AudioPanel } from "./AudioPanel";
import { SeatGrid } from "./SeatGrid";
import { SidePanel } from "./SidePanel";
import { RoomBar } from "./RoomBar";
import { AlertBar } from "./AlertBar";
import { StatsPanel, sameStats } from "./StatsPanel";
import { notePaint, noteReceive } from "./paintProbe";
import { clearInputMeters, clearLiveMeters, liveMeters, pushInputFrame, pushLiveMeters } from "./meterStore";
import { mergeStatus } from "./room";
import { newestOnly } from "./newest";
import { EffectsPanel } from "./EffectsPanel";
import { MusicPanel } from "./MusicPanel";
import type { EffectsPanel_Serialize as EffectsSettings, MusicSettings_Serialize as MusicSettings } from "./bindings";

import { MicTest } from "./MicTest";
import { ShortcutsPanel } from "./Shortcuts";
import { SpeakerVolumes } from "./SpeakerVolumes";

/** The live stats card. It renders when a new reading comes (once per stats interval), not with
 *  every status: each status carries the stats as a new object, equal to the last one between
 *  readings. Its jitter buffer figure comes with the meter frames (~30 a second) and is read then,
 *  like the card's other figures: following every frame re-rendered the card 30 times a second,
 *  and following every status re-drew its text with each chat line. */
const LiveStatsPanel = memo(
  function LiveStatsPanel({ stats }: { stats: LiveStats }) {
    const m = liveMeters.get().meters;
    const jitterMs = stats.speakers.length > 0 && m ? m.latency.jitterMs : null;
    return <StatsPanel stats={stats} jitterMs={jitterMs} />;
  },
  (a, b) => sameStats(a.stats, b.stats),
);

const MemoSidePanel = memo(SidePanel);
const MemoSeatGrid = memo(SeatGrid);
const NO_VOLUMES: Record<string, number> = {};

type Theme = "dark" | "light";

function initialTheme(): Theme {
  const saved = localStorage.getItem("onmic-theme");
  if (saved === "light" || saved === "dark") return saved;
  return window.matchMedia?.("(prefers-color-scheme: light)").matches ? "light" : "dark";
}

export function App() {
  const [devices, setDevices] = useState<DeviceListView | null>(null);
  const [selected, setSelected] = useState<string | null>(null);
  const [active, setActive] = useState<DeviceView | null>(null);
  const [error, setError] = useState<AppError | null>(null);
  const [server, setServer] = useState<ServerStatus | null>(null);
  const [serverUrl, setServerUrl] = useState("");
  const [localRoom, setLocalRoom] = useState(false);
  const [audio, setAudio] = useState<AudioSettings | null>(null);
  const [status, setStatus] = useState<RoomStatus | null>(null);
  const [busy, setBusy] = useState(false);
  const [link, setLink] = useState<string | null>(null);
  const [now, setNow] = useState(Date.now());
  const [theme, setTheme] = useState<Theme>(initialTheme);
  const [stageTab, setStageTab] = useState<"stage" | "effects" | "music">("stage");
  const [effects, setEffects] = useState<EffectsSettings | null>(null);
  const [music, setMusic] = useState<MusicSettings | null>(null);

  const [shortcuts, setShortcuts] = useState<ShortcutSettings | null>(null);
  const [helpOpen, setHelpOpen] = useState(false);
  const onVoiceMuted = useCallback((muted: boolean) => setAudio((a) => (a ? { ...a, voiceMuted: muted } : a)), []);
  const onLocalRoom = useCallback((room: unknown) => setLocalRoom(room !== null), []);
  const live = status !== null && status.state !== "closed";
  // The engine runs from going live until leaving, the room's end included: its meters replace
  // the input meter then (whose own stream the Studio closes meanwhile, `MeterService::pause`).
  const engineOn = status !== null;

  useEffect(() => {
    document.documentElement.dataset.theme = theme;
    localStorage.setItem("onmic-theme", theme);
  }, [theme]);

  // A layout effect runs in the commit itself; a passive one may run after the browser painted,
  // and the probe would then wait for the frame after.
  useLayoutEffect(() => {
    if (status?.emittedAtMs) notePaint(status.emittedAtMs);
  }, [status]);

  useEffect(() => {
    const t = setInterval(() => setNow(Date.now()), 500);
    return () => clearInterval(t);
  }, []);

  const openMeter = useCallback(async (id: string | null) => {
    const channel = new Channel<MeterFrame>();
    channel.onmessage = (f) => {
      pushInputFrame(f);
      if (f.error) {
        // The device went away: say so, stop showing it as open, and list what is left.
        setError(f.error);
        setActive(null);
        setSelected(null);
        void commands.listDevices().then((r) => r.status === "ok" && setDevices(r.data));
      }
    };
    const result = await commands.startMeter(id, channel);
    if (result.status === "ok") {
      setActive(result.data);
      setSelected(result.data.id);
      setError(null);
      // Input channels the new input lacks were put back to its first two.
      const after = await commands.getSettings();
      setAudio((a) => (a && a.inputChannels !== after.audio.inputChannels ? { ...a, inputChannels: after.audio.inputChannels } : a));
    } else {
      setActive(null);
      clearInputMeters();
      setError(result.error);
    }
  }, []);

  // Opening a device can take a while (seconds for some): the window stays live meanwhile, the
  // pick shows at once, and picks made while one opens collapse to the newest (`newestOnly`), so
  // the input that ends up open is the last one picked.
  const openNewest = useMemo(() => newestOnly(openMeter), [openMeter]);
  const startMeter = useCallback(
    async (id: string | null) => {
      if (id !== null) setSelected(id);
      await openNewest(id);
    },
    [openNewest],
  );

  const refresh = useCallback(async () => {
    const settings = await commands.getSettings();
    setServerUrl(settings.serverUrl);
    setAudio(settings.audio);
    setEffects(settings.effects);
    setMusic(settings.music);

    setShortcuts(settings.shortcuts);
    const list = await commands.listDevices();
    if (list.status === "error") {
      setDevices(null);
      setError(list.error);
      return;
    }
    setDevices(list.data);
    const inputs = list.data.inputs;
    if (inputs.length === 0) {
      // Asking for the default input lets the engine report the typed "no input device" error.
      await startMeter(null);
      return;
    }
    const remembered = inputs.find((d) => d.id === settings.inputDevice);
    await startMeter((remembered ?? inputs[0]).id);
  }, [startMeter]);

  useEffect(() => {
    void refresh();
    void commands.serverStatus().then(setServer);
    const unlisten = events.serverStatus.listen((e) => setServer(e.payload));
    return () => {
      void unlisten.then((f) => f());
      void commands.stopMeter();
    };
  }, [refresh]);

  // One change in flight at a time, the newest sent next: concurrent saves could land out of
  // order (a slider moved by several keys would keep an older value), and a late reply would
  // roll the control back.
  const sendAudio = useMemo(
    () =>
      newestOnly(async (send: AudioSettings, newer: () => boolean) => {
        const result = await commands.setAudio(send);
        if (result.status === "error") setError(result.error);
        else if (!newer()) setAudio(result.data.audio);
      }),
    [],
  );
  const changeAudio = useCallback(
    async (next: AudioSettings) => {
      setAudio(next);
      await sendAudio(next);
    },
    [sendAudio],
  );

  const resetAll = async () => {
    const result = await commands.resetSettings();
    if (result.status === "ok") {
      setAudio(result.data.audio);
      setEffects(result.data.effects);
      setMusic(result.data.music);

      setShortcuts(result.data.shortcuts);
    } else setError(result.error);
  };

  const join = async (room: string, token: string | null) => {
    setBusy(true);
    const onStatus = new Channel<RoomStatus>();
    onStatus.onmessage = (s) => {
      noteReceive(s.emittedAtMs);
      setStatus((prev) => mergeStatus(prev, s));
    };
    const onMeters = new Channel<LiveMeters>();
    let metersAt = -Infinity;
    onMeters.onmessage = (m) => {
      // Diagnosis (`studio_paint`'s ONMIC_PAINT_JS, docs/studio.md "Tenth round"):
      // `window.__onmicMeterEveryMs` drops the frames that come sooner than that after the last
      // one shown (1e9: the meters stand still).
      const every = window.__onmicMeterEveryMs ?? 0;
      const now = performance.now();
      if (every > 0 && now - metersAt < every) return;
      metersAt = now;
      pushLiveMeters(m);
    };
    // An input picked a moment ago may still be opening: the session takes the input the
    // settings name, so going live waits until the newest pick has applied.
    await openNewest.idle();
    // The input meter's stream closes while live: its last frame is not the level any more.
    clearInputMeters();
    const result = await commands.joinRoom({ room, token }, onStatus, onMeters);
    setBusy(false);
    if (result.status === "ok") setStatus(result.data);
    else setError(result.error);
  };

  const leave = async () => {
    setBusy(true);
    await commands.leaveRoom();
    setBusy(false);
    setStatus(null);
    clearLiveMeters();
    setLink(null);
  };

  const act = useCallback(async (action: HostAction) => {
    const result = await commands.roomAction(action);
    if (result.status === "ok") setStatus(result.data);
    else setError(result.error);
  }, []);

  const makeLink = async () => {
    if (!status) return;
    const result = await commands.shareLink(status.room);
    if (result.status === "ok") setLink(result.data);
    else setError(result.error);
  };

  const dismissAlert = async (version: number) => {
    const result = await commands.dismissAlert(version);
    if (result.status === "ok" && result.data) setStatus(result.data);
  };

  const setSpeakerVolume = useCallback(
    (uid: string, percent: number) => {
      if (!audio) return;
      void changeAudio({ ...audio, speakerVolumes: { ...audio.speakerVolumes, [uid]: percent } });
    },
    [audio, changeAudio],
  );
  const onAct = useCallback((a: HostAction) => void act(a), [act]);

  const view = status?.view;
  const me = status?.uid;
  const invitable = useMemo(() => {
    const seated = new Set(view?.seats.map((s) => s.uid).filter((u): u is string => u !== null));
    return (view?.audience ?? []).filter((m) => !seated.has(m.uid) && m.uid !== me).map((m) => m.uid);
  }, [view?.seats, view?.audience, me]);

  return (
    <div className="app">
      <header className="topbar">
        <div className="brand">
          <span className="logo" aria-hidden="true" />
          Onmic <span className="brand-sub">Studio</span>
        </div>
        <RoomBar
          status={status}
          localRoom={localRoom}
          busy={busy}
          link={link}
          onJoin={(r, t) => void join(r, t)}
          onLeave={() => void leave()}
          onLink={() => void makeLink()}
          onDismiss={() => void act({ type: "dismiss" })}
          onRetake={(seat) => void act({ type: "takeSeat", seat })}
          onRules={(rules) => void act({ type: "setRules", rules })}
          onError={setError}
        />
        <div className="topbar-tools">
          <button
            type="button"
            className="icon-btn"
            id="theme-toggle"
            title={theme === "dark" ? "Light theme" : "Dark theme"}
            aria-label="Switch theme"
            onClick={() => setTheme(theme === "dark" ? "light" : "dark")}
          >
            {theme === "dark" ? "☀" : "☾"}
          </button>
        </div>
      </header>
      <div className="subbar">
        <ServerPanel status={server} url={serverUrl} onUrlSaved={setServerUrl} onError={setError} onLocalRoom={onLocalRoom} />
      </div>

      {error && <ErrorBanner error={error} onRetry={() => void refresh()} />}

      <main className={`console${stageTab === "stage" ? "" : " console-tools"}`}>
        <aside className="col-audio">
          <section className="card" aria-labelledby="devices-title">
            <header className="card-head">
              <h2 id="devices-title">Input</h2>
              <button type="button" id="refresh-devices" className="ghost small-btn" onClick={() => void refresh()}>
                Refresh
              </button>
            </header>
            <select
              id="input-device"
              aria-label="Input device"
              value={selected ?? ""}
              disabled={!devices || devices.inputs.length === 0}
              onChange={(e) => void startMeter(e.target.value)}
            >
              {!devices?.inputs.some((d) => d.id === selected) && <option value="">— pick an input —</option>}
              {devices?.inputs.map((d) => (
                <option key={d.id} value={d.id}>
                  {d.name}
                  {d.isDefault ? " (default)" : ""} · {d.channels} ch
                </option>
              ))}
            </select>
            <p className="muted small" id="meter-device">
              {active ? `${active.name} · ${active.channels} ch · ${active.sampleRate / 1000} kHz` : "No input open"}
              {live ? " · takes effect when you next go live" : ""}
            </p>
          </section>
          {audio && (
            <AudioPanel audio={audio} devices={devices} inputId={selected} live={engineOn} onChange={(a) => void changeAudio(a)} inputMeter={<InputMeters />} />
          )}
          {audio && (
            <SpeakerVolumes
              volumes={audio.speakerVolumes}
              onForget={(uid) => {
                const { [uid]: _, ...rest } = audio.speakerVolumes;
                void changeAudio({ ...audio, speakerVolumes: rest });
              }}
            />
          )}
          <MicTest live={live} onError={setError} inputReady={openNewest.idle} />
          {shortcuts && (
            <ShortcutsPanel shortcuts={shortcuts} onSaved={setShortcuts} onVoiceMuted={onVoiceMuted} onError={setError} helpOpen={helpOpen} onHelp={setHelpOpen} />
          )}
          <button type="button" id="reset-settings" className="ghost reset" onClick={() => void resetAll()}>
            Reset all settings to defaults
          </button>
        </aside>

        <section className="col-stage">
          <nav className="stage-tabs" aria-label="Centre panel">
            {(["stage", "effects", "music"] as const).map((t) => (
              <button key={t} type="button" id={`tab-${t}`} className={stageTab === t ? "active" : ""} aria-pressed={stageTab === t} onClick={() => setStageTab(t)}>
                {t === "stage" ? "Stage" : t === "effects" ? "Effects" : "Music"}
                {t === "effects" && effects?.current.enabled && (effects.current.room || effects.current.changer || effects.current.beautifier || effects.current.reverb.enabled) ? <span className="tab-dot" title="Effects on" /> : null}
              </button>
            ))}
          </nav>
          {stageTab === "effects" && effects && audio && (
            <EffectsPanel
              panel={effects}
              onPanel={setEffects}
              live={live}
              preview={audio.ear.enabled && audio.ear.source === "withEffects"}
              onPreview={(on) => void changeAudio({ ...audio, ear: on ? { ...audio.ear, enabled: true, source: "withEffects" } : { ...audio.ear, enabled: false } })}
              onError={setError}
            />
          )}
          {stageTab === "music" && music && <MusicPanel music={music} onMusic={setMusic} live={live} onError={setError} devices={devices} />}
          {stageTab === "stage" && (<>
          {status && status.alerts.length > 0 && (
            <AlertBar alerts={status.alerts} onKickBan={(uid) => void act({ type: "kick", uid, banMinutes: 24 * 60 })} onDismiss={(v) => void dismissAlert(v)} />
          )}
          {live && view ? (
            <MemoSeatGrid
              seats={view.seats}
              applications={view.applications}
              me={status.uid}
              volumes={audio?.speakerVolumes ?? NO_VOLUMES}
              invitable={invitable}
              onAct={onAct}
              onVolume={setSpeakerVolume}
            />
          ) : (
            <div className="offline-stage">
              <div className="offline-mic" aria-hidden="true" />
              <h2>Not on air</h2>
              <p className="muted">
                Pick your input, check the meter, then <strong>Go live</strong>. Your seat grid, requests and the room's chat appear here.
              </p>
            </div>
          )}
          {live && <LiveStatsPanel stats={status.stats} />}
          </>)}
        </section>

        <aside className="col-side">
          {live && view ? (
            <MemoSidePanel
              me={status.uid}
              audience={view.audience}
              banned={view.banned}
              feed={view.feed}
              notice={view.notice ?? null}
              leaderboard={view.leaderboard}
              now={now}
              onAct={onAct}
            />
          ) : (
            <section className="card side empty">
              <h2>Chat &amp; audience</h2>
              <p className="muted small">Appear once you are live.</p>
            </section>
          )}
        </aside>
      </main>
    </div>
  );
}
