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

/** The minimal shape `mergeStatus` needs (the generated `RoomStatus` satisfies it). */
type WithAudience<M> = { audienceUnchanged: boolean; view: { audience: M[] } };

/**
 * A status pushed while live leaves the member list out when it has not changed
 * (`audienceUnchanged`): keep the list (and its identity, so nothing derived from it is
 * recomputed) from the status shown now.
 */
export function mergeStatus<M, S extends WithAudience<M>>(prev: S | null, next: S): S {
  if (!next.audienceUnchanged) return next;
  const audience = prev?.view.audience ?? [];
  return { ...next, audienceUnchanged: false, view: { ...next.view, audience } };
}
