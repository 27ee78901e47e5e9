import { useCallback, useEffect, useRef, useState } from "react";
import { Channel } from "@tauri-apps/api/core";
import {
  commands,
  events,
  type AppError,
  type DeviceListView,
  type DeviceView,
  type MeterFrame_Deserialize as MeterFrame,
  type ServerStatus,
} from "./bindings";
import { MeterBar } from "./MeterBar";
import { channelLabel } from "./levels";
import { ServerPanel } from "./ServerPanel";
import { ErrorBanner } from "./ErrorBanner";
import { RoomPanel } from "./RoomPanel";

/** How fast the peak-hold marker falls, dB per frame (~30 frames a second). */
const HOLD_FALL_DB = 0.4;

export function App() {
  const [devices, setDevices] = useState<DeviceListView | null>(null);
  const [selected, setSelected] = useState<string | null>(null);
  const [active, setActive] = useState<DeviceView | null>(null);
  const [frame, setFrame] = useState<MeterFrame | null>(null);
  const [hold, setHold] = useState<number[]>([]);
  const [error, setError] = useState<AppError | null>(null);
  const [server, setServer] = useState<ServerStatus | null>(null);
  const [serverUrl, setServerUrl] = useState("");
  const [localRoom, setLocalRoom] = useState(false);
  const onLocalRoom = useCallback((room: unknown) => setLocalRoom(room !== null), []);
  const holdRef = useRef<number[]>([]);

  const startMeter = useCallback(async (id: string | null) => {
    const channel = new Channel<MeterFrame>();
    channel.onmessage = (f) => {
      setFrame(f);
      holdRef.current = f.channels.map((c, i) => Math.max(c.peakDbfs ?? -100, (holdRef.current[i] ?? -100) - HOLD_FALL_DB));
      setHold(holdRef.current);
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
    } else {
      setActive(null);
      setFrame(null);
      setError(result.error);
    }
  }, []);

  const refresh = useCallback(async () => {
    const settings = await commands.getSettings();
    setServerUrl(settings.serverUrl);
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

  const channels = frame?.channels ?? [];
  return (
    <div className="app">
      <header className="topbar">
        <div className="brand">
          <span className="logo" aria-hidden="true">◉</span> Onmic Studio
        </div>
        <ServerPanel status={server} url={serverUrl} onUrlSaved={setServerUrl} onError={setError} onLocalRoom={onLocalRoom} />
      </header>

      {error && <ErrorBanner error={error} onRetry={() => void refresh()} />}

      <main className="panels">
        <section className="panel" aria-labelledby="devices-title">
          <h2 id="devices-title">Devices</h2>
          <p className="muted">Audio system: {devices?.host ?? "—"}</p>
          <label className="field">
            <span>Input (microphone / sound card)</span>
            <select
              id="input-device"
              value={selected ?? ""}
              disabled={!devices || devices.inputs.length === 0}
              onChange={(e) => void startMeter(e.target.value)}
            >
              {!devices?.inputs.some((d) => d.id === selected) && <option value="">— pick an input —</option>}
              {devices?.inputs.map((d) => (
                <option key={d.id} value={d.id}>
                  {d.name}
                  {d.isDefault ? " (default)" : ""} · {d.channels} ch · {d.sampleRate / 1000} kHz
                </option>
              ))}
            </select>
          </label>
          <button type="button" id="refresh-devices" onClick={() => void refresh()}>
            Refresh
          </button>
          <h3>Outputs</h3>
          <ul id="output-devices" className="device-list">
            {devices?.outputs.map((d) => (
              <li key={d.id} data-device-id={d.id}>
                {d.name}
                {d.isDefault ? " (default)" : ""}
                <span className="muted">
                  {" "}
                  · {d.channels} ch · {d.sampleRate / 1000} kHz
                </span>
              </li>
            ))}
            {devices && devices.outputs.length === 0 && <li className="muted">No output device</li>}
          </ul>
        </section>

        <section className="panel" aria-labelledby="meter-title">
          <h2 id="meter-title">Input level</h2>
          <p className="muted" id="meter-device">
            {active ? `${active.name} · ${active.channels} ch · ${active.sampleRate / 1000} kHz` : "No input open"}
          </p>
          <div className="meters" id="meters">
            {channels.map((c, i) => (
              <MeterBar
                key={i}
                label={channelLabel(i, channels.length)}
                rmsDbfs={c.rmsDbfs}
                peakDbfs={c.peakDbfs}
                holdDbfs={hold[i] ?? null}
              />
            ))}
          </div>
          {frame?.clipped && (
            <p className="clip-warning" role="alert">
              Clipping: lower the input gain on your sound card.
            </p>
          )}
        </section>

        <RoomPanel localRoom={localRoom} onError={setError} />
      </main>
    </div>
  );
}
