import { useState } from "react";
import type { ApplicationView, HostAction, SeatView } from "./bindings";
import { hue, initials, seatBadges, seatLabel } from "./console";
import { barFill } from "./levels";

interface Props {
  seats: SeatView[];
  applications: ApplicationView[];
  me: string;
  /** Local playback volume per speaker, percent. */
  volumes: Record<string, number | null>;
  /** Members who could be invited to a seat (in the room, not seated). */
  invitable: string[];
  onAct: (action: HostAction) => void;
  onVolume: (uid: string, percent: number) => void;
}

/** The seat grid: each seat with its occupant, speaking ripple, badges and the host's actions. */
export function SeatGrid({ seats, applications, me, volumes, invitable, onAct: send, onVolume }: Props) {
  const [open, setOpen] = useState<number | null>(null);
  // Any action closes the seat's menu (the seat may change under it).
  const onAct = (a: HostAction) => {
    setOpen(null);
    send(a);
  };
  const [moving, setMoving] = useState<number | null>(null);
  const free = seats.filter((s) => s.uid === null && !s.locked && s.kind === "regular");
  return (
    <div className="stage">
      <section className={`card queue${applications.length === 0 ? " empty" : ""}`} aria-labelledby="queue-title" id="applications">
        <header className="card-head">
          <h2 id="queue-title">
            Requests{" "}
            <span className={`badge${applications.length > 0 ? " hot" : ""}`} id="queue-count" data-count={applications.length}>
              {applications.length}
            </span>
          </h2>
          {/* An empty queue is one line: the seats get the height. */}
          {applications.length === 0 && <p className="muted small queue-empty">No one is asking for a seat.</p>}
        </header>
        {applications.length > 0 && (
          <ul className="queue-list">
            {applications.map((a) => (
              <li key={a.uid} data-uid={a.uid}>
                <span className="avatar sm" style={{ "--h": hue(a.uid) } as React.CSSProperties}>
                  {initials(a.uid)}
                </span>
                <span className="who">{a.uid}</span>
                <span className="muted small">{a.seat === null ? "any seat" : `seat ${a.seat}`}</span>
                <button type="button" className="approve" onClick={() => onAct({ type: "approve", uid: a.uid })}>
                  Approve
                </button>
                <button type="button" className="ghost" onClick={() => onAct({ type: "reject", uid: a.uid })}>
                  Reject
                </button>
              </li>
            ))}
          </ul>
        )}
      </section>

      <ol className="seat-grid" id="seats">
        {seats.map((s) => {
          const mine = s.uid === me;
          const badges = seatBadges(s);
          const vol = s.uid ? (volumes[s.uid] ?? 100) : 100;
          return (
            <li
              key={s.index}
              data-seat={s.index}
              data-uid={s.uid ?? ""}
              data-speaking={s.speaking ? "true" : "false"}
              data-muted={s.muted ? "true" : "false"}
              className={`seat-card kind-${s.kind}${s.uid ? " taken" : ""}${s.locked ? " locked" : ""}${s.speaking && !s.muted ? " speaking" : ""}${
                moving !== null && moving !== s.index && s.uid === null && !s.locked ? " drop-target" : ""
              }`}
              onClick={() => {
                if (moving !== null && moving !== s.index && s.uid === null && !s.locked) {
                  onAct({ type: "moveSeat", from: moving, to: s.index });
                  setMoving(null);
                }
              }}
            >
              <div className="seat-avatar-wrap">
                {s.uid ? (
                  <span className="avatar" style={{ "--h": hue(s.uid) } as React.CSSProperties}>
                    {initials(s.uid)}
                  </span>
                ) : (
                  <span className={`avatar empty${s.locked ? " locked" : ""}`} aria-hidden="true">
                    {s.locked ? "🔒" : "+"}
                  </span>
                )}
                {s.uid && s.muted && <span className="mic-off" title={s.hostMuted ? "Muted by the host" : "Muted themselves"} aria-hidden="true" />}
              </div>
              <span className="seat-name" title={s.uid ?? undefined}>
                {s.uid ?? (s.locked ? "Locked" : "Empty")}
              </span>
              <span className="seat-meta">
                <span className="seat-index">{seatLabel(s.index, s.kind)}</span>
                {badges.map((b) => (
                  <span key={b} className={`seat-badge b-${b}`}>
                    {b}
                  </span>
                ))}
              </span>
              {s.uid && (
                <span className="seat-level" aria-label={`level ${s.volume} of 255`}>
                  <span style={barFill(s.volume / 255)} />
                </span>
              )}
              <button
                type="button"
                className="seat-menu-btn"
                aria-label={`Actions for ${seatLabel(s.index, s.kind)}`}
                aria-expanded={open === s.index}
                onClick={(e) => {
                  e.stopPropagation();
                  setOpen(open === s.index ? null : s.index);
                }}
              >
                ⋯
              </button>
              {open === s.index && (
                <div className="seat-menu" role="menu" onClick={(e) => e.stopPropagation()}>
                  {mine ? (
                    <>
                      <button type="button" role="menuitem" onClick={() => onAct({ type: "setSelfMuted", muted: !s.selfMuted })}>
                        {s.selfMuted ? "Unmute myself" : "Mute myself"}
                      </button>
                      <button type="button" role="menuitem" onClick={() => onAct({ type: "leaveSeat" })}>
                        Leave this seat
                      </button>
                    </>
                  ) : (
                    <>
                      {s.uid && (
                        <>
                          <button type="button" role="menuitem" data-action="mute" onClick={() => onAct(s.hostMuted ? { type: "unmuteSeat", seat: s.index } : { type: "muteSeat", seat: s.index })}>
                            {s.hostMuted ? "Unmute seat" : "Mute seat"}
                          </button>
                          <button type="button" role="menuitem" data-action="kick" onClick={() => onAct({ type: "kickFromSeat", seat: s.index })}>
                            Remove from seat
                          </button>
                          {free.length > 0 && (
                            <button type="button" role="menuitem" onClick={() => (setMoving(s.index), setOpen(null))}>
                              Move to another seat…
                            </button>
                          )}
                          <label className="menu-volume">
                            <span>Volume for me</span>
                            <input
                              type="range"
                              min={0}
                              max={150}
                              value={vol}
                              onChange={(e) => s.uid && onVolume(s.uid, Number(e.target.value))}
                            />
                            <output>{vol} %</output>
                          </label>
                        </>
                      )}
                      {s.kind !== "owner" && (
                        <button type="button" role="menuitem" data-action="lock" onClick={() => onAct(s.locked ? { type: "unlockSeat", seat: s.index } : { type: "lockSeat", seat: s.index })}>
                          {s.locked ? "Unlock seat" : "Lock seat"}
                        </button>
                      )}
                      {!s.uid && !s.locked && s.kind === "regular" && (
                        <label className="menu-invite">
                          <span>Invite</span>
                          <select
                            value=""
                            onChange={(e) => {
                              if (e.target.value) onAct({ type: "invite", uid: e.target.value, seat: s.index });
                              setOpen(null);
                            }}
                          >
                            <option value="">{invitable.length ? "pick a listener…" : "no listeners yet"}</option>
                            {invitable.slice(0, 200).map((u) => (
                              <option key={u} value={u}>
                                {u}
                              </option>
                            ))}
                          </select>
                        </label>
                      )}
                      {!s.uid && s.index === 0 && (
                        <button type="button" role="menuitem" onClick={() => onAct({ type: "takeSeat", seat: 0 })}>
                          Take the host seat
                        </button>
                      )}
                    </>
                  )}
                </div>
              )}
            </li>
          );
        })}
      </ol>
      {moving !== null && (
        <p className="move-hint" role="status">
          Pick an empty seat for {seats[moving]?.uid ?? "them"}.{" "}
          <button type="button" className="ghost" onClick={() => setMoving(null)}>
            Cancel
          </button>
        </p>
      )}
    </div>
  );
}
