//! IM helpers: the word filter and the per-member chat rate limit.

use std::collections::VecDeque;
use std::time::Duration;

use crate::ids::Timestamp;

/// Replaces every case-insensitive occurrence of a filtered word with `*`, one per character.
/// Returns the text unchanged when nothing matched.
pub fn mask_words(text: &str, words: &[String]) -> String {
    let mut chars: Vec<char> = text.chars().collect();
    let lower: Vec<char> = chars.iter().map(|c| fold(*c)).collect();
    for word in words {
        let w: Vec<char> = word.chars().map(fold).collect();
        if w.is_empty() || w.len() > lower.len() {
            continue;
        }
        let mut i = 0;
        while i + w.len() <= lower.len() {
            if lower[i..i + w.len()] == w[..] {
                for c in &mut chars[i..i + w.len()] {
                    *c = '*';
                }
                i += w.len();
            } else {
                i += 1;
            }
        }
    }
    chars.into_iter().collect()
}

/// Case folding that keeps one char per char, so positions line up.
fn fold(c: char) -> char {
    let mut l = c.to_lowercase();
    match (l.next(), l.next()) {
        (Some(x), None) => x,
        _ => c,
    }
}

/// A sliding-window limit: at most `burst` events per `window`.
#[derive(Debug, Clone, Default)]
pub struct RateWindow {
    times: VecDeque<Timestamp>,
}

impl RateWindow {
    /// Records an event at `now` if allowed; otherwise returns how long until one is.
    pub fn try_take(
        &mut self,
        now: Timestamp,
        burst: u32,
        window: Duration,
    ) -> Result<(), Duration> {
        while self.times.front().is_some_and(|t| t.plus(window) <= now) {
            self.times.pop_front();
        }
        if self.times.len() >= burst as usize {
            let oldest = self.times.front().copied().unwrap_or(now);
            return Err(oldest.plus(window).since(now));
        }
        self.times.push_back(now);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_case_insensitively_and_keeps_the_rest() {
        let words = vec!["bad".to_owned(), "坏蛋".to_owned()];
        assert_eq!(mask_words("a BaD word, bad!", &words), "a *** word, ***!");
        assert_eq!(mask_words("你是坏蛋吗", &words), "你是**吗");
        assert_eq!(mask_words("fine", &words), "fine");
        assert_eq!(mask_words("", &words), "");
    }

    #[test]
    fn rate_window_refuses_past_the_burst_and_recovers() {
        let mut r = RateWindow::default();
        let w = Duration::from_secs(1);
        for i in 0..3 {
            assert!(r.try_take(Timestamp(i), 3, w).is_ok());
        }
        assert_eq!(
            r.try_take(Timestamp(10), 3, w),
            Err(Duration::from_millis(990))
        );
        assert!(r.try_take(Timestamp(1000), 3, w).is_ok());
    }
}
