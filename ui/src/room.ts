/** What the UI says for a room connection state sent by the Studio. */
export function connectionLabel(state: string): string {
  switch (state) {
    case "connecting":
      return "Connecting";
    case "connected":
      return "Live";
    case "mediaReconnecting":
      return "Reconnecting audio";
    case "rejoining":
      return "Rejoining the room";
    case "closed":
      return "Ended";
    default:
      return state;
  }
}
