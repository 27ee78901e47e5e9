import { useEffect, useRef, useState } from "react";
import { commands, events, type AppError, type Registration, type ShortcutSettings, type ShortcutStatus } from "./bindings";
import { acceleratorOf, hasCommandModifier, isModifierKey, keyOfAccelerator } from "./shortcutKeys";

interface Props {
  shortcuts: ShortcutSettings;
  onSaved: (s: ShortcutSettings) => void;
  /** *Mute voice* changed by the mute shortcut. */
  onVoiceMuted: (muted: boolean) => void;
  onError: (e: AppError) => void;
  helpOpen: boolean;
  onHelp: (open: boolean) => void;
}

function RegistrationBadge({ id, r }: { id: string; r: Registration | undefined }) {
  if (!r || r.state === "off") return <span id={id} className="reg-badge off" data-state="off">off</span>;
  if (r.state === "global")
    return (
      <span id={id} className="reg-badge global" data-state="global" title="Works in any application">
        global
      </span>
    );
  return (
    <span id={id} className="reg-badge in-window" data-state="inWindow" title={r.reason}>
      window only
    </span>
  );
}

/** A key field: click, then press the combination. Esc cancels, Backspace clears. */
function KeyField({ id, value, onChange, recording, setRecording }: { id: string; value: string | null; onChange: (v: string | null) => void; recording: boolean; setRecording: (on: boolean) => void }) {
  return (
    <button
      type="button"
      id={id}
      className={`key-field${recording ? " recording" : ""}`}
      data-value={value ?? ""}
      aria-label="Press to record a shortcut"
      onClick={() => setRecording(!recording)}
      onKeyDown={(e) => {
        if (!recording) return;
        e.preventDefault();
        e.stopPropagation();
        if (e.key === "Escape") return setRecording(false);
        if (e.key === "Backspace" || e.key === "Delete") {
          setRecording(false);
          return onChange(null);
        }
        if (isModifierKey(e.code)) return;
        setRecording(false);
        onChange(acceleratorOf(e));
      }}
    >
      {recording ? "Press keys…" : value ? <kbd>{value}</kbd> : "none"}
    </button>
  );
}

/** Mute toggle and push-to-talk: configured here, global where the OS allows, listed in the help overlay (? or F1). */
export function ShortcutsPanel({ shortcuts, onSaved, onVoiceMuted, onError, helpOpen, onHelp }: Props) {
  const [status, setStatus] = useState<ShortcutStatus | null>(null);
  const [recording, setRecording] = useState<"mute" | "ptt" | null>(null);
  const held = useRef(false);
  const keys = useRef(shortcuts);
  keys.current = shortcuts;
  const rec = useRef(recording);
  rec.current = recording;

  useEffect(() => {
    void commands.shortcutStatus().then(setStatus);
    const unlisten = events.shortcutStatus.listen((e) => {
      setStatus(e.payload);
      onVoiceMuted(e.payload.voiceMuted);
    });
    return () => void unlisten.then((f) => f());
  }, [onVoiceMuted]);

  // The window's own listener: works while the Studio is focused, whatever the global grab did
  // (a key the grab took never reaches the window, so nothing fires twice).
  useEffect(() => {
    const fire = (action: "muteToggle" | "pushToTalk", pressed: boolean) =>
      void commands.shortcutKey(action, pressed).then((r) => r.status === "ok" && setStatus(r.data));
    const editable = (t: EventTarget | null) => t instanceof HTMLElement && (t.isContentEditable || ["INPUT", "TEXTAREA", "SELECT"].includes(t.tagName));
    const down = (e: KeyboardEvent) => {
      if (rec.current) return;
      const k = keys.current;
      const acc = acceleratorOf(e);
      const typing = editable(e.target);
      if ((e.key === "?" || e.key === "F1") && !typing) {
        e.preventDefault();
        onHelp(true);
        return;
      }
      if (e.key === "Escape") onHelp(false);
      if (k.muteToggle && acc === k.muteToggle && !(typing && !hasCommandModifier(acc))) {
        e.preventDefault();
        if (!e.repeat) fire("muteToggle", true);
      }
      if (k.pushToTalk && k.pushToTalkKey && acc === k.pushToTalkKey && !(typing && !hasCommandModifier(acc))) {
        e.preventDefault();
        if (!held.current) {
          held.current = true;
          fire("pushToTalk", true);
        }
      }
    };
    const up = (e: KeyboardEvent) => {
      const k = keys.current;
      if (held.current && k.pushToTalkKey && e.code === keyOfAccelerator(k.pushToTalkKey)) {
        held.current = false;
        fire("pushToTalk", false);
      }
    };
    const blur = () => {
      if (held.current) {
        held.current = false;
        fire("pushToTalk", false);
      }
    };
    window.addEventListener("keydown", down);
    window.addEventListener("keyup", up);
    window.addEventListener("blur", blur);
    return () => {
      window.removeEventListener("keydown", down);
      window.removeEventListener("keyup", up);
      window.removeEventListener("blur", blur);
    };
  }, [onHelp]);

  const save = async (next: ShortcutSettings) => {
    const result = await commands.setShortcuts(next);
    if (result.status === "ok") {
      onSaved(result.data.shortcuts);
      void commands.shortcutStatus().then(setStatus);
    } else onError(result.error);
  };

  const inWindow = [status?.muteToggle, status?.pushToTalk].find((r) => r?.state === "inWindow");
  const ptt = shortcuts.pushToTalk && shortcuts.pushToTalkKey;
  return (
    <>
      <section className="card shortcuts" aria-labelledby="shortcuts-title">
        <header className="card-head">
          <h2 id="shortcuts-title">Shortcuts</h2>
          <button type="button" className="icon-btn small" id="shortcuts-help" title="All shortcuts (? or F1)" aria-label="Show all shortcuts" onClick={() => onHelp(true)}>
            ?
          </button>
        </header>
        <div className="field-row">
          <span>Mute voice</span>
          <KeyField id="shortcut-mute" value={shortcuts.muteToggle ?? null} recording={recording === "mute"} setRecording={(on) => setRecording(on ? "mute" : null)} onChange={(v) => void save({ ...shortcuts, muteToggle: v })} />
          <RegistrationBadge id="shortcut-mute-state" r={status?.muteToggle} />
        </div>
        <div className="field-row">
          <label className="ptt-check">
            <input id="ptt-enabled" type="checkbox" checked={shortcuts.pushToTalk} onChange={(e) => void save({ ...shortcuts, pushToTalk: e.target.checked })} />
            Push-to-talk
          </label>
          <KeyField id="shortcut-ptt" value={shortcuts.pushToTalkKey ?? null} recording={recording === "ptt"} setRecording={(on) => setRecording(on ? "ptt" : null)} onChange={(v) => void save({ ...shortcuts, pushToTalkKey: v })} />
          <RegistrationBadge id="shortcut-ptt-state" r={status?.pushToTalk} />
        </div>
        {ptt && (
          <p className={`ptt-state small${status?.pttHeld ? " talking" : ""}`} id="ptt-state" data-held={status?.pttHeld ? "true" : "false"}>
            {status?.pttHeld ? "● Talking" : `Muted — hold ${shortcuts.pushToTalkKey} to talk`}
          </p>
        )}
        {inWindow && inWindow.state === "inWindow" && (
          <p className="muted small" id="shortcuts-fallback">
            Global shortcuts are unavailable here ({inWindow.reason}); they work while the Studio window is focused.
          </p>
        )}
      </section>
      {helpOpen && (
        <div className="help-overlay" id="help-overlay" role="dialog" aria-modal="true" aria-labelledby="help-title" onClick={() => onHelp(false)}>
          <div className="help-card" onClick={(e) => e.stopPropagation()}>
            <header className="card-head">
              <h2 id="help-title">Keyboard shortcuts</h2>
              <button type="button" className="icon-btn small" id="help-close" aria-label="Close" onClick={() => onHelp(false)}>
                ✕
              </button>
            </header>
            <table className="help-table">
              <tbody>
                <tr data-action="muteToggle">
                  <td>{shortcuts.muteToggle ? <kbd>{shortcuts.muteToggle}</kbd> : <span className="muted">not set</span>}</td>
                  <td>Mute / unmute your voice (music keeps playing)</td>
                  <td><RegistrationBadge id="help-mute-state" r={status?.muteToggle} /></td>
                </tr>
                <tr data-action="pushToTalk">
                  <td>{shortcuts.pushToTalkKey ? <kbd>{shortcuts.pushToTalkKey}</kbd> : <span className="muted">not set</span>}</td>
                  <td>Push-to-talk: hold to be heard{shortcuts.pushToTalk ? "" : " (turned off)"}</td>
                  <td><RegistrationBadge id="help-ptt-state" r={status?.pushToTalk} /></td>
                </tr>
                <tr>
                  <td><kbd>?</kbd> <kbd>F1</kbd></td>
                  <td>This list</td>
                  <td />
                </tr>
                <tr>
                  <td><kbd>Esc</kbd></td>
                  <td>Close it</td>
                  <td />
                </tr>
              </tbody>
            </table>
            <p className="muted small">
              <strong>global</strong>: works in any application. <strong>window only</strong>: the system refused a global key; it works while the Studio is focused.
              Change the keys under <em>Shortcuts</em> in the left column.
            </p>
          </div>
        </div>
      )}
    </>
  );
}
