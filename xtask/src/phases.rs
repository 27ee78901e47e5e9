//! Phases of a run, their timings, and the test counts read from the runners' own output.

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use crate::util;

/// How a phase ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// It succeeded.
    Passed,
    /// It failed, with a one-line reason.
    Failed(String),
    /// It did not run, with why.
    Skipped(String),
}

/// Test counts summed over every runner's closing lines.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    /// Tests that passed.
    pub passed: u64,
    /// Tests that failed.
    pub failed: u64,
    /// Tests the runner reported as ignored or skipped.
    pub skipped: u64,
    /// Each ignored test's line (`test NAME ... ignored, REASON`), so that the summary names
    /// every skipped test and its reason: no skip is silent.
    pub ignored: Vec<String>,
    /// Why each failed test failed (`NAME: FILE:LINE: message`, or its `Error:` line), so that
    /// the summary's last lines say what broke even when only the tail of the log is read.
    pub failures: Vec<String>,
    /// The test whose captured output is being read (`---- NAME stdout ----`).
    reading: Option<String>,
    /// A panic's location, waiting for its message on the next line.
    panic_at: Option<(String, String)>,
}

/// The longest failure message kept for the summary.
const FAILURE_CHARS: usize = 300;

/// Records phases as they run.
#[derive(Default)]
pub struct Phases {
    rows: Vec<(String, Duration, Outcome)>,
    /// Test counts so far.
    pub counts: Counts,
}

impl Phases {
    /// Runs `body` as phase `name`, timing it and recording its outcome.
    pub fn run(&mut self, name: &str, body: impl FnOnce(&mut Counts) -> Result<()>) -> bool {
        eprintln!("\n==== xtask: {name} ====");
        let started = Instant::now();
        let outcome = match body(&mut self.counts) {
            Ok(()) => Outcome::Passed,
            Err(e) => {
                eprintln!("xtask: {name} failed: {e:#}");
                Outcome::Failed(
                    format!("{e:#}")
                        .lines()
                        .next()
                        .unwrap_or_default()
                        .to_owned(),
                )
            }
        };
        let ok = outcome == Outcome::Passed;
        self.rows
            .push((name.to_owned(), started.elapsed(), outcome));
        ok
    }

    /// Records that phase `name` did not run.
    pub fn skip(&mut self, name: &str, why: &str) {
        eprintln!("\n==== xtask: {name}: skipped, {why} ====");
        self.rows.push((
            name.to_owned(),
            Duration::ZERO,
            Outcome::Skipped(why.to_owned()),
        ));
    }

    /// Whether every phase passed.
    pub fn all_passed(&self) -> bool {
        self.rows.iter().all(|(_, _, o)| *o == Outcome::Passed)
    }

    /// Prints the summary table and the closing line.
    pub fn print_summary(&self, total: Duration) {
        println!("\n==== xtask summary ====");
        for (name, took, outcome) in &self.rows {
            let (mark, note) = match outcome {
                Outcome::Passed => ("ok  ", String::new()),
                Outcome::Failed(why) => ("FAIL", format!("  {why}")),
                Outcome::Skipped(why) => ("skip", format!("  {why}")),
            };
            println!("{mark} {name:<28} {:>7.1} s{note}", took.as_secs_f64());
        }
        println!("     {:<28} {:>7.1} s", "total", total.as_secs_f64());
        let c = &self.counts;
        for line in &c.ignored {
            println!("skipped: {line}");
        }
        for line in &c.failures {
            println!("failed: {line}");
        }
        println!(
            "{} passed, {} failed, {} skipped",
            c.passed, c.failed, c.skipped
        );
    }
}

/// Runs a test runner, echoing its output and adding the counts from its closing lines.
pub fn run_counted(cmd: &mut Command, counts: &mut Counts) -> Result<()> {
    eprintln!("$ {}", util::describe(cmd));
    let mut child = cmd
        .stdout(Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot start `{}`", util::describe(cmd)))?;
    let stdout = child.stdout.take().context("piped stdout")?;
    let mut out = std::io::stdout();
    for line in BufReader::new(stdout).lines() {
        let line = line?;
        let _ = writeln!(out, "{line}");
        add_counts(&strip_ansi(&line), counts);
    }
    let status = child.wait()?;
    if !status.success() {
        anyhow::bail!("`{}` failed ({status})", util::describe(cmd));
    }
    Ok(())
}

/// Reads `cargo test`'s `test result:` lines and vitest's `Tests  N passed | M failed` line:
/// every "<number> <passed|failed|ignored|skipped>" pair on such a line counts.
fn add_counts(line: &str, counts: &mut Counts) {
    if let Some((name, at)) = counts.panic_at.take() {
        counts
            .failures
            .push(clip(&format!("{name}: {at}: {}", line.trim())));
        return;
    }
    if let Some(name) = line
        .strip_prefix("---- ")
        .and_then(|l| l.strip_suffix(" stdout ----"))
    {
        counts.reading = Some(name.to_owned());
        return;
    }
    if line.starts_with("thread '") && line.contains(" panicked at ") {
        // thread 'NAME' (PID) panicked at FILE:LINE:COL:
        let name = line["thread '".len()..]
            .split('\'')
            .next()
            .unwrap_or_default()
            .to_owned();
        let at = line
            .split(" panicked at ")
            .nth(1)
            .unwrap_or_default()
            .trim_end_matches(':')
            .to_owned();
        counts.panic_at = Some((name, at));
        return;
    }
    if let (Some(name), Some(err)) = (&counts.reading, line.strip_prefix("Error: ")) {
        counts.failures.push(clip(&format!("{name}: {err}")));
        return;
    }
    let line = line.trim_start();
    if line.starts_with("test ") && line.contains(" ... ignored") {
        counts.ignored.push(line["test ".len()..].to_owned());
        return;
    }
    if !(line.starts_with("test result:") || line.starts_with("Tests ")) {
        return;
    }
    let tokens: Vec<&str> = line
        .split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|t| !t.is_empty())
        .collect();
    for pair in tokens.windows(2) {
        let Ok(n) = pair[0].parse::<u64>() else {
            continue;
        };
        match pair[1] {
            "passed" => counts.passed += n,
            "failed" => counts.failed += n,
            "ignored" | "skipped" => counts.skipped += n,
            _ => {}
        }
    }
}

fn clip(s: &str) -> String {
    match s.char_indices().nth(FAILURE_CHARS) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_owned(),
    }
}

fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_cargo_and_vitest_closing_lines() {
        let mut c = Counts::default();
        add_counts(
            "test result: ok. 5 passed; 0 failed; 2 ignored; 0 measured; 0 filtered out; finished in 0.07s",
            &mut c,
        );
        add_counts(
            "test result: FAILED. 2 passed; 1 failed; 0 ignored; 0 measured; 0 filtered out",
            &mut c,
        );
        add_counts(
            &strip_ansi(
                "\u{1b}[2m      Tests \u{1b}[22m \u{1b}[1m\u{1b}[32m7 passed\u{1b}[39m\u{1b}[22m\u{1b}[90m (7)\u{1b}[39m",
            ),
            &mut c,
        );
        add_counts("      Tests  1 failed | 6 passed (7)", &mut c);
        add_counts("running 3 tests", &mut c);
        add_counts(
            "test slow_case ... ignored, needs a quiet machine: see docs",
            &mut c,
        );
        assert_eq!(
            c,
            Counts {
                passed: 20,
                failed: 2,
                skipped: 2,
                ignored: vec!["slow_case ... ignored, needs a quiet machine: see docs".into()],
                ..Counts::default()
            }
        );
    }

    #[test]
    fn names_why_each_test_failed() {
        let mut c = Counts::default();
        for line in [
            "failures:",
            "",
            "---- cue_plays stdout ----",
            "cue monitor: 1 kHz -200.0 dB",
            "",
            "thread 'cue_plays' (9269) panicked at audio/tests/music_devices.rs:186:5:",
            "the cue sink's monitor has the cued track: -200.0 dB",
            "stack backtrace:",
            "---- the_loss_figure stdout ----",
            "Error: timed out after 30s waiting for a loss figure",
            "test result: FAILED. 1 passed; 2 failed; 0 ignored; 0 measured; 0 filtered out",
        ] {
            add_counts(line, &mut c);
        }
        assert_eq!(
            c.failures,
            vec![
                "cue_plays: audio/tests/music_devices.rs:186:5: the cue sink's monitor has the \
                 cued track: -200.0 dB"
                    .to_owned(),
                "the_loss_figure: timed out after 30s waiting for a loss figure".to_owned(),
            ]
        );
        assert_eq!((c.passed, c.failed), (1, 2));
        let long = format!("thread 't' (1) panicked at a.rs:1:1:\n{}", "x".repeat(1000));
        let mut c = Counts::default();
        for line in long.lines() {
            add_counts(line, &mut c);
        }
        assert_eq!(c.failures[0].chars().count(), FAILURE_CHARS + 1);
    }
}
