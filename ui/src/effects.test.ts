import { describe, expect, it } from "vitest";
import { CURVE_FREQS, eqCurvePath, formatClock, formatHz, formatProgress, presetLabel } from "./effects";

describe("effects and music panel helpers", () => {
  it("names presets as a host reads them", () => {
    expect(presetLabel("vocal_concert")).toBe("Vocal concert");
    expect(presetLabel("3d_voice")).toBe("3D voice");
    expect(presetLabel("ktv")).toBe("KTV");
    expect(presetLabel("some_new_one")).toBe("Some new one");
  });
  it("formats band frequencies", () => {
    expect(formatHz(31.25)).toBe("31 Hz");
    expect(formatHz(1000)).toBe("1k");
    expect(formatHz(16000)).toBe("16k");
    expect(formatHz(5500)).toBe("5.5k");
  });
  it("draws the EQ curve inside the box, flat when empty", () => {
    expect(eqCurvePath([], 400, 90, 15)).toBe("M0 45 L400 45");
    const d = eqCurvePath([0, 15, -15, 99], 400, 90, 15);
    const ys = d.split(/[ML]/).filter(Boolean).map((p) => Number(p.trim().split(" ")[1]));
    expect(ys[0]).toBe(45);
    expect(ys[1]).toBeCloseTo(2);
    expect(ys[2]).toBeCloseTo(88);
    expect(ys[3]).toBeCloseTo(2);
    expect(CURVE_FREQS[0]).toBeCloseTo(20);
    expect(CURVE_FREQS[CURVE_FREQS.length - 1]).toBeCloseTo(20000);
  });
  it("formats clock and progress", () => {
    expect(formatClock(0)).toBe("0:00");
    expect(formatClock(65_432)).toBe("1:05");
    expect(formatClock(null)).toBe("–:––");
    expect(formatProgress(1048576, 4 * 1048576)).toBe("1.0 of 4.0 MB");
    expect(formatProgress(524288, 0)).toBe("0.5 MB");
  });
});
