import { useEffect, useState } from "react";
import { commands, type AppError, type ServerStatus } from "./bindings";

interface Props {
  status: ServerStatus | null;
  url: string;
  onUrlSaved: (url: string) => void;
  onError: (e: AppError) => void;
}

/** The room server's address and whether it answers. */
export function ServerPanel({ status, url, onUrlSaved, onError }: Props) {
  const [draft, setDraft] = useState(url);
  useEffect(() => setDraft(url), [url]);
  const state = status?.state ?? "checking";
  const text =
    status?.state === "reachable"
      ? `Server reachable · ${status.node} · v${status.version} · ${status.latencyMs} ms`
      : status?.state === "unreachable"
        ? `Server unreachable — ${status.reason}`
        : "Checking server…";

  const save = async () => {
    const result = await commands.setServerUrl(draft);
    if (result.status === "ok") onUrlSaved(result.data.serverUrl);
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
      <span id="server-status" data-state={state} title={text}>
        {text}
      </span>
      <input id="server-url" aria-label="Room server address" value={draft} onChange={(e) => setDraft(e.target.value)} />
      <button type="submit">Connect</button>
    </form>
  );
}
