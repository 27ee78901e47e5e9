import { act, render } from "@testing-library/react";
import type { AudioSettings_Serialize as AudioSettings, LiveMeters } from "./bindings";
import { AudioPanel } from "./AudioPanel";
import { clearInputMeters, clearLiveMeters, inputMeters, liveMeters, pushInputFrame, pushLiveMeters, Store, useStore, HOLD_FALL_DB, LATENCY_HOLD_MS } from "./meterStore";
import { InputMeters } from "./MeterBar";

function frame(inputDb: number, clipped = false, jitterMs: number | null = 40): LiveMeters {
  return {
    input: { rmsDbfs: inputDb, peakDbfs: inputDb + 3, clipped },
    published: { rmsDbfs: inputDb - 2, peakDbfs: inputDb + 1, clipped: false },
    latency: { inputMs: 10, chainMs: 0.5, encoderMs: 20, jitterMs, outputMs: 10, earMs: 10.5, totalMs: 80.5, realtime: true },
    gainReduction: { gateDb: 0, compressorDb: -3, deesserDb: 0 },
  } as unknown as LiveMeters;
}

/** Voice mode, every process on, the ear monitor after noise suppression. */
const VOICE_AUDIO: AudioSettings = {
  mode: "voice",
  aec: true,
  ns: true,
  aiNs: true,
  aiNsStrength: 100,
  agc: true,
  inputGainDb: 0,
  inputChannels: null,
  outputDevice: null,
  voiceMuted: false,
  sendMuted: false,
  ear: { enabled: true, volume: 100, source: "withNs" },
  speakerVolumes: {},
};

describe("meter store", () => {
  afterEach(() => {
    clearLiveMeters();
    clearInputMeters();
  });

  it("re-renders a selecting component only when the selected part changes", () => {
    const store = new Store({ a: 1, b: 1 });
    let renders = 0;
    function A() {
      renders += 1;
      return <span>{useStore(store, (s) => s.a)}</span>;
    }
    const { container } = render(<A />);
    expect(renders).toBe(1);
    for (let b = 2; b < 32; b++) act(() => store.set({ a: 1, b }));
    expect(renders).toBe(1);
    act(() => store.set({ a: 2, b: 0 }));
    expect(renders).toBe(2);
    expect(container.textContent).toBe("2");
  });

  it("keeps a clip light lit for 1.5 s after the clipped frame, then puts it out", () => {
    pushLiveMeters(frame(-20, true), 1_000);
    expect(liveMeters.get().clipLit.input).toBe(true);
    pushLiveMeters(frame(-20), 2_400);
    expect(liveMeters.get().clipLit.input).toBe(true);
    pushLiveMeters(frame(-20), 2_600);
    expect(liveMeters.get().clipLit).toEqual({ input: false, published: false });
  });

  it("takes the latency readout's figures at most every LATENCY_HOLD_MS, the first at once", () => {
    const at = (jitterMs: number, now: number) => {
      pushLiveMeters(frame(-20, false, jitterMs), now);
      return liveMeters.get().latency?.jitterMs;
    };
    expect(at(40, 10_000)).toBe("40 ms");
    // ~30 frames a second with a jitter figure that moves on each: the readout holds.
    for (let i = 1; i * 33 < LATENCY_HOLD_MS; i++) expect(at(40 + i, 10_000 + i * 33)).toBe("40 ms");
    expect(at(47, 10_000 + LATENCY_HOLD_MS)).toBe("47 ms");
    // The meters themselves are not held.
    pushLiveMeters(frame(-7, false, 47), 10_000 + LATENCY_HOLD_MS + 10);
    expect(liveMeters.get().meters?.input.rmsDbfs).toBe(-7);
    // Off air and back: the first frame shows at once again.
    clearLiveMeters();
    expect(at(90, 10_000 + LATENCY_HOLD_MS + 20)).toBe("90 ms");
  });

  it("lets the input meter's peak hold fall by HOLD_FALL_DB a frame", () => {
    const ch = (peak: number) => ({ rmsDbfs: peak - 3, peakDbfs: peak });
    pushInputFrame({ channels: [ch(-6), ch(-10)], clipped: false, error: null } as never);
    pushInputFrame({ channels: [ch(-30), ch(-5)], clipped: false, error: null } as never);
    const [l, r] = inputMeters.get().hold;
    expect(l).toBeCloseTo(-6 - HOLD_FALL_DB, 5);
    expect(r).toBe(-5);
  });

  it("draws meter frames in the strips without re-rendering the audio panel around them", () => {
    let outer = 0;
    function Probe() {
      outer += 1;
      return <AudioPanel audio={VOICE_AUDIO} devices={null} inputId={null} live onChange={() => {}} inputMeter={<InputMeters />} />;
    }
    const { container } = render(<Probe />);
    expect(outer).toBe(1);
    for (let i = 0; i < 30; i++) act(() => pushLiveMeters(frame(-40 + i)));
    expect(outer).toBe(1);
    const strip = container.querySelector("#meter-input") as HTMLElement;
    expect(Number(strip.dataset.rmsDbfs)).toBe(-11);
    expect(container.querySelector("#latency-total")?.textContent).toBe("81 ms");
    expect(container.querySelector("#ear-latency")?.textContent).toBe("Adds 11 ms to your own voice in the headphones");
    const thread = container.querySelector("#latency-thread") as HTMLElement;
    expect(thread.querySelector("dd")?.textContent).toBe("Real-time");
    expect(thread.dataset.realtime).toBe("true");
  });

  it("says when the OS refused the audio thread real-time priority, and what allows it", () => {
    const refused = frame(-20);
    refused.latency = { ...refused.latency, realtime: false };
    const { container } = render(<AudioPanel audio={VOICE_AUDIO} devices={null} inputId={null} live onChange={() => {}} inputMeter={<InputMeters />} />);
    act(() => pushLiveMeters(refused));
    const thread = container.querySelector("#latency-thread") as HTMLElement;
    expect(thread.querySelector("dd")?.textContent).toBe("Normal");
    expect(thread.dataset.realtime).toBe("false");
    expect(thread.title).toMatch(/rtprio/);
  });
});
