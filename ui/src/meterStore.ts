import { useSyncExternalStore } from "react";
import type { LiveMeters, MeterFrame_Deserialize as MeterFrame } from "./bindings";
import { clipHold, formatMs } from "./console";

/**
 * A value that changes at the meters' rate (~30 frames a second per stream), read only by the
 * few components that draw it. Keeping meter frames out of the console's React state means a
 * frame re-renders two strips and a readout, not the seat grid, the chat feed and every panel:
 * in a busy room those renders were most of the web view's JavaScript time (the `studio_paint`
 * benchmark, docs/studio.md).
 */
export class Store<T> {
  private value: T;
  private readonly listeners = new Set<() => void>();

  constructor(value: T) {
    this.value = value;
  }

  get = (): T => this.value;

  set(value: T): void {
    this.value = value;
    for (const l of this.listeners) l();
  }

  subscribe = (listener: () => void): (() => void) => {
    this.listeners.add(listener);
    return () => {
      this.listeners.delete(listener);
    };
  };
}

/** The store's value, or the part `select` picks: the component re-renders only when that part
 *  changes (`Object.is`), so a selector returning a number skips frames that do not move it. */
export function useStore<T, S = T>(store: Store<T>, select?: (value: T) => S): S {
  const snapshot = () => (select ? select(store.get()) : (store.get() as unknown as S));
  return useSyncExternalStore(store.subscribe, snapshot, snapshot);
}

/** How fast the peak-hold marker falls, dB per frame (~30 frames a second). */
export const HOLD_FALL_DB = 0.4;

/** The input meter's stream (`start_meter`): the latest frame and each channel's peak hold. */
export interface InputMeterState {
  frame: MeterFrame | null;
  hold: number[];
}

const NO_INPUT_METER: InputMeterState = { frame: null, hold: [] };

export const inputMeters = new Store<InputMeterState>(NO_INPUT_METER);

/** No input meter frame (its stream failed to open, or closed while the engine captures). */
export function clearInputMeters(): void {
  inputMeters.set(NO_INPUT_METER);
}

/** A frame from the input meter's stream: the peak holds fall by HOLD_FALL_DB a frame. */
export function pushInputFrame(frame: MeterFrame): void {
  const prev = inputMeters.get().hold;
  const hold = frame.channels.map((c, i) => Math.max(c.peakDbfs ?? -100, (prev[i] ?? -100) - HOLD_FALL_DB));
  inputMeters.set({ frame, hold });
}

/** The engine's meters while on air (`join_room`'s meter channel) and the clip lights. */
export interface LiveMeterState {
  meters: LiveMeters | null;
  /** Until when each clip light stays lit (ms since the epoch). */
  clipUntil: { input: number; published: number };
  /** Whether each clip light is lit at the latest frame. */
  clipLit: { input: boolean; published: boolean };
  /** The latency readout's figures as shown; the same object while none of them changes, so
   *  the readout re-renders only when a shown figure does. */
  latency: ShownLatency | null;
  /** When (ms since the epoch) the shown figures were last taken from a frame. */
  latencyAt: number;
}

/** The latency readout takes new figures at most this often (ms): the jitter buffer's figure
 *  moves by a millisecond or two on most of the ~30 frames a second, which no one can read and
 *  which re-laid the readout out on nearly every frame (`studio_paint`'s DOM-change count:
 *  ~36 text changes a second in the readout before, at most 4 × 7 now). */
export const LATENCY_HOLD_MS = 250;

/** The latency readout's figures, formatted (`formatMs`), and the audio thread's priority. */
export interface ShownLatency {
  totalMs: string;
  inputMs: string;
  chainMs: string;
  encoderMs: string;
  jitterMs: string;
  outputMs: string;
  earMs: string;
  /** The audio thread runs at real-time priority (false: normal, the OS refused). */
  realtime: boolean;
}

function showLatency(l: LiveMeters["latency"], prev: ShownLatency | null): ShownLatency {
  const next: ShownLatency = {
    totalMs: formatMs(l.totalMs),
    inputMs: formatMs(l.inputMs),
    chainMs: formatMs(l.chainMs),
    encoderMs: formatMs(l.encoderMs),
    jitterMs: formatMs(l.jitterMs),
    outputMs: formatMs(l.outputMs),
    earMs: formatMs(l.earMs),
    realtime: l.realtime,
  };
  const same = prev !== null && (Object.keys(next) as (keyof ShownLatency)[]).every((k) => next[k] === prev[k]);
  return same ? prev : next;
}

const NO_LIVE_METERS: LiveMeterState = {
  meters: null,
  clipUntil: { input: 0, published: 0 },
  clipLit: { input: false, published: false },
  latency: null,
  latencyAt: 0,
};

export const liveMeters = new Store<LiveMeterState>(NO_LIVE_METERS);

/** A frame of the live meters, at time `now` (ms since the epoch). */
export function pushLiveMeters(meters: LiveMeters, now = Date.now()): void {
  const prev = liveMeters.get();
  const c = prev.clipUntil;
  const clipUntil = { input: clipHold(meters.input.clipped, now, c.input), published: clipHold(meters.published.clipped, now, c.published) };
  const fresh = prev.latency === null || now - prev.latencyAt >= LATENCY_HOLD_MS || now < prev.latencyAt;
  liveMeters.set({
    meters,
    clipUntil,
    clipLit: { input: clipUntil.input > now, published: clipUntil.published > now },
    latency: fresh ? showLatency(meters.latency, prev.latency) : prev.latency,
    latencyAt: fresh ? now : prev.latencyAt,
  });
}

/** Off air: no live meters. */
export function clearLiveMeters(): void {
  liveMeters.set(NO_LIVE_METERS);
}
