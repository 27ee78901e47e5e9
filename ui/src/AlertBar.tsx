import type { AlertView } from "./bindings";

interface Props {
  alerts: AlertView[];
  onKickBan: (uid: string) => void;
  onDismiss: (version: number) => void;
}

/** Safety alerts: someone sent audio without a seat (mic bombing); one click kicks and bans. */
export function AlertBar({ alerts, onKickBan, onDismiss }: Props) {
  return (
    <div className="alerts" id="alerts">
      {alerts.slice(0, 3).map((a) => (
        <div className="alert" role="alert" key={a.version} data-uid={a.uid}>
          <span className="alert-icon" aria-hidden="true">!</span>
          <span className="alert-text">
            <strong>{a.uid}</strong> is sending audio without a seat.
            <span className="muted small"> {a.detail}</span>
          </span>
          <button type="button" className="danger" data-action="kick-ban" onClick={() => onKickBan(a.uid)}>
            Kick &amp; ban 1 day
          </button>
          <button type="button" className="ghost" onClick={() => onDismiss(a.version)}>
            Dismiss
          </button>
        </div>
      ))}
    </div>
  );
}
