import { act, render } from "@testing-library/react";
import { LiveText } from "./LiveText";

describe("LiveText", () => {
  it("keeps the box's id, classes and data attributes and puts the text in the out-of-flow part", () => {
    const { container, rerender } = render(<LiveText id="fig" className="meter-readout" data-testid="t" text="−12.0 dB" />);
    const box = container.querySelector("#fig") as HTMLElement;
    expect(box.className).toBe("live-text meter-readout");
    expect(box.dataset.testid).toBe("t");
    const inner = box.querySelector(".live-text-inner") as HTMLElement;
    expect(inner.textContent).toBe("−12.0 dB");
    // A new figure changes the text node only: the box (what the layout sees) is the same element.
    rerender(<LiveText id="fig" className="meter-readout" data-testid="t" text="−3.5 dB" />);
    expect(container.querySelector("#fig")).toBe(box);
    expect(box.textContent).toBe("−3.5 dB");
  });
  it("aligns left when asked", () => {
    const { container } = render(<LiveText text="137 kbit/s" align="left" />);
    expect((container.firstChild as HTMLElement).className).toBe("live-text live-text-left");
  });
  it("with a hold, shows a new text at most that often and the latest one when the hold ends", () => {
    vi.useFakeTimers();
    try {
      vi.setSystemTime(1_000_000);
      const el = (t: string) => <LiveText className="meter-readout" holdMs={250} text={t} />;
      const { container, rerender } = render(el("−20.0 dB"));
      const shown = () => container.textContent;
      expect(shown()).toBe("−20.0 dB");
      // Meter frames every 66 ms: the figure holds for 250 ms, then takes the latest.
      for (const [t, text, want] of [
        [66, "−19.0 dB", "−20.0 dB"],
        [132, "−18.0 dB", "−20.0 dB"],
        [198, "−17.0 dB", "−20.0 dB"],
        [264, "−16.0 dB", "−16.0 dB"],
        [330, "−15.0 dB", "−16.0 dB"],
      ] as const) {
        vi.setSystemTime(1_000_000 + t);
        rerender(el(text));
        expect(shown(), `at ${t} ms`).toBe(want);
      }
      // No frame comes after the last one: the hold's end still shows it.
      act(() => {
        vi.advanceTimersByTime(300);
      });
      expect(shown()).toBe("−15.0 dB");
      // The same text again is no change: nothing held.
      vi.setSystemTime(1_000_000 + 700);
      rerender(el("−15.0 dB"));
      expect(shown()).toBe("−15.0 dB");
    } finally {
      vi.useRealTimers();
    }
  });
  it("without a hold, shows every change at once", () => {
    const { container, rerender } = render(<LiveText text="a" />);
    rerender(<LiveText text="b" />);
    expect(container.textContent).toBe("b");
  });
});
