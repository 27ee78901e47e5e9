//! IM helpers: the word filter and the per-member chat rate limit.

use std::collections::VecDeque;
use std::time::Duration;

use crate::ids::Timestamp;

/// Longest room title, in characters.
pub const MAX_TITLE_CHARS: usize = 256;

/// Why a text (chat, notice, title, custom kind) was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TextError {
    /// Nothing visible: empty, or only whitespace and invisible characters.
    #[error("text is empty (only whitespace or invisible characters)")]
    Empty,
    /// A control character (C0 other than tab and newline, DEL, C1) or a bidi
    /// embedding/override/isolate control.
    #[error("text may not contain the control character U+{0:04X}")]
    Control(u32),
}

/// Bidirectional formatting controls: embeddings, overrides, isolates and marks.
fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{200e}' | '\u{200f}' | '\u{61c}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// Unicode `Default_Ignorable_Code_Point` (DerivedCoreProperties.txt) plus characters that render
/// as blank (braille blank, Hangul fillers): text made only of these shows nothing.
pub fn is_invisible(c: char) -> bool {
    matches!(c,
        '\u{ad}' | '\u{34f}' | '\u{61c}' | '\u{115f}'..='\u{1160}' | '\u{17b4}'..='\u{17b5}'
        | '\u{180b}'..='\u{180f}' | '\u{200b}'..='\u{200f}' | '\u{202a}'..='\u{202e}'
        | '\u{2060}'..='\u{206f}' | '\u{2800}' | '\u{3164}' | '\u{fe00}'..='\u{fe0f}' | '\u{feff}'
        | '\u{ffa0}' | '\u{fff0}'..='\u{fff8}' | '\u{1bca0}'..='\u{1bca3}'
        | '\u{1d173}'..='\u{1d17a}' | '\u{e0000}'..='\u{e0fff}')
}

/// The text rule for chat, notices and custom kinds (`multiline`) and titles (not): refuses
/// control characters (C0 except tab and, when `multiline`, newline; DEL; C1 — so NUL, BEL and
/// ANSI escape sequences never pass) and bidi controls; refuses as empty a text of only
/// whitespace and invisible characters (zero-width space, joiners, BOM, ...).
pub fn check_text(text: &str, multiline: bool) -> Result<(), TextError> {
    for c in text.chars() {
        let allowed_ws = c == '\t' || (multiline && c == '\n');
        if (c.is_control() && !allowed_ws) || is_bidi_control(c) {
            return Err(TextError::Control(u32::from(c)));
        }
    }
    if text.chars().all(|c| c.is_whitespace() || is_invisible(c)) {
        return Err(TextError::Empty);
    }
    Ok(())
}

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
    fn control_bidi_and_invisible_text_is_refused() {
        for bad in [
            "a\0b",
            "ding\u{7}",
            "\u{1b}[31mred\u{1b}[0m",
            "\u{202e}evil",
            "x\u{85}",
            "\u{7f}",
        ] {
            assert!(
                matches!(check_text(bad, true), Err(TextError::Control(_))),
                "{bad:?}"
            );
        }
        for empty in [
            "",
            "   ",
            "\u{200b}\u{200b}",
            "\u{feff}\u{200d}",
            " \u{2060}\n",
        ] {
            assert_eq!(check_text(empty, true), Err(TextError::Empty), "{empty:?}");
        }
        assert!(check_text("two\nlines\tok", true).is_ok());
        assert!(check_text("two\nlines", false).is_err());
        assert!(check_text("你好 👋🏽 family 👨\u{200d}👩\u{200d}👧", true).is_ok());
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
