import { useCallback, useEffect, useState } from "react";
import { commands, type AppError, type RecordingView } from "./bindings";

interface Props {
  room: string;
  onError: (e: AppError) => void;
}

function clock(ms: number): string {
  const s = Math.max(0, Math.floor(ms / 1000));
  const h = Math.floor(s / 3600);
  const mm = String(Math.floor((s % 3600) / 60)).padStart(2, "0");
  const ss = String(s % 60).padStart(2, "0");
  return h > 0 ? `${h}:${mm}:${ss}` : `${mm}:${ss}`;
}

function size(bytes: number | null): string {
  if (bytes === null) return "";
  return bytes >= 1e6 ? `${(bytes / 1e6).toFixed(1)} MB` : `${Math.max(1, Math.round(bytes / 1e3))} kB`;
}

/** Start / stop recording the room's mix, and its recordings, each openable. */
export function RecordingControls({ room, onError }: Props) {
  const [list, setList] = useState<RecordingView[]>([]);
  const [busy, setBusy] = useState(false);
  const [open, setOpen] = useState(false);
  const [opened, setOpened] = useState<Record<string, string>>({});
  const [now, setNow] = useState(Date.now());
  const running = list.find((r) => r.status === "recording") ?? null;

  const reload = useCallback(async () => {
    const r = await commands.listRecordings(room);
    if (r.status === "ok") setList(r.data);
  }, [room]);

  useEffect(() => {
    void reload();
  }, [reload]);
  useEffect(() => {
    if (!running) return;
    const t = setInterval(() => setNow(Date.now()), 500);
    return () => clearInterval(t);
  }, [running]);

  const toggle = async () => {
    setBusy(true);
    const r = await commands.setRecording(room, running === null);
    setBusy(false);
    if (r.status === "ok") {
      setList(r.data);
      if (running) setOpen(true);
    } else onError(r.error);
  };

  const openFile = async (id: string, revealOnly: boolean) => {
    const r = await commands.openRecording(room, id, revealOnly);
    if (r.status === "ok") setOpened((o) => ({ ...o, [id]: r.data }));
    else onError(r.error);
  };

  return (
    <span className="rb-rec">
      <button
        type="button"
        id="record-toggle"
        className={running ? "danger" : "ghost"}
        data-recording={running ? "true" : "false"}
        disabled={busy}
        onClick={() => void toggle()}
        title={running ? "Stop recording; the file is listed under Recordings" : "Record the room's mix (Ogg Opus, stereo)"}
      >
        <span className={`rb-rec-dot${running ? " on" : ""}`} aria-hidden="true" />
        {running ? `Stop ${clock(now - (running.startedAt ?? now))}` : "Record"}
      </button>
      <button type="button" id="recordings-toggle" className="ghost" aria-expanded={open} onClick={() => setOpen(!open)}>
        Recordings{list.length > 0 ? ` (${list.length})` : ""}
      </button>
      {open && (
        <div className="rb-popover" id="recordings-list" role="dialog" aria-label="Recordings">
          <header className="rb-pop-head">
            <strong>Recordings of {room}</strong>
            <button type="button" className="ghost small-btn" onClick={() => void reload()}>
              Refresh
            </button>
          </header>
          {list.length === 0 ? (
            <p className="muted small">Nothing recorded yet. Press Record to capture the room's mix.</p>
          ) : (
            <ul className="rb-rec-list">
              {list.map((r) => (
                <li key={r.id} data-id={r.id} data-status={r.status} data-duration-ms={r.durationMs ?? ""} className="rb-rec-item">
                  <span className="rb-rec-when">{new Date(r.startedAt ?? 0).toLocaleString()}</span>
                  <span className="muted small">
                    {r.status === "recording"
                      ? `recording · ${clock(now - (r.startedAt ?? now))}`
                      : r.status === "done"
                        ? `${clock(r.durationMs ?? 0)} · ${size(r.bytes ?? null)}`
                        : r.status}
                  </span>
                  {r.status !== "recording" && r.status !== "failed" && (
                    <span className="rb-rec-buttons">
                      <button type="button" className="small-btn rec-open" onClick={() => void openFile(r.id, false)}>
                        Open
                      </button>
                      <button type="button" className="ghost small-btn rec-save" onClick={() => void openFile(r.id, true)}>
                        Save copy
                      </button>
                    </span>
                  )}
                  {opened[r.id] && (
                    <span className="muted small rb-rec-path" title={opened[r.id]}>
                      Saved to {opened[r.id]}
                    </span>
                  )}
                </li>
              ))}
            </ul>
          )}
        </div>
      )}
    </span>
  );
}
