import { act, render } from "@testing-library/react";
import type { RoomStatus } from "./bindings";
import { ROOM_COUNTERS_HOLD_MS, RoomCounters } from "./RoomBar";

function status(members: number, sent: number, received: number, sendLoss = 0): RoomStatus {
  return { members, packetsSent: sent, packetsReceived: received, sendLoss } as unknown as RoomStatus;
}

describe("room bar counters", () => {
  it("change at most once per hold and show the latest counts when it ends", () => {
    vi.useFakeTimers();
    try {
      vi.setSystemTime(2_000_000);
      const { container, rerender } = render(<RoomCounters status={status(2000, 100, 700)} />);
      const shown = () => container.querySelector("#room-counters")?.textContent;
      expect(shown()).toBe("2000 in the room · sent 100 · received 700 packets");
      // Statuses every 100 ms move the packet counts: the bar holds the first for the hold.
      for (let i = 1; i < ROOM_COUNTERS_HOLD_MS / 100; i++) {
        act(() => vi.advanceTimersByTime(100));
        rerender(<RoomCounters status={status(2000, 100 + 5 * i, 700 + 40 * i)} />);
        expect(shown()).toBe("2000 in the room · sent 100 · received 700 packets");
      }
      rerender(<RoomCounters status={status(2001, 150, 1100, 3)} />);
      act(() => vi.advanceTimersByTime(100));
      expect(shown()).toBe("2001 in the room · sent 150 · received 1100 packets · loss 3 %");
    } finally {
      vi.useRealTimers();
    }
  });
});
