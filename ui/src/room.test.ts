import { describe, expect, it } from "vitest";
import { connectionLabel } from "./room";

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
