import { render, screen } from "@testing-library/react";
import { MeterBar } from "./MeterBar";

describe("MeterBar", () => {
  it("exposes its level to assistive tech and tests, and shows the readout", () => {
    render(<MeterBar label="L" rmsDbfs={-23.04} peakDbfs={-20} holdDbfs={-18} />);
    const meter = screen.getByTestId("meter-channel");
    expect(meter.dataset.rmsDbfs).toBe("-23.04");
    expect(screen.getByRole("meter").getAttribute("aria-valuenow")).toBe("-23.04");
    expect(screen.getByTestId("meter-readout").textContent).toBe("−23.0 dB");
  });
  it("shows silence when Rust sends null (NaN)", () => {
    render(<MeterBar label="R" rmsDbfs={null} peakDbfs={null} holdDbfs={null} />);
    expect(screen.getByTestId("meter-channel").dataset.rmsDbfs).toBe("-100");
    expect(screen.getByTestId("meter-readout").textContent).toBe("−∞ dB");
  });
});
