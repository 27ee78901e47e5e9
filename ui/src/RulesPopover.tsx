import { useEffect, useState } from "react";
import type { RoomRules } from "./bindings";
import { RoomRulesForm, bombingLabel } from "./RoomRulesForm";

interface Props {
  rules: RoomRules;
  onApply: (r: RoomRules) => void;
}

/** The live room's safety and chat rules: applied to the running room at once. */
export function RulesPopover({ rules, onApply }: Props) {
  const [open, setOpen] = useState(false);
  const [draft, setDraft] = useState(rules);
  // The status (and with it a fresh `rules` object) arrives several times a second on air: take
  // the room's rules over only when they really change, never wiping an edit in progress.
  const key = JSON.stringify(rules);
  // eslint-disable-next-line react-hooks/exhaustive-deps
  useEffect(() => setDraft(rules), [key]);
  return (
    <span className="rb-rules">
      <button type="button" id="rules-toggle" className="ghost" aria-expanded={open} onClick={() => {
          if (!open) setDraft(rules);
          setOpen(!open);
        }} title="Safety and chat rules of this room">
        Safety: {bombingLabel(rules)}
      </button>
      {open && (
        <form
          className="rb-popover"
          id="rules-panel"
          aria-label="Room rules"
          onSubmit={(e) => {
            e.preventDefault();
            onApply(draft);
            setOpen(false);
          }}
        >
          <RoomRulesForm idPrefix="live-rules" rules={draft} onChange={setDraft} />
          <div className="rb-actions">
            <button type="button" className="ghost" onClick={() => setOpen(false)}>
              Cancel
            </button>
            <button type="submit" id="rules-apply">
              Apply to the room
            </button>
          </div>
        </form>
      )}
    </span>
  );
}
