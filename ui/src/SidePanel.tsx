import { useEffect, useLayoutEffect, useMemo, useRef, useState } from "react";
import type { FeedItem, GifterView, HostAction, MemberView } from "./bindings";
import { BAN_PRESETS, CHAT_MUTE_PRESETS, filterMembers, hue, initials, mergeFeed, unseenLines, untilLabel, visibleRange } from "./console";

interface Props {
  me: string;
  audience: MemberView[];
  banned: string[];
  feed: FeedItem[];
  notice: string | null;
  leaderboard: GifterView[];
  now: number;
  onAct: (action: HostAction) => void;
}

const ROW = 44;

/** One audience row's actions. */
function MemberActions({ m, onAct, done }: { m: MemberView; onAct: (a: HostAction) => void; done: () => void }) {
  const [ban, setBan] = useState(10);
  const [mute, setMute] = useState(10);
  return (
    <div className="member-actions" role="menu">
      {m.seat === null && (
        <button type="button" onClick={() => (onAct({ type: "invite", uid: m.uid, seat: null }), done())}>
          Invite to a seat
        </button>
      )}
      <div className="action-row">
        <select aria-label="Chat mute length" value={mute} onChange={(e) => setMute(Number(e.target.value))}>
          {CHAT_MUTE_PRESETS.map((p) => (
            <option key={p.minutes} value={p.minutes}>
              {p.label}
            </option>
          ))}
        </select>
        {m.chatMutedUntil != null ? (
          <button type="button" onClick={() => (onAct({ type: "unmuteChat", uid: m.uid }), done())}>
            Allow chat
          </button>
        ) : (
          <button type="button" data-action="mute-chat" onClick={() => (onAct({ type: "muteChat", uid: m.uid, minutes: mute }), done())}>
            Mute chat
          </button>
        )}
      </div>
      <div className="action-row">
        <select aria-label="Ban length" data-field="ban" value={ban} onChange={(e) => setBan(Number(e.target.value))}>
          {BAN_PRESETS.map((p) => (
            <option key={p.minutes} value={p.minutes}>
              {p.label}
            </option>
          ))}
        </select>
        <button type="button" className="danger" data-action="kick" onClick={() => (onAct({ type: "kick", uid: m.uid, banMinutes: ban }), done())}>
          {ban === 0 ? "Kick" : "Kick + ban"}
        </button>
      </div>
      {m.role !== "owner" && (
        <button type="button" onClick={() => (onAct({ type: "setAdmin", uid: m.uid, admin: m.role !== "admin" }), done())}>
          {m.role === "admin" ? "Remove admin" : "Make admin"}
        </button>
      )}
    </div>
  );
}

/** The audience, virtualised: only the rows in view are in the DOM, so thousands stay fast. */
function Audience({ me, audience, banned, now, onAct }: Omit<Props, "feed" | "notice" | "leaderboard">) {
  const [query, setQuery] = useState("");
  const [scroll, setScroll] = useState(0);
  const [height, setHeight] = useState(400);
  const [open, setOpen] = useState<string | null>(null);
  const box = useRef<HTMLDivElement>(null);
  const rows = useMemo(() => filterMembers(audience, query), [audience, query]);
  useEffect(() => {
    const el = box.current;
    if (!el) return;
    const measure = () => el.clientHeight > 0 && setHeight(el.clientHeight);
    measure();
    if (typeof ResizeObserver === "undefined") return;
    const ro = new ResizeObserver(measure);
    ro.observe(el);
    return () => ro.disconnect();
  }, []);
  const { start, end } = visibleRange(rows.length, ROW, scroll, height);
  return (
    <div className="audience">
      <input
        id="audience-search"
        type="search"
        placeholder={`Search ${audience.length} members`}
        value={query}
        onChange={(e) => setQuery(e.target.value)}
      />
      <div className="audience-scroll" ref={box} id="audience" onScroll={(e) => setScroll(e.currentTarget.scrollTop)}>
        <div style={{ height: rows.length * ROW, position: "relative" }}>
          {rows.slice(start, end).map((m, i) => (
            <div
              key={m.uid}
              className={`member-row${open === m.uid ? " open" : ""}`}
              data-uid={m.uid}
              style={{ top: (start + i) * ROW }}
            >
              <span className="avatar sm" style={{ "--h": hue(m.uid) } as React.CSSProperties}>
                {initials(m.uid)}
              </span>
              <span className="who" title={m.uid}>
                {m.uid}
                {m.uid === me && <span className="muted"> (you)</span>}
              </span>
              <span className={`role role-${m.role}`}>{m.seat !== null && m.role !== "owner" ? `seat ${m.seat}` : m.role}</span>
              {m.chatMutedUntil != null && <span className="seat-badge b-muted" title="Chat muted">chat off · {untilLabel(m.chatMutedUntil, now)}</span>}
              {m.uid !== me && m.role !== "owner" && (
                <button type="button" className="row-menu" aria-label={`Actions for ${m.uid}`} onClick={() => setOpen(open === m.uid ? null : m.uid)}>
                  ⋯
                </button>
              )}
            </div>
          ))}
        </div>
        {rows.length === 0 && <p className="muted small empty-note">{query ? "No member matches." : "Nobody here yet."}</p>}
      </div>
      {open !== null && audience.find((m) => m.uid === open) && (
        <div className="member-sheet" id="member-actions" data-uid={open}>
          <header>
            <strong>{open}</strong>
            <button type="button" className="ghost" onClick={() => setOpen(null)} aria-label="Close">
              ✕
            </button>
          </header>
          <MemberActions m={audience.find((m) => m.uid === open)!} onAct={onAct} done={() => setOpen(null)} />
        </div>
      )}
      {banned.length > 0 && (
        <details className="banned" id="banned">
          <summary>Banned ({banned.length})</summary>
          <ul>
            {banned.map((u) => (
              <li key={u} data-uid={u}>
                <span className="who">{u}</span>
                <button type="button" className="ghost" onClick={() => onAct({ type: "unban", uid: u })}>
                  Unban
                </button>
              </li>
            ))}
          </ul>
        </details>
      )}
    </div>
  );
}

/** How far a key scrolls a paused chat (px; Page keys: most of its height). */
const KEY_STEP = 40;

/**
 * The chat and gift lines. Live, the newest line sits at the bottom and older ones are cut off at
 * the top: the list is not a scroll container, so a new line repaints what is visible and nothing
 * else (a scroll container re-renders all of its content each time it grows or shrinks, which
 * without a GPU cost the console most of its frames; docs/studio.md, "Sixth round"). Scrolling up
 * (wheel or keys) pauses it: the lines stay as they were, scrollable, and a button shows how many
 * are waiting and goes back to live, as scrolling to the bottom or sending a message does.
 */
function Feed({ feed, sent }: { feed: FeedItem[]; sent: number }) {
  const [paused, setPaused] = useState<FeedItem[] | null>(null);
  // The host's own message brings the feed back to live, where it will appear.
  useEffect(() => setPaused(null), [sent]);
  const list = useRef<HTMLOListElement>(null);
  /** Where to scroll once paused, from the bottom (px, ≤ 0), or -Infinity for the top. */
  const offset = useRef(0);
  useLayoutEffect(() => {
    const el = list.current;
    if (el && paused) {
      const bottom = el.scrollHeight - el.clientHeight;
      el.scrollTop = Math.max(0, bottom + offset.current);
    }
    // Only when it pauses: afterwards the scroll position is the user's.
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [paused !== null]);
  const pause = (by: number): boolean => {
    const el = list.current;
    if (paused || !el || el.scrollHeight <= el.clientHeight) return false;
    offset.current = by;
    setPaused(feed);
    return true;
  };
  const shown = paused ?? feed;
  const waiting = paused ? unseenLines(paused, feed) : 0;
  return (
    <div className="feed-wrap">
      <ol
        className={`feed ${paused ? "paused" : "live"}`}
        id="chat-feed"
        ref={list}
        tabIndex={0}
        aria-label={paused ? "Chat, paused" : "Chat"}
        onWheel={(e) => {
          if (e.deltaY < 0) pause(e.deltaY * (e.deltaMode === 1 ? KEY_STEP : 1));
        }}
        onKeyDown={(e) => {
          const el = list.current;
          if (!el) return;
          const page = el.clientHeight * 0.9;
          const step = { ArrowUp: KEY_STEP, PageUp: page, Home: Infinity }[e.key];
          if (step !== undefined && !paused) {
            if (pause(-step)) e.preventDefault();
          } else if (e.key === "End" && paused) {
            e.preventDefault();
            setPaused(null);
          }
        }}
        onScroll={(e) => {
          const el = e.currentTarget;
          if (paused && el.scrollHeight - el.scrollTop - el.clientHeight < 1) setPaused(null);
        }}
      >
        {shown.length === 0 && <li className="muted small empty-note">Chat and gifts appear here.</li>}
        {shown.map((f) => (
          <li key={f.version} className={`feed-${f.kind}`} data-kind={f.kind}>
            {f.from && (
              <span className="from" style={{ color: `hsl(${hue(f.from)} 60% var(--name-l))` }}>
                {f.from}
              </span>
            )}
            {f.kind === "gift" && <span aria-hidden="true">🎁 </span>}
            {f.kind === "notice" && <span className="notice-tag">Notice</span>}
            <span className="text">{f.text}</span>
          </li>
        ))}
      </ol>
      {paused && (
        <button type="button" className="feed-resume" id="chat-resume" onClick={() => setPaused(null)}>
          {waiting > 0 ? `Paused · ${waiting} new ${waiting === 1 ? "line" : "lines"} ↓` : "Paused · back to live ↓"}
        </button>
      )}
    </div>
  );
}

/** Chat, gifts and the notice. User text is rendered as React text nodes: never as HTML. */
function Chat({ feed, notice, leaderboard, onAct }: Pick<Props, "feed" | "notice" | "leaderboard" | "onAct">) {
  const [text, setText] = useState("");
  const [editing, setEditing] = useState(false);
  const [draftNotice, setDraftNotice] = useState(notice ?? "");
  const [sent, setSent] = useState(0);
  return (
    <div className="chat">
      <div className="notice" id="notice">
        {editing ? (
          <form
            onSubmit={(e) => {
              e.preventDefault();
              onAct({ type: "notice", text: draftNotice });
              setEditing(false);
            }}
          >
            <input id="notice-input" value={draftNotice} maxLength={500} onChange={(e) => setDraftNotice(e.target.value)} autoFocus />
            <button type="submit">Post</button>
          </form>
        ) : (
          <>
            <span className="notice-tag">Notice</span>
            <span className="notice-text">{notice ?? "No notice yet."}</span>
            <button
              type="button"
              className="ghost"
              id="edit-notice"
              onClick={() => {
                setDraftNotice(notice ?? "");
                setEditing(true);
              }}
            >
              Edit
            </button>
          </>
        )}
      </div>
      {leaderboard.length > 0 && (
        <ol className="leaderboard" id="leaderboard">
          {leaderboard.slice(0, 3).map((g, i) => (
            <li key={g.uid} data-uid={g.uid}>
              <span className={`rank r${i + 1}`}>{i + 1}</span>
              <span className="who">{g.uid}</span>
              <span className="gift-total">{g.total}</span>
            </li>
          ))}
        </ol>
      )}
      <Feed feed={feed} sent={sent} />
      <form
        className="chat-send"
        onSubmit={(e) => {
          e.preventDefault();
          if (text.trim() === "") return;
          onAct({ type: "chat", text });
          setText("");
          setSent((n) => n + 1);
        }}
      >
        <input id="chat-input" placeholder="Say something to the room" value={text} maxLength={500} onChange={(e) => setText(e.target.value)} />
        <button type="submit" id="chat-send">
          Send
        </button>
      </form>
    </div>
  );
}

/** The right-hand panel: chat and gifts, or the audience. */
export function SidePanel(props: Props) {
  const [tab, setTab] = useState<"chat" | "audience">("chat");
  // The lines kept to scroll back through, beyond the room's own history; kept across tabs.
  const kept = useRef<FeedItem[]>([]);
  const feed = useMemo(() => (kept.current = mergeFeed(kept.current, props.feed)), [props.feed]);
  return (
    <section className="card side" aria-label="Room">
      <div className="tabs" role="tablist">
        <button type="button" role="tab" id="tab-chat" aria-selected={tab === "chat"} className={tab === "chat" ? "active" : ""} onClick={() => setTab("chat")}>
          Chat
        </button>
        <button type="button" role="tab" id="tab-audience" aria-selected={tab === "audience"} className={tab === "audience" ? "active" : ""} onClick={() => setTab("audience")}>
          Audience <span className="badge">{props.audience.length}</span>
        </button>
      </div>
      {tab === "chat" ? <Chat {...props} feed={feed} /> : <Audience {...props} />}
    </section>
  );
}
