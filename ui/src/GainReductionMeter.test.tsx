import { render, screen } from "@testing-library/react";
import { GainReductionMeter } from "./GainReductionMeter";
import { grFraction, holdDeepest, GR_FLOOR_DB, GR_HOLD_MS } from "./levels";

const meter = () => document.getElementById("fx-comp-gr") as HTMLElement;
/** The bar's width, % of the track. */
const fill = () => parseFloat((meter().querySelector(".gr-fill") as HTMLElement).style.width);
const readout = () => meter().querySelector(".gr-readout")?.textContent;

describe("GainReductionMeter", () => {
  it("shows a reduction growing from 0 dB, with its figure for tests and assistive tech", () => {
    render(<GainReductionMeter id="fx-comp-gr" label="Compressor" db={-7.504} now={0} />);
    expect(meter().dataset.grDb).toBe("-7.5");
    expect(meter().classList.contains("idle")).toBe(false);
    expect(fill()).toBeCloseTo(25);
    expect(readout()).toBe("−7.5 dB");
    const bar = screen.getByRole("meter", { name: "Compressor gain reduction" });
    expect(bar.getAttribute("aria-valuenow")).toBe("-7.504");
  });

  it("reads 0 with an empty bar when the stage does nothing", () => {
    render(<GainReductionMeter id="fx-comp-gr" label="Compressor" db={0} now={0} />);
    expect(meter().dataset.grDb).toBe("0");
    expect(fill()).toBeCloseTo(0);
    expect(readout()).toBe("0.0 dB");
    expect(screen.queryByTestId("gr-hold")).toBeNull();
  });

  it("is empty and dim, with no number, while no meters arrive", () => {
    render(<GainReductionMeter id="fx-comp-gr" label="Compressor" db={null} now={0} />);
    expect(meter().hasAttribute("data-gr-db")).toBe(false);
    expect(meter().classList.contains("idle")).toBe(true);
    expect(fill()).toBeCloseTo(0);
    expect(readout()).toBe("—");
    expect(screen.getByRole("meter").hasAttribute("aria-valuenow")).toBe(false);
  });

  it("fills the bar past its floor and shows a closed gate as −∞", () => {
    render(<GainReductionMeter id="fx-comp-gr" label="Noise gate" db={-200} now={0} />);
    expect(meter().dataset.grDb).toBe("-200");
    expect(fill()).toBeCloseTo(100);
    expect(readout()).toBe("−∞ dB");
    expect(screen.getByRole("meter").getAttribute("aria-valuenow")).toBe(String(GR_FLOOR_DB));
  });

  it("holds the deepest reduction for a second, then lets it go", () => {
    const { rerender } = render(<GainReductionMeter id="fx-comp-gr" label="Compressor" db={-12} now={1000} />);
    rerender(<GainReductionMeter id="fx-comp-gr" label="Compressor" db={-3} now={1500} />);
    expect(meter().dataset.grDb).toBe("-3");
    expect(screen.getByTestId("gr-hold")).toBeTruthy();
    rerender(<GainReductionMeter id="fx-comp-gr" label="Compressor" db={0} now={1000 + GR_HOLD_MS + 1} />);
    expect(screen.queryByTestId("gr-hold")).toBeNull();
  });
});

describe("gain-reduction scale", () => {
  it("maps 0 dB to empty and the floor (or deeper) to full; null and NaN are empty", () => {
    expect(grFraction(0)).toBe(0);
    expect(grFraction(2)).toBe(0);
    expect(grFraction(GR_FLOOR_DB / 2)).toBeCloseTo(0.5);
    expect(grFraction(GR_FLOOR_DB)).toBe(1);
    expect(grFraction(-200)).toBe(1);
    expect(grFraction(null)).toBe(0);
    expect(grFraction(Number.NaN)).toBe(0);
  });

  it("restarts the hold on a deeper reading and falls back after GR_HOLD_MS", () => {
    const a = holdDeepest(null, -10, 0);
    expect(holdDeepest(a, -4, 500)).toBe(a);
    expect(holdDeepest(a, -12, 500)).toEqual({ db: -12, at: 500 });
    expect(holdDeepest(a, -4, GR_HOLD_MS + 1)).toEqual({ db: -4, at: GR_HOLD_MS + 1 });
  });
});
