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
