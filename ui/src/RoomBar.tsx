import { useState } from "react";
import type { AppError, RoomRules, RoomStatus } from "./bindings";
import { connectionLabel } from "./room";
import { useHeldText } from "./LiveText";
import { CreateRoomDialog } from "./CreateRoomDialog";
import { RecordingControls } from "./RecordingControls";
import { RulesPopover } from "./RulesPopover";
import "./roombar.css";

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
  onRules: (rules: RoomRules) => void;
  onError: (e: AppError) => void;
}

/** Going live and the room's state: join form, or the on-air bar with the share link. */
export function RoomBar({ status, localRoom, busy, link, onJoin, onLeave, onLink, onDismiss, onRetake, onRules, onError }: Props) {
  const [room, setRoom] = useState("studio");
  const [token, setToken] = useState("");
  const [copied, setCopied] = useState(false);
  const [creating, setCreating] = useState(false);
  const [confirming, setConfirming] = useState(false);
  const live = status !== null && status.state !== "closed";
  if (!live) {
    return (
      <>
      {creating && (
        <CreateRoomDialog
          localRoom={localRoom}
          initialRoom={room}
          onClose={() => setCreating(false)}
          onCreated={(r) => {
            setCreating(false);
            setRoom(r);
            onJoin(r, null);
          }}
        />
      )}
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
        <button type="button" id="new-room" className="ghost" disabled={busy} onClick={() => setCreating(true)} title="Create a room with its seats, boss seat, safety and chat rules">
          New room…
        </button>
        {status?.ended && <span className="muted small">Last session ended: {status.ended}</span>}
      </form>
      </>
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
      <RoomCounters status={status} />
      <span className="spacer" />
      {status.view && <RulesPopover rules={status.view.rules} onApply={onRules} />}
      <RecordingControls room={status.room} onError={onError} />
      <button type="button" id="listener-link" className="ghost" onClick={onLink} title={localRoom ? "A link for a listener, who can apply for a seat" : "Needs the server key (New room…)"}>
        Share link
      </button>
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
        onClick={() => setConfirming(true)}
      >
        End room
      </button>
      {confirming && (
        <div className="rb-backdrop" role="presentation" onMouseDown={(e) => e.target === e.currentTarget && setConfirming(false)}>
          <div className="rb-dialog rb-confirm" role="alertdialog" aria-labelledby="dismiss-title" id="dismiss-dialog">
            <h2 id="dismiss-title">End “{status.room}” for everyone?</h2>
            <p className="muted">Every guest and listener is disconnected, seats and chat close, and a running recording is finished. This cannot be undone.</p>
            <div className="rb-actions">
              <button type="button" className="ghost" id="dismiss-cancel" autoFocus onClick={() => setConfirming(false)}>
                Keep the room
              </button>
              <button
                type="button"
                className="danger"
                id="dismiss-confirm"
                onClick={() => {
                  setConfirming(false);
                  onDismiss();
                }}
              >
                End room
              </button>
            </div>
          </div>
        </div>
      )}
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

/** How often (ms) the room bar's counters may change. The packet counts move with every status
 *  (~10 a second in a busy room), faster than anyone reads them, and each change repaints the
 *  top bar: without a GPU, on the `studio_paint` trial page, a frame that changes the top left
 *  and the chat composites the box around both (~40 ms of a core instead of ~8; in the Studio's
 *  own bench the hold alone made no measurable change; docs/studio.md, "Tenth round"). */
export const ROOM_COUNTERS_HOLD_MS = 1000;

/** Members and packets, changed at most every ROOM_COUNTERS_HOLD_MS. */
export function RoomCounters({ status }: { status: RoomStatus }) {
  const text = useHeldText(
    `${status.members} in the room · sent ${status.packetsSent} · received ${status.packetsReceived} packets${
      status.sendLoss > 0 ? ` · loss ${status.sendLoss} %` : ""
    }`,
    ROOM_COUNTERS_HOLD_MS,
  );
  return (
    <span className="muted small" id="room-counters">
      {text}
    </span>
  );
}
