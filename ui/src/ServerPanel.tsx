import { useEffect, useState } from "react";
import { commands, type AppError, type LocalRoomView, type ServerStatus } from "./bindings";

interface Props {
  status: ServerStatus | null;
  url: string;
  onUrlSaved: (url: string) => void;
  onError: (e: AppError) => void;
  /** Told when the local room starts or stops. */
  onLocalRoom?: (room: LocalRoomView | null) => void;
}

/** The room server's address and whether it answers; or the embedded local room. */
export function ServerPanel({ status, url, onUrlSaved, onError, onLocalRoom }: Props) {
  const [draft, setDraft] = useState(url);
  const [local, setLocalState] = useState<LocalRoomView | null>(null);
  const setLocal = (room: LocalRoomView | null) => {
    setLocalState(room);
    onLocalRoom?.(room);
  };
  const [switching, setSwitching] = useState(false);
  useEffect(() => setDraft(url), [url]);
  useEffect(() => {
    void commands.localRoomStatus().then((r) => {
      if (r.status === "ok") {
        setLocalState(r.data);
        onLocalRoom?.(r.data);
      }
    });
  }, [onLocalRoom]);
  const state = status?.state ?? "checking";
  const where = local ? "Local room" : "Server";
  const text =
    status?.state === "reachable"
      ? `${where} reachable · ${status.node} · v${status.version} · ${status.latencyMs} ms`
      : status?.state === "unreachable"
        ? `${where} unreachable — ${status.reason}`
        : `Checking ${where.toLowerCase()}…`;

  const save = async () => {
    const result = await commands.setServerUrl(draft);
    if (result.status === "ok") onUrlSaved(result.data.serverUrl);
    else onError(result.error);
  };

  const toggleLocal = async (enabled: boolean) => {
    setSwitching(true);
    const result = await commands.setLocalRoom(enabled);
    setSwitching(false);
    if (result.status === "ok") setLocal(result.data);
    else onError(result.error);
  };

  return (
    <form
      className="server"
      onSubmit={(e) => {
        e.preventDefault();
        void save();
      }}
    >
      <span className={`status-dot status-${state}`} aria-hidden="true" />
      <span id="server-status" data-state={state} data-local={local ? "true" : "false"} title={local ? `${text} · ${local.url}` : text}>
        {text}
      </span>
      <label className="local-room" title="Run a room on this computer, no server needed">
        <input
          id="local-room"
          type="checkbox"
          checked={local !== null}
          disabled={switching}
          onChange={(e) => void toggleLocal(e.target.checked)}
        />
        {switching ? "Starting…" : "Local room"}
      </label>
      {local ? (
        <span id="local-room-url" className="muted">
          {local.url}
        </span>
      ) : (
        <>
          <input id="server-url" aria-label="Room server address" value={draft} onChange={(e) => setDraft(e.target.value)} />
          <button type="submit">Connect</button>
        </>
      )}
    </form>
  );
}
