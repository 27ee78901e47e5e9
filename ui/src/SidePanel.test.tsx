import { describe, expect, it, vi } from "vitest";
import { fireEvent, render } from "@testing-library/react";
import { SidePanel } from "./SidePanel";
import type { MemberView } from "./bindings";

const members = (n: number): MemberView[] =>
  Array.from({ length: n }, (_, i) => ({ uid: `listener-${i}`, role: i === 0 ? "owner" : "audience", seat: i === 0 ? 0 : null, chatMutedUntil: null }));

describe("chat", () => {
  it("shows user text literally, never as HTML", () => {
    const { container, getByText } = render(
      <SidePanel
        me="host"
        audience={members(2)}
        banned={[]}
        feed={[{ version: 3, kind: "chat", from: "bob", text: "<img src=x onerror=alert(1)>" }]}
        notice={"<b>hi</b>"}
        leaderboard={[]}
        now={0}
        onAct={() => {}}
      />,
    );
    expect(container.querySelector("img")).toBeNull();
    expect(container.querySelector("#notice b")).toBeNull();
    expect(getByText("<img src=x onerror=alert(1)>")).toBeTruthy();
    expect(getByText("<b>hi</b>")).toBeTruthy();
  });

  it("sends the typed text as a chat action", () => {
    const onAct = vi.fn();
    const { container } = render(
      <SidePanel me="host" audience={[]} banned={[]} feed={[]} notice={null} leaderboard={[]} now={0} onAct={onAct} />,
    );
    const input = container.querySelector("#chat-input") as HTMLInputElement;
    fireEvent.change(input, { target: { value: "hello room" } });
    fireEvent.submit(input.closest("form")!);
    expect(onAct).toHaveBeenCalledWith({ type: "chat", text: "hello room" });
    expect(input.value).toBe("");
  });
});

describe("chat feed", () => {
  const lines = (from: number, to: number) => Array.from({ length: to - from + 1 }, (_, i) => ({ version: from + i, kind: "chat", from: `u${from + i}`, text: `line ${from + i}` }));
  const panel = (feed: ReturnType<typeof lines>) => <SidePanel me="host" audience={[]} banned={[]} feed={feed} notice={null} leaderboard={[]} now={0} onAct={() => {}} />;
  const shownVersions = (c: HTMLElement) => [...c.querySelectorAll("#chat-feed li")].map((li) => li.textContent);

  it("keeps lines the room's window dropped, live at the bottom", () => {
    const { container, rerender } = render(panel(lines(1, 50)));
    rerender(panel(lines(31, 80)));
    const shown = shownVersions(container);
    expect(shown.length).toBe(80);
    expect(shown[79]).toBe("u80line 80");
    expect(container.querySelector("#chat-feed")!.className).toContain("live");
  });

  it("pauses on a scroll up, holds its lines, counts new ones, and goes back to live", () => {
    // jsdom lays nothing out: give the list a content taller than itself.
    const h = vi.spyOn(HTMLElement.prototype, "scrollHeight", "get").mockReturnValue(2000);
    const c = vi.spyOn(HTMLElement.prototype, "clientHeight", "get").mockReturnValue(400);
    try {
      const { container, rerender } = render(panel(lines(1, 50)));
      const feed = container.querySelector("#chat-feed") as HTMLOListElement;
      fireEvent.wheel(feed, { deltaY: -120 });
      expect(feed.className).toContain("paused");
      expect(feed.scrollTop).toBe(2000 - 400 - 120);
      rerender(panel(lines(3, 52)));
      expect(shownVersions(container).length).toBe(50);
      expect(container.querySelector("#chat-resume")!.textContent).toContain("2 new lines");
      fireEvent.click(container.querySelector("#chat-resume")!);
      expect(feed.className).toContain("live");
      expect(shownVersions(container).length).toBe(52);
      expect(container.querySelector("#chat-resume")).toBeNull();
      // Keys too: Page Up pauses, End goes back.
      fireEvent.keyDown(feed, { key: "PageUp" });
      expect(feed.className).toContain("paused");
      fireEvent.keyDown(feed, { key: "End" });
      expect(feed.className).toContain("live");
      // Sending a message goes back to live too.
      fireEvent.keyDown(feed, { key: "ArrowUp" });
      expect(feed.className).toContain("paused");
      const input = container.querySelector("#chat-input") as HTMLInputElement;
      fireEvent.change(input, { target: { value: "hi" } });
      fireEvent.submit(input.closest("form")!);
      expect(feed.className).toContain("live");
    } finally {
      h.mockRestore();
      c.mockRestore();
    }
  });

  it("does not pause a feed that fits", () => {
    const { container } = render(panel(lines(1, 3)));
    const feed = container.querySelector("#chat-feed") as HTMLOListElement;
    fireEvent.wheel(feed, { deltaY: -120 });
    expect(feed.className).toContain("live");
  });
});

describe("audience", () => {
  it("keeps only a window of rows in the DOM for 5000 members, and searches", () => {
    const { container } = render(
      <SidePanel me="listener-0" audience={members(5000)} banned={["bad"]} feed={[]} notice={null} leaderboard={[]} now={0} onAct={() => {}} />,
    );
    fireEvent.click(container.querySelector("#tab-audience")!);
    const rows = container.querySelectorAll(".member-row");
    expect(rows.length).toBeGreaterThan(0);
    expect(rows.length).toBeLessThan(40);
    fireEvent.change(container.querySelector("#audience-search")!, { target: { value: "listener-4999" } });
    const found = container.querySelectorAll(".member-row");
    expect(found.length).toBe(1);
    expect(found[0].getAttribute("data-uid")).toBe("listener-4999");
  });

  it("kicks with the chosen ban preset", () => {
    const onAct = vi.fn();
    const { container } = render(
      <SidePanel me="host" audience={members(3)} banned={[]} feed={[]} notice={null} leaderboard={[]} now={0} onAct={onAct} />,
    );
    fireEvent.click(container.querySelector("#tab-audience")!);
    fireEvent.click(container.querySelector(".member-row[data-uid='listener-2'] .row-menu")!);
    fireEvent.change(container.querySelector("#member-actions select[data-field='ban']")!, { target: { value: "60" } });
    fireEvent.click(container.querySelector("#member-actions [data-action='kick']")!);
    expect(onAct).toHaveBeenCalledWith({ type: "kick", uid: "listener-2", banMinutes: 60 });
  });
});
