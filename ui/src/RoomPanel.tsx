import { useState } from "react";
import { Channel } from "@tauri-apps/api/core";
import { commands, type AppError, type RoomStatus } from "./bindings";
import { connectionLabel } from "./room";

interface Props {
  /** The embedded local room runs: joining needs no token. */
  localRoom: boolean;
  onError: (e: AppError) => void;
}

/** Going live: join a room, take the owner's seat, publish; the seats as the room sees them. */
export function RoomPanel({ localRoom, onError }: Props) {
  const [room, setRoom] = useState("studio");
  const [token, setToken] = useState("");
  const [status, setStatus] = useState<RoomStatus | null>(null);
  const [busy, setBusy] = useState(false);
  const [link, setLink] = useState<string | null>(null);
  const live = status !== null && status.state !== "closed";

  const join = async () => {
    setBusy(true);
    const channel = new Channel<RoomStatus>();
    channel.onmessage = setStatus;
    const result = await commands.joinRoom({ room, token: token.trim() === "" ? null : token }, channel);
    setBusy(false);
    if (result.status === "ok") setStatus(result.data);
    else onError(result.error);
  };

  const makeLink = async () => {
    if (!status) return;
    const result = await commands.listenerLink(status.room);
    if (result.status === "ok") setLink(result.data);
    else onError(result.error);
  };

  const leave = async () => {
    setBusy(true);
    await commands.leaveRoom();
    setBusy(false);
    setStatus(null);
  };

  return (
    <section className="panel room-panel" aria-labelledby="room-title">
      <h2 id="room-title">Room</h2>
      {!live ? (
        <form
          className="room-join"
          onSubmit={(e) => {
            e.preventDefault();
            void join();
          }}
        >
          <label className="field">
            <span>Room id</span>
            <input id="room-id" value={room} onChange={(e) => setRoom(e.target.value)} />
          </label>
          <label className="field">
            <span>Token {localRoom ? "(not needed in the local room)" : "(from your room's operator)"}</span>
            <input id="room-token" value={token} placeholder={localRoom ? "—" : "paste a token"} onChange={(e) => setToken(e.target.value)} />
          </label>
          <button type="submit" id="join-room" disabled={busy}>
            {busy ? "Joining…" : "Go live"}
          </button>
          {status?.ended && <p className="muted">Last session ended: {status.ended}</p>}
        </form>
      ) : (
        <div className="room-live">
          <p id="room-state" data-state={status.state} data-publishing={status.publishing ? "true" : "false"}>
            <span className={`status-dot ${status.state === "connected" ? "status-reachable" : ""}`} aria-hidden="true" />{" "}
            {connectionLabel(status.state)} · {status.room} as {status.uid} · {status.publishing ? "on air" : "not sending"}
          </p>
          <p className="muted" id="room-counters">
            {status.members} in the room · sent {status.packetsSent} · received {status.packetsReceived} packets
          </p>
          <ol className="seats" id="seats">
            {status.seats.map((s) => (
              <li
                key={s.index}
                data-seat={s.index}
                data-uid={s.uid ?? ""}
                data-speaking={s.speaking ? "true" : "false"}
                className={`seat${s.uid ? " taken" : s.locked ? " locked" : ""}${s.speaking ? " speaking" : ""}`}
              >
                <span className="seat-index">{s.index === 0 ? "Host" : `Seat ${s.index}`}</span>
                <span className="seat-who">{s.uid ?? (s.locked ? "locked" : "free")}</span>
                {s.muted && <span className="seat-muted">muted</span>}
                {s.uid && (
                  <span className="seat-level" aria-label={`level ${s.volume} of 255`}>
                    <span style={{ width: `${(s.volume / 255) * 100}%` }} />
                  </span>
                )}
              </li>
            ))}
          </ol>
          <div className="room-actions">
            <button type="button" id="leave-room" disabled={busy} onClick={() => void leave()}>
              Leave
            </button>
            {localRoom && (
              <button type="button" id="listener-link" onClick={() => void makeLink()}>
                New listener link
              </button>
            )}
          </div>
          {link && (
            <p className="listener-link">
              Open in a browser to listen (one link per listener):{" "}
              <input id="listener-link-url" readOnly value={link} onFocus={(e) => e.target.select()} />
            </p>
          )}
        </div>
      )}
    </section>
  );
}
