/** A function that runs `run` for one value at a time (see [`newestOnly`]). */
export interface Newest<T> {
  (value: T): Promise<void>;
  /** Settles once nothing runs or waits: what was given last has run. */
  idle(): Promise<void>;
}

/** Runs `run` for one value at a time. A value given while a run is in flight waits, and a newer
 *  one replaces it: the last value given is always the last one run, and no two runs overlap.
 *  For a device pick: a host who picks A, B and C quickly gets A opened (already under way) and
 *  then C, never B after C; going live first waits for `idle()`, so that it uses C. `run`'s
 *  second argument says whether a newer value is waiting (a reply to an older save must not
 *  roll the control back). `run` reports its own errors; it must not throw. The promise a call
 *  returns settles when its value has run or was replaced. */
export function newestOnly<T>(run: (value: T, newer: () => boolean) => Promise<void>): Newest<T> {
  let busy = false;
  let waiting: { value: T } | null = null;
  let idlers: (() => void)[] = [];
  const call = async (value: T) => {
    if (busy) {
      waiting = { value };
      return;
    }
    busy = true;
    try {
      let next: { value: T } | null = { value };
      while (next) {
        waiting = null;
        await run(next.value, () => waiting !== null);
        next = waiting;
      }
    } finally {
      busy = false;
      const done = idlers;
      idlers = [];
      for (const f of done) f();
    }
  };
  return Object.assign(call, {
    idle: () => (busy ? new Promise<void>((r) => idlers.push(r)) : Promise.resolve()),
  });
}
