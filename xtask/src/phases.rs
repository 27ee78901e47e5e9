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
}

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
            }
        );
    }
}
