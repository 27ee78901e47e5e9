import type { BombingRule, ChatWho, RoomRules } from "./bindings";

export const DEFAULT_RULES: RoomRules = { bombing: "serverDefault", banMinutes: 24 * 60, chatWho: "everyone", slowModeSecs: 0 };

/** Ban lengths offered for the anti-bombing kick (minutes). */
export const BAN_PRESETS: [number, string][] = [
  [10, "10 minutes"],
  [60, "1 hour"],
  [24 * 60, "1 day"],
  [7 * 24 * 60, "7 days"],
  [30 * 24 * 60, "30 days"],
];

/** What each anti-bombing choice does, in the host's words. */
export function bombingLabel(r: RoomRules): string {
  switch (r.bombing) {
    case "serverDefault":
      return "server default";
    case "reportOnly":
      return "alert only";
    case "kickAndBan":
      return `kick & ban ${BAN_PRESETS.find(([m]) => m === r.banMinutes)?.[1] ?? `${r.banMinutes} min`}`;
  }
}

interface Props {
  rules: RoomRules;
  onChange: (r: RoomRules) => void;
  idPrefix: string;
}

/** The safety (anti-bombing) and chat rules of a room: in the creation dialog and live. */
export function RoomRulesForm({ rules, onChange, idPrefix }: Props) {
  return (
    <>
      <fieldset className="rb-fieldset">
        <legend>Safety: audio from someone without a seat</legend>
        <label className="rb-field">
          <span>Action</span>
          <select
            id={`${idPrefix}-bombing`}
            value={rules.bombing}
            onChange={(e) => onChange({ ...rules, bombing: e.target.value as BombingRule })}
          >
            <option value="serverDefault">Server default</option>
            <option value="reportOnly">Block it and alert me</option>
            <option value="kickAndBan">Block it, kick and ban the sender</option>
          </select>
        </label>
        {rules.bombing === "kickAndBan" && (
          <label className="rb-field">
            <span>Ban for</span>
            <select
              id={`${idPrefix}-ban`}
              value={rules.banMinutes}
              onChange={(e) => onChange({ ...rules, banMinutes: Number(e.target.value) })}
            >
              {BAN_PRESETS.map(([m, label]) => (
                <option key={m} value={m}>
                  {label}
                </option>
              ))}
            </select>
          </label>
        )}
        <p className="muted small rb-hint">The audio is never forwarded; this decides what else happens to the sender.</p>
      </fieldset>
      <fieldset className="rb-fieldset">
        <legend>Chat</legend>
        <label className="rb-field">
          <span>Who may chat</span>
          <select id={`${idPrefix}-chat-who`} value={rules.chatWho} onChange={(e) => onChange({ ...rules, chatWho: e.target.value as ChatWho })}>
            <option value="everyone">Everyone</option>
            <option value="seated">Guests on a seat and hosts</option>
            <option value="hosts">Hosts only (audience reads)</option>
          </select>
        </label>
        <label className="rb-field">
          <span>Slow mode</span>
          <select
            id={`${idPrefix}-slow`}
            value={rules.slowModeSecs}
            onChange={(e) => onChange({ ...rules, slowModeSecs: Number(e.target.value) })}
          >
            {[0, 3, 5, 10, 30, 60, 300].map((s) => (
              <option key={s} value={s}>
                {s === 0 ? "Off" : s < 60 ? `one message every ${s} s` : `one message every ${s / 60} min`}
              </option>
            ))}
          </select>
        </label>
      </fieldset>
    </>
  );
}
