//! LRC lyrics: `[mm:ss.xx]text` lines (several time tags per line allowed; `[ti:…]`-style tags
//! and an `[offset:±ms]` tag understood), and [`Lyrics::line_at`] for the line to show at a
//! playback position (so it follows seeks: it depends on the position only).

/// Largest LRC text accepted, bytes.
pub const MAX_LRC_BYTES: usize = 1 << 20;

/// Why LRC text could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LrcError {
    /// Too big.
    #[error("the lyrics are {0} bytes; LRC files over 1 MiB are refused")]
    TooLarge(usize),
    /// A tag could not be read.
    #[error("lyrics line {line}: {message} (expected [mm:ss.xx]text)")]
    BadLine {
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        message: String,
    },
    /// No timed line at all.
    #[error("the lyrics have no timed line (expected lines like [01:02.50]text)")]
    Empty,
}

/// One timed line.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LyricLine {
    /// When it starts, ms from the start of the song (offset applied).
    pub at_ms: u64,
    /// The text (may be empty: an instrumental gap).
    pub text: String,
}

/// Parsed lyrics, lines sorted by time.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Lyrics {
    /// Metadata tags (`ti`, `ar`, `al`, …) as written.
    pub tags: Vec<(String, String)>,
    /// Timed lines, sorted by `at_ms` (stable for equal times).
    pub lines: Vec<LyricLine>,
}

fn parse_time(tag: &str) -> Option<u64> {
    let (min, rest) = tag.split_once(':')?;
    let (sec, frac) = match rest.split_once(['.', ':']) {
        Some((s, f)) => (s, Some(f)),
        None => (rest, None),
    };
    let digits = |s: &str| !s.is_empty() && s.len() <= 6 && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(min) || !digits(sec) || sec.len() > 2 {
        return None;
    }
    let min: u64 = min.parse().ok()?;
    let sec: u64 = sec.parse().ok()?;
    if sec >= 60 {
        return None;
    }
    let ms = match frac {
        None => 0,
        Some(f) if digits(f) && f.len() <= 3 => {
            let v: u64 = f.parse().ok()?;
            v * 10u64.pow(3 - f.len() as u32)
        }
        Some(_) => return None,
    };
    Some(min * 60_000 + sec * 1000 + ms)
}

impl Lyrics {
    /// Parses LRC text.
    pub fn parse(text: &str) -> Result<Lyrics, LrcError> {
        if text.len() > MAX_LRC_BYTES {
            return Err(LrcError::TooLarge(text.len()));
        }
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        let mut out = Lyrics::default();
        let mut offset: i64 = 0;
        let mut timed: Vec<(u64, String)> = Vec::new();
        for (n, raw) in text.lines().enumerate() {
            let line_no = n + 1;
            let bad = |message: String| LrcError::BadLine {
                line: line_no,
                message,
            };
            let mut rest = raw.trim();
            if rest.is_empty() {
                continue;
            }
            if !rest.starts_with('[') {
                return Err(bad("text without a time tag".into()));
            }
            let mut times = Vec::new();
            while let Some(after) = rest.strip_prefix('[') {
                let Some((tag, tail)) = after.split_once(']') else {
                    return Err(bad("a '[' without its ']'".into()));
                };
                if tag.starts_with(|c: char| c.is_ascii_digit()) {
                    let t = parse_time(tag)
                        .ok_or_else(|| bad(format!("[{tag}] is not a time (mm:ss.xx)")))?;
                    times.push(t);
                } else if let Some((k, v)) = tag.split_once(':').filter(|(k, _)| {
                    !k.trim().is_empty() && k.trim().chars().all(char::is_alphabetic)
                }) {
                    if !times.is_empty() {
                        return Err(bad(format!("[{tag}] after a time tag")));
                    }
                    let k = k.trim().to_ascii_lowercase();
                    if k == "offset" {
                        offset = v.trim().parse().map_err(|_| {
                            bad(format!("[offset:{v}] is not a whole number of ms"))
                        })?;
                    }
                    out.tags.push((k, v.trim().to_owned()));
                    if !tail.trim().is_empty() {
                        return Err(bad(format!("text after the [{tag}] tag")));
                    }
                    rest = "";
                    break;
                } else {
                    return Err(bad(format!(
                        "[{tag}] is neither a time nor a key:value tag"
                    )));
                }
                rest = tail;
            }
            for t in times {
                timed.push((t, rest.trim().to_owned()));
            }
        }
        if timed.is_empty() {
            return Err(LrcError::Empty);
        }
        // A positive offset shows lyrics sooner (the LRC convention).
        out.lines = timed
            .into_iter()
            .map(|(t, text)| LyricLine {
                at_ms: u64::try_from(t as i64 - offset).unwrap_or(0),
                text,
            })
            .collect();
        out.lines.sort_by_key(|l| l.at_ms);
        Ok(out)
    }

    /// Index of the line showing at `position_ms` (the last line that started at or before it;
    /// `None` before the first line).
    pub fn index_at(&self, position_ms: u64) -> Option<usize> {
        self.lines
            .partition_point(|l| l.at_ms <= position_ms)
            .checked_sub(1)
    }

    /// The line showing at `position_ms`.
    pub fn line_at(&self, position_ms: u64) -> Option<&LyricLine> {
        self.index_at(position_ms).map(|i| &self.lines[i])
    }
}
