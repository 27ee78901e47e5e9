import { barFill, barFraction, barMark, channelLabel, formatDb, zone, FLOOR_DB } from "./levels";

describe("meter scale", () => {
  it("maps the floor to empty and 0 dBFS to full", () => {
    expect(barFraction(FLOOR_DB)).toBe(0);
    expect(barFraction(-100)).toBe(0);
    expect(barFraction(0)).toBe(1);
    expect(barFraction(3)).toBe(1);
    expect(barFraction(-30)).toBeCloseTo(0.5);
  });
  it("treats null and NaN (silence from Rust) as empty", () => {
    expect(barFraction(null)).toBe(0);
    expect(barFraction(Number.NaN)).toBe(0);
    expect(formatDb(null)).toBe("−∞ dB");
    expect(formatDb(-100)).toBe("−∞ dB");
  });
  it("formats with a real minus sign and one decimal", () => {
    expect(formatDb(-15.049)).toBe("−15.0 dB");
    expect(formatDb(0)).toBe("0.0 dB");
    expect(formatDb(-0.04)).toBe("0.0 dB");
    expect(formatDb(-0.05)).toBe("−0.1 dB");
  });
  it("colours by zone", () => {
    expect(zone(-30)).toBe("ok");
    expect(zone(-12)).toBe("hot");
    expect(zone(-3)).toBe("clip");
  });
  it("names channels", () => {
    expect(channelLabel(0, 1)).toBe("Mono");
    expect(channelLabel(1, 2)).toBe("R");
    expect(channelLabel(3, 8)).toBe("Ch 4");
  });
});

describe("bar styles", () => {
  it("scales a bar to its fraction, clamped, and a marker to its place", () => {
    expect(barFill(0.5)).toEqual({ transform: "scaleX(0.500)" });
    expect(barFill(1.7)).toEqual({ transform: "scaleX(1.000)" });
    expect(barFill(-1)).toEqual({ transform: "scaleX(0.000)" });
    expect(barFill(Number.NaN)).toEqual({ transform: "scaleX(0.000)" });
    expect(barMark(0.25)).toEqual({ transform: "translateX(-75.0%)" });
    expect(barMark(1)).toEqual({ transform: "translateX(0.0%)" });
  });
});
