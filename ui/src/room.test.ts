import { describe, expect, it } from "vitest";
import { connectionLabel, mergeStatus } from "./room";

describe("connectionLabel", () => {
  it("names every state the Studio sends", () => {
    expect(connectionLabel("connected")).toBe("Live");
    expect(connectionLabel("mediaReconnecting")).toBe("Reconnecting audio");
    expect(connectionLabel("rejoining")).toBe("Rejoining the room");
    expect(connectionLabel("closed")).toBe("Ended");
  });
  it("shows an unknown state as it is rather than hiding it", () => {
    expect(connectionLabel("weird")).toBe("weird");
  });
});

describe("mergeStatus", () => {
  type S = { audienceUnchanged: boolean; view: { audience: string[]; seats: number } };
  const full: S = { audienceUnchanged: false, view: { audience: ["a", "b"], seats: 1 } };
  it("takes a status that carries the list as it is", () => {
    const next: S = { audienceUnchanged: false, view: { audience: ["c"], seats: 2 } };
    expect(mergeStatus(full, next)).toBe(next);
  });
  it("keeps the shown list, the same array, when the list is left out", () => {
    const next: S = { audienceUnchanged: true, view: { audience: [], seats: 3 } };
    const merged = mergeStatus(full, next);
    expect(merged.view.audience).toBe(full.view.audience);
    expect(merged.view.seats).toBe(3);
    expect(merged.audienceUnchanged).toBe(false);
  });
  it("shows an empty list rather than failing when nothing was shown yet", () => {
    const next: S = { audienceUnchanged: true, view: { audience: [], seats: 0 } };
    expect(mergeStatus(null, next).view.audience).toEqual([]);
  });
});
