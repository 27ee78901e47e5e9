// Pure helpers of the host's console: what the panels compute from the Studio's data.

/** Ban presets offered when kicking someone, in minutes (0: kick without a ban). */
export const BAN_PRESETS: { label: string; minutes: number }[] = [
  { label: "Kick only", minutes: 0 },
  { label: "10 min", minutes: 10 },
  { label: "1 hour", minutes: 60 },
  { label: "1 day", minutes: 24 * 60 },
  { label: "7 days", minutes: 7 * 24 * 60 },
];

/** Chat-mute (禁言) presets, in minutes. */
export const CHAT_MUTE_PRESETS: { label: string; minutes: number }[] = [
  { label: "1 min", minutes: 1 },
  { label: "10 min", minutes: 10 },
  { label: "1 hour", minutes: 60 },
  { label: "1 day", minutes: 24 * 60 },
];

/** A latency in ms as the readout shows it: whole ms from 10 up, one decimal below. */
export function formatMs(ms: number | null | undefined): string {
  if (ms == null) return "0 ms";
  if (!Number.isFinite(ms) || ms <= 0) return "0 ms";
  return ms >= 10 ? `${Math.round(ms)} ms` : `${ms.toFixed(1)} ms`;
}

/** Gain in dB with a sign, as a fader label shows it. */
export function formatGain(db: number): string {
  if (Math.abs(db) < 0.05) return "0.0 dB";
  return `${db > 0 ? "+" : "−"}${Math.abs(db).toFixed(1)} dB`;
}

/** The members whose uid contains `query` (case-insensitive; blank keeps everyone). */
export function filterMembers<T extends { uid: string }>(members: T[], query: string): T[] {
  const q = query.trim().toLowerCase();
  if (q === "") return members;
  return members.filter((m) => m.uid.toLowerCase().includes(q));
}

/**
 * The rows a virtualised list draws: those visible in a viewport of `height` px scrolled to
 * `scrollTop`, plus `overscan` rows either side, out of `count` rows of `rowHeight` px.
 */
export function visibleRange(
  count: number,
  rowHeight: number,
  scrollTop: number,
  height: number,
  overscan = 6,
): { start: number; end: number } {
  if (count <= 0 || rowHeight <= 0) return { start: 0, end: 0 };
  const first = Math.floor(Math.max(0, scrollTop) / rowHeight);
  const shown = Math.ceil(Math.max(0, height) / rowHeight) + 1;
  const start = Math.max(0, first - overscan);
  const end = Math.min(count, first + shown + overscan);
  return { start: Math.min(start, end), end };
}

/**
 * A clip light that stays lit for `holdMs` after the last clip, as on a mixing desk; returns the
 * time until which it is lit.
 */
export function clipHold(clipped: boolean, now: number, litUntil: number, holdMs = 1500): number {
  return clipped ? now + holdMs : litUntil;
}

/** What the seat's badge says, most important first. */
export function seatBadges(seat: {
  uid?: string | null;
  hostMuted: boolean;
  selfMuted: boolean;
  locked: boolean;
  offline: boolean;
}): string[] {
  const badges: string[] = [];
  if (seat.locked) badges.push("locked");
  if (seat.uid != null) {
    if (seat.offline) badges.push("offline");
    if (seat.hostMuted) badges.push("muted");
    else if (seat.selfMuted) badges.push("self-muted");
  }
  return badges;
}

/** The label of a seat in the grid. */
export function seatLabel(index: number, kind: string): string {
  if (kind === "owner") return "Host";
  if (kind === "boss") return "Boss";
  return `Seat ${index}`;
}

/** Initials for an avatar: the first letter of up to two words of a uid. */
export function initials(uid: string): string {
  const words = uid.split(/[-_.\s]+/).filter((w) => w.length > 0);
  const letters = words.slice(0, 2).map((w) => w[0]);
  return (letters.join("") || "?").toUpperCase();
}

/** A stable hue for a uid's avatar. */
export function hue(uid: string): number {
  let h = 0;
  for (let i = 0; i < uid.length; i++) h = (h * 31 + uid.charCodeAt(i)) >>> 0;
  return h % 360;
}

/** "in 4 min" / "in 2 h" for a chat mute that ends at `until` (ms since the epoch). */
export function untilLabel(until: number, now: number): string {
  const s = Math.max(0, Math.round((until - now) / 1000));
  if (s < 90) return `${s} s`;
  const m = Math.round(s / 60);
  if (m < 90) return `${m} min`;
  return `${Math.round(m / 60)} h`;
}

/** How many chat and gift lines the console keeps to scroll back through (the room sends its
 *  last `history_len` events with each status; the console keeps more). */
export const FEED_KEEP = 200;

/** The kind of line `mergeFeed` works on (the generated `FeedItem` satisfies it). */
type Versioned = { version: number };

/**
 * The feed the console shows: the lines it had and the status's newer ones, the newest `keep`.
 * A status whose newest line is older than the newest kept one, or with no line at all, is
 * another room's: it replaces the lines. Nothing newer: the same array (nothing re-renders).
 */
export function mergeFeed<T extends Versioned>(prev: T[], next: T[], keep = FEED_KEEP): T[] {
  const newest = prev.length > 0 ? prev[prev.length - 1].version : null;
  if (newest === null || next.length === 0 || next[next.length - 1].version < newest) {
    return next.length > keep ? next.slice(next.length - keep) : next;
  }
  const newer = next.filter((f) => f.version > newest);
  if (newer.length === 0) return prev;
  const all = prev.concat(newer);
  return all.length > keep ? all.slice(all.length - keep) : all;
}

/** Lines of `feed` newer than the newest of `shown` (what a paused chat has not shown yet). */
export function unseenLines<T extends Versioned>(shown: T[], feed: T[]): number {
  const newest = shown.length > 0 ? shown[shown.length - 1].version : -Infinity;
  let n = 0;
  for (let i = feed.length - 1; i >= 0 && feed[i].version > newest; i--) n++;
  return n;
}
