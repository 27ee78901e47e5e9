import { newestOnly } from "./newest";

/** A run that stays in flight until released, recording what ran. */
function gate() {
  const ran: string[] = [];
  const release: (() => void)[] = [];
  let inFlight = 0;
  let most = 0;
  const run = (v: string) =>
    new Promise<void>((done) => {
      ran.push(v);
      inFlight += 1;
      most = Math.max(most, inFlight);
      release.push(() => {
        inFlight -= 1;
        done();
      });
    });
  return { ran, release, run, most: () => most };
}

const tick = () => new Promise((r) => setTimeout(r, 0));

describe("newestOnly", () => {
  it("runs the first pick at once, then only the newest of those made meanwhile", async () => {
    const g = gate();
    const pick = newestOnly(g.run);
    const a = pick("a");
    void pick("b");
    void pick("c");
    await tick();
    expect(g.ran).toEqual(["a"]);
    g.release[0]();
    await tick();
    expect(g.ran).toEqual(["a", "c"]);
    void pick("d");
    g.release[1]();
    await tick();
    expect(g.ran).toEqual(["a", "c", "d"]);
    g.release[2]();
    await a;
    expect(g.most()).toBe(1);
  });

  it("runs each pick when they come one after the other", async () => {
    const g = gate();
    const pick = newestOnly(g.run);
    for (const v of ["x", "y", "z"]) {
      const p = pick(v);
      await tick();
      g.release[g.release.length - 1]();
      await p;
    }
    expect(g.ran).toEqual(["x", "y", "z"]);
  });

  it("says when the newest pick has run, for going live after a quick pick", async () => {
    const g = gate();
    const pick = newestOnly(g.run);
    let idle = false;
    await pick.idle(); // nothing in flight: at once
    void pick("a");
    void pick("b");
    void pick.idle().then(() => (idle = true));
    await tick();
    expect(idle).toBe(false);
    g.release[0]();
    await tick();
    expect(g.ran).toEqual(["a", "b"]);
    expect(idle).toBe(false);
    g.release[1]();
    await tick();
    expect(idle).toBe(true);
  });

  it("tells a run whether a newer value waits", async () => {
    const seen: [string, boolean][] = [];
    let release: () => void = () => {};
    const pick = newestOnly(async (v: string, newer) => {
      if (v === "a") await new Promise<void>((r) => (release = r));
      seen.push([v, newer()]);
    });
    const done = pick("a");
    void pick("b");
    await tick();
    release();
    await done;
    expect(seen).toEqual([
      ["a", true],
      ["b", false],
    ]);
  });
});
