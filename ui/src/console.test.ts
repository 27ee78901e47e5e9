import { describe, expect, it } from "vitest";
import {
  FEED_KEEP,
  mergeFeed,
  unseenLines,
  clipHold,
  filterMembers,
  formatGain,
  formatMs,
  initials,
  seatBadges,
  seatLabel,
  untilLabel,
  visibleRange,
} from "./console";

describe("virtualised audience", () => {
  it("draws only the rows in view plus the overscan, for rooms of thousands", () => {
    const r = visibleRange(5000, 40, 40 * 1000, 400, 5);
    expect(r.start).toBe(995);
    expect(r.end).toBe(1000 + 11 + 5);
    expect(r.end - r.start).toBeLessThan(30);
  });
  it("clamps at both ends and on empty lists", () => {
    expect(visibleRange(3, 40, 0, 400)).toEqual({ start: 0, end: 3 });
    expect(visibleRange(0, 40, 0, 400)).toEqual({ start: 0, end: 0 });
    expect(visibleRange(100, 40, 1e9, 400)).toEqual({ start: 100, end: 100 });
    expect(visibleRange(100, 40, -50, 400).start).toBe(0);
  });
  it("searches uids case-insensitively, blank keeps all", () => {
    const m = [{ uid: "listener-ab12" }, { uid: "Host" }, { uid: "guest-7" }];
    expect(filterMembers(m, "HOST").map((x) => x.uid)).toEqual(["Host"]);
    expect(filterMembers(m, " ").length).toBe(3);
    expect(filterMembers(m, "zz")).toEqual([]);
  });
});

describe("readouts", () => {
  it("formats latency and gain", () => {
    expect(formatMs(0)).toBe("0 ms");
    expect(formatMs(NaN)).toBe("0 ms");
    expect(formatMs(4.27)).toBe("4.3 ms");
    expect(formatMs(86.6)).toBe("87 ms");
    expect(formatGain(0)).toBe("0.0 dB");
    expect(formatGain(-6)).toBe("−6.0 dB");
    expect(formatGain(3.25)).toBe("+3.3 dB");
  });
  it("holds a clip light after the last clip", () => {
    let lit = clipHold(true, 1000, 0, 1500);
    expect(lit).toBe(2500);
    lit = clipHold(false, 2000, lit, 1500);
    expect(lit > 2000).toBe(true);
    expect(clipHold(false, 3000, lit, 1500) > 3000).toBe(false);
  });
  it("labels time left on a chat mute", () => {
    expect(untilLabel(61_000, 1_000)).toBe("60 s");
    expect(untilLabel(1_000 + 10 * 60_000, 1_000)).toBe("10 min");
    expect(untilLabel(1_000 + 3 * 3600_000, 1_000)).toBe("3 h");
    expect(untilLabel(0, 1_000)).toBe("0 s");
  });
});

describe("seats", () => {
  const seat = { uid: "a", hostMuted: false, selfMuted: false, locked: false, offline: false };
  it("badges say what matters, host mute over self mute", () => {
    expect(seatBadges(seat)).toEqual([]);
    expect(seatBadges({ ...seat, hostMuted: true, selfMuted: true })).toEqual(["muted"]);
    expect(seatBadges({ ...seat, selfMuted: true, offline: true })).toEqual(["offline", "self-muted"]);
    expect(seatBadges({ ...seat, uid: null, locked: true, hostMuted: true })).toEqual(["locked"]);
  });
  it("labels and initials", () => {
    expect(seatLabel(0, "owner")).toBe("Host");
    expect(seatLabel(9, "boss")).toBe("Boss");
    expect(seatLabel(3, "regular")).toBe("Seat 3");
    expect(initials("listener-ab12")).toBe("LA");
    expect(initials("host")).toBe("H");
    expect(initials("--")).toBe("?");
  });
});

describe("chat feed history", () => {
  const lines = (from: number, to: number) => Array.from({ length: to - from + 1 }, (_, i) => ({ version: from + i, text: `line ${from + i}` }));

  it("keeps the lines a status's window has dropped and appends the newer ones", () => {
    const a = mergeFeed([], lines(1, 50));
    const b = mergeFeed(a, lines(31, 80));
    expect(b.map((l) => l.version)).toEqual(lines(1, 80).map((l) => l.version));
  });

  it("returns the same array when a status brings nothing newer", () => {
    const a = mergeFeed([], lines(1, 50));
    expect(mergeFeed(a, lines(1, 50))).toBe(a);
    expect(mergeFeed(a, lines(20, 50))).toBe(a);
  });

  it("keeps the newest FEED_KEEP lines, across a gap", () => {
    let kept = mergeFeed([], lines(1, 50));
    for (let v = 100; v <= 1000; v += 50) kept = mergeFeed(kept, lines(v, v + 49));
    expect(kept.length).toBe(FEED_KEEP);
    expect(kept[kept.length - 1].version).toBe(1049);
    expect(kept.every((l, i) => i === 0 || l.version > kept[i - 1].version)).toBe(true);
  });

  it("starts over for another room: older versions or no lines", () => {
    const a = mergeFeed([], lines(500, 549));
    expect(mergeFeed(a, lines(1, 3)).map((l) => l.version)).toEqual([1, 2, 3]);
    expect(mergeFeed(a, [])).toEqual([]);
  });

  it("counts the lines a paused feed has not shown", () => {
    expect(unseenLines(lines(1, 50), lines(31, 80))).toBe(30);
    expect(unseenLines(lines(1, 50), lines(1, 50))).toBe(0);
    expect(unseenLines([], lines(1, 4))).toBe(4);
  });
});
