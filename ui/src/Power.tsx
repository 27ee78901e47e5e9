/** An on/off switch (`role="switch"`): the card headers' power buttons and the labelled rows. */
export function Power({ id, on, onChange, label }: { id: string; on: boolean; onChange: (on: boolean) => void; label: string }) {
  return (
    <button type="button" id={id} className={`switch${on ? " on" : ""}`} role="switch" aria-checked={on} aria-label={label} title={label} onClick={() => onChange(!on)}>
      <span className="switch-knob" />
    </button>
  );
}
