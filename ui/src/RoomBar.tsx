import { useState } from "react";
import type { RoomStatus } from "./bindings";
import { connectionLabel } from "./room";

interface Props {
  status: RoomStatus | null;
  localRoom: boolean;
  busy: boolean;
  link: string | null;
  onJoin: (room: string, token: string | null) => void;
  onLeave: () => void;
  onLink: () => void;
  onDismiss: () => void;
  onRetake: (seat: number) => void;
}

/** Going live and the room's state: join form, or the on-air bar with the share link. */
export function RoomBar({ status, localRoom, busy, link, onJoin, onLeave, onLink, onDismiss, onRetake }: Props) {
  const [room, setRoom] = useState("studio");
  const [token, setToken] = useState("");
  const [copied, setCopied] = useState(false);
  const live = status !== null && status.state !== "closed";
  if (!live) {
    return (
      <form
        className="room-bar room-join"
        onSubmit={(e) => {
          e.preventDefault();
          onJoin(room, token.trim() === "" ? null : token.trim());
        }}
      >
        <label className="inline-field">
          <span>Room</span>
          <input id="room-id" value={room} onChange={(e) => setRoom(e.target.value)} />
        </label>
        <label className="inline-field grow">
          <span>Token</span>
          <input
            id="room-token"
            value={token}
            placeholder={localRoom ? "not needed in the local room" : "paste the token from your room's operator"}
            onChange={(e) => setToken(e.target.value)}
          />
        </label>
        <button type="submit" id="join-room" className="go-live" disabled={busy}>
          <span className="rec-dot" aria-hidden="true" />
          {busy ? "Going live…" : "Go live"}
        </button>
        {status?.ended && <span className="muted small">Last session ended: {status.ended}</span>}
      </form>
    );
  }
  const onAir = status.state === "connected" && status.publishing;
  return (
    <div className="room-bar live">
      <span
        id="room-state"
        className={`on-air${onAir ? " lit" : ""}`}
        data-state={status.state}
        data-publishing={status.publishing ? "true" : "false"}
      >
        {onAir ? "ON AIR" : connectionLabel(status.state).toUpperCase()}
      </span>
      <span className="room-name">
        <strong>{status.room}</strong> <span className="muted">as {status.uid}</span>
      </span>
      <span className="muted small" id="room-counters">
        {status.members} in the room · sent {status.packetsSent} · received {status.packetsReceived} packets
        {status.sendLoss > 0 ? ` · loss ${status.sendLoss} %` : ""}
      </span>
      <span className="spacer" />
      {localRoom && (
        <button type="button" id="listener-link" className="ghost" onClick={onLink}>
          Share link
        </button>
      )}
      {link && (
        <span className="share">
          <input id="listener-link-url" readOnly value={link} onFocus={(e) => e.target.select()} aria-label="Listener link" />
          <button
            type="button"
            className="ghost"
            onClick={() => {
              void navigator.clipboard?.writeText(link).then(() => setCopied(true));
              setTimeout(() => setCopied(false), 1500);
            }}
          >
            {copied ? "Copied" : "Copy"}
          </button>
        </span>
      )}
      <button type="button" id="leave-room" className="ghost" disabled={busy} onClick={onLeave}>
        Leave
      </button>
      <button
        type="button"
        id="dismiss-room"
        className="danger ghost"
        onClick={() => {
          if (window.confirm("Close the room for everyone? This cannot be undone.")) onDismiss();
        }}
      >
        End room
      </button>
      {status.lostSeat !== null && (
        <p className="lost-seat" role="alert" id="lost-seat">
          Your connection dropped and {status.lostSeat === 0 ? "the host seat" : `seat ${status.lostSeat}`} was released; nothing is sent until
          you take a seat again.{" "}
          <button type="button" id="retake-seat" onClick={() => onRetake(status.lostSeat ?? 0)}>
            Take it again
          </button>
        </p>
      )}
    </div>
  );
}
