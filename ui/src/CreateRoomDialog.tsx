import { useState } from "react";
import { commands, type AppError, type NewRoom } from "./bindings";
import { DEFAULT_RULES, RoomRulesForm } from "./RoomRulesForm";

interface Props {
  localRoom: boolean;
  initialRoom: string;
  onCreated: (room: string) => void;
  onClose: () => void;
}

/** The room's settings at creation: seats, boss seat, safety and chat rules. */
export function CreateRoomDialog({ localRoom, initialRoom, onCreated, onClose }: Props) {
  const [form, setForm] = useState<NewRoom>({
    room: initialRoom,
    title: "",
    seatCount: 8,
    bossSeat: null,
    rules: DEFAULT_RULES,
  });
  const [key, setKey] = useState("");
  const [secret, setSecret] = useState("");
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<AppError | null>(null);
  const boss = form.bossSeat ?? { windowMinutes: 10, holdMinutes: 5, minValue: 100 };

  const submit = async () => {
    setBusy(true);
    setError(null);
    if (!localRoom) {
      const c = await commands.setServerCredentials(key, secret);
      if (c.status === "error") {
        setBusy(false);
        setError(c.error);
        return;
      }
    }
    const r = await commands.createRoom(form);
    setBusy(false);
    if (r.status === "ok") onCreated(form.room.trim());
    else setError(r.error);
  };

  return (
    <div className="rb-backdrop" role="presentation" onMouseDown={(e) => e.target === e.currentTarget && onClose()}>
      <form
        className="rb-dialog"
        role="dialog"
        aria-labelledby="create-room-title"
        id="create-room-dialog"
        onSubmit={(e) => {
          e.preventDefault();
          e.stopPropagation();
          void submit();
        }}
      >
        <h2 id="create-room-title">New room</h2>
        <p className="muted small">
          {localRoom ? "In the local room on this computer." : "On the room server, with the API key from its operator (kept for this session only)."}
        </p>
        <div className="rb-grid">
          <label className="rb-field">
            <span>Room id</span>
            <input id="new-room-id" required value={form.room} pattern="[A-Za-z0-9._\-]{1,64}" title="1–64 of A–Z a–z 0–9 . _ -" onChange={(e) => setForm({ ...form, room: e.target.value })} />
          </label>
          <label className="rb-field">
            <span>Title</span>
            <input id="new-room-title" maxLength={256} value={form.title} placeholder="Friday night KTV" onChange={(e) => setForm({ ...form, title: e.target.value })} />
          </label>
          <label className="rb-field">
            <span>Guest seats</span>
            <input
              id="new-room-seats"
              type="number"
              min={1}
              max={64}
              required
              value={form.seatCount}
              onChange={(e) => setForm({ ...form, seatCount: Math.max(1, Math.min(64, Number(e.target.value) || 1)) })}
            />
          </label>
        </div>
        <fieldset className="rb-fieldset">
          <legend>
            <label className="rb-check">
              <input id="new-room-boss" type="checkbox" checked={form.bossSeat !== null} onChange={(e) => setForm({ ...form, bossSeat: e.target.checked ? boss : null })} />
              Boss seat (the top gifter sits there)
            </label>
          </legend>
          {form.bossSeat && (
            <div className="rb-grid">
              <label className="rb-field">
                <span>Gifts counted over (min)</span>
                <input id="new-room-boss-window" type="number" min={1} value={boss.windowMinutes} onChange={(e) => setForm({ ...form, bossSeat: { ...boss, windowMinutes: Math.max(1, Number(e.target.value) || 1) } })} />
              </label>
              <label className="rb-field">
                <span>Held for (min)</span>
                <input id="new-room-boss-hold" type="number" min={1} value={boss.holdMinutes} onChange={(e) => setForm({ ...form, bossSeat: { ...boss, holdMinutes: Math.max(1, Number(e.target.value) || 1) } })} />
              </label>
              <label className="rb-field">
                <span>Least gift value</span>
                <input id="new-room-boss-min" type="number" min={0} value={boss.minValue} onChange={(e) => setForm({ ...form, bossSeat: { ...boss, minValue: Math.max(0, Number(e.target.value) || 0) } })} />
              </label>
            </div>
          )}
        </fieldset>
        <RoomRulesForm idPrefix="new-room" rules={form.rules} onChange={(rules) => setForm({ ...form, rules })} />
        {!localRoom && (
          <fieldset className="rb-fieldset">
            <legend>Server key</legend>
            <div className="rb-grid">
              <label className="rb-field">
                <span>Key</span>
                <input id="server-key" autoComplete="off" value={key} onChange={(e) => setKey(e.target.value)} />
              </label>
              <label className="rb-field">
                <span>Secret</span>
                <input id="server-secret" type="password" autoComplete="off" value={secret} onChange={(e) => setSecret(e.target.value)} />
              </label>
            </div>
          </fieldset>
        )}
        {error && (
          <p className="rb-error" role="alert" id="create-room-error">
            {error.message}
          </p>
        )}
        <div className="rb-actions">
          <button type="button" className="ghost" onClick={onClose}>
            Cancel
          </button>
          <button type="submit" id="create-room-submit" disabled={busy}>
            {busy ? "Creating…" : "Create and go live"}
          </button>
        </div>
      </form>
    </div>
  );
}
