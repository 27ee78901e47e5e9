import { render } from "@testing-library/react";
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
});
