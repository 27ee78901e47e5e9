import { render } from "@testing-library/react";
import { StatsPanel, figure, sameStats } from "./StatsPanel";
import type { LiveStats_Serialize as LiveStats } from "./bindings";

const unknown: LiveStats = {
  listeners: null,
  bitrateKbps: null,
  lossPercent: null,
  lastReportLossPercent: null,
  rttMs: null,
  speakers: [],
  history: [],
  intervalS: 1,
};

describe("StatsPanel", () => {
  it("shows a dash for every figure not known yet, never a number", () => {
    const { container } = render(<StatsPanel stats={unknown} jitterMs={null} />);
    for (const id of ["listeners", "bitrate", "loss", "rtt", "jitter"]) {
      expect(container.querySelector(`#stat-${id}`)?.textContent).toBe("—");
    }
    expect(container.querySelector("#speaker-loss")).toBeNull();
    expect(container.querySelectorAll("#stats-graph path").length).toBe(0);
    expect(container.querySelector("#stats-span")?.textContent).toBe("last 60 s · every 1 s");
  });

  it("says nothing of the interval before the first reading", () => {
    const { container } = render(<StatsPanel stats={{ ...unknown, intervalS: 0 }} jitterMs={null} />);
    expect(container.querySelector("#stats-span")?.textContent).toBe("last 60 s");
  });

  it("shows the figures, the speakers' loss and a graph line", () => {
    const stats: LiveStats = {
      ...unknown,
      listeners: 1234,
      bitrateKbps: 131.6,
      lossPercent: 9.84,
      lastReportLossPercent: 11.3,
      rttMs: 0.42,
      speakers: [{ uid: "guest-1", seat: 2, lossPercent: 12.5 }, { uid: "guest-2", seat: 3, lossPercent: null }],
      history: [-2, -1, 0].map((t) => ({ t, bitrateKbps: 130, lossPercent: 10, rttMs: 0.4, listeners: 1234 })),
    };
    const { container } = render(<StatsPanel stats={stats} jitterMs={40} />);
    expect(container.querySelector("#stat-listeners")?.textContent).toBe("1234");
    expect(container.querySelector("#stat-bitrate")?.textContent).toBe("132 kbit/s");
    expect(container.querySelector("#stat-loss")?.textContent).toBe("9.8 %");
    expect(container.querySelector("#stat-loss")?.parentElement?.className).toContain("bad");
    expect(container.querySelector("#stat-rtt")?.textContent).toBe("0.4 ms");
    expect(container.querySelector("#stat-jitter")?.textContent).toBe("40 ms");
    const rows = container.querySelectorAll("#speaker-loss tbody tr");
    expect(rows.length).toBe(2);
    expect(rows[0].querySelector("td.loss")?.textContent).toBe("12.5 %");
    expect(rows[1].querySelector("td.loss")?.textContent).toBe("—");
    expect(container.querySelectorAll("#stats-graph path").length).toBe(2);
  });

  it("tells a new reading from the same one carried by the next status", () => {
    const stats: LiveStats = {
      ...unknown,
      listeners: 12,
      bitrateKbps: 131.6,
      history: [-1, 0].map((t) => ({ t, bitrateKbps: 130, lossPercent: null, rttMs: 0.4, listeners: 12 })),
    };
    // Each status carries the stats as a new object: equal between readings.
    expect(sameStats(stats, JSON.parse(JSON.stringify(stats)) as LiveStats)).toBe(true);
    expect(sameStats(stats, { ...stats, listeners: 13 })).toBe(false);
    const moved = { ...stats, history: [-2, -1, 0].map((t) => ({ ...stats.history[0], t })) };
    expect(sameStats(stats, moved)).toBe(false);
    expect(sameStats(stats, { ...stats, speakers: [{ uid: "guest-1", seat: 2, lossPercent: 1 }] })).toBe(false);
  });

  it("formats figures", () => {
    expect(figure(null, 1, "%")).toBe("—");
    expect(figure(Number.NaN, 1, "%")).toBe("—");
    expect(figure(0, 1, "%")).toBe("0.0 %");
  });
});
