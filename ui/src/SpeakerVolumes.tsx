interface Props {
  /** uid → percent, as saved. */
  volumes: Partial<Record<string, number | null>>;
  onForget: (uid: string) => void;
}

/** The playback volumes the host set for speakers, kept between runs; each can be forgotten (back to 100 %). */
export function SpeakerVolumes({ volumes, onForget }: Props) {
  const entries = Object.entries(volumes).filter((e): e is [string, number] => typeof e[1] === "number");
  if (entries.length === 0) return null;
  return (
    <section className="card" aria-labelledby="speaker-volumes-title">
      <header className="card-head">
        <h2 id="speaker-volumes-title">Speaker volumes</h2>
      </header>
      <ul className="speaker-volumes" id="speaker-volumes">
        {entries.map(([uid, v]) => (
          <li key={uid} data-uid={uid} data-volume={v}>
            <span className="speaker-name" title={uid}>
              {uid}
            </span>
            <span className="speaker-volume">{Math.round(v)} %</span>
            <button type="button" className="ghost small-btn" title="Back to 100 %" onClick={() => onForget(uid)}>
              Forget
            </button>
          </li>
        ))}
      </ul>
      <p className="muted small">Applied whenever that speaker is on a seat. Set them from a seat's menu.</p>
    </section>
  );
}
