//! Small process helpers: run a command visibly, find programs, time phases.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};

use anyhow::{Context, Result, bail};

/// The workspace root (the parent of `xtask/`).
pub fn root() -> PathBuf {
    // `cargo xtask` (`cargo run`) sets CARGO_MANIFEST_DIR for the process: the checkout the
    // command was typed in. The value compiled in is the checkout this binary was built in,
    // and cargo reuses an xtask built in another checkout of the same source when they share a
    // build directory (`~/.cache/onmic/target`: CI's clones, `git worktree`s), which then built
    // and tested that other checkout.
    PathBuf::from(
        std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_else(|| env!("CARGO_MANIFEST_DIR").into()),
    )
    .join("..")
}

/// Prints a command the way a person would type it, then runs it with inherited output.
pub fn run(cmd: &mut Command) -> Result<ExitStatus> {
    eprintln!("$ {}", describe(cmd));
    cmd.status()
        .with_context(|| format!("cannot start `{}`", describe(cmd)))
}

/// Runs a command and fails unless it succeeds.
pub fn run_ok(cmd: &mut Command) -> Result<()> {
    let status = run(cmd)?;
    if !status.success() {
        bail!("`{}` failed ({status})", describe(cmd));
    }
    Ok(())
}

/// Runs a command quietly and says whether it succeeded.
pub fn succeeds(program: &str, args: &[&str]) -> bool {
    Command::new(program)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Runs a command quietly and returns its trimmed standard output when it succeeds.
pub fn output(program: &str, args: &[&str]) -> Option<String> {
    let out = Command::new(program)
        .args(args)
        .stderr(Stdio::null())
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// The full path of `program` on PATH, if it is there.
pub fn which(program: &str) -> Option<PathBuf> {
    if program.contains('/') {
        return Path::new(program).is_file().then(|| PathBuf::from(program));
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|p| p.is_file())
}

/// `cmd` as one line of shell.
pub fn describe(cmd: &Command) -> String {
    let mut parts = vec![cmd.get_program().to_string_lossy().into_owned()];
    parts.extend(cmd.get_args().map(quote));
    parts.join(" ")
}

fn quote(arg: &OsStr) -> String {
    let s = arg.to_string_lossy();
    if s.chars()
        .all(|c| c.is_ascii_alphanumeric() || "-_./=:,@+%".contains(c))
    {
        s.into_owned()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// Whether this process runs as root (so it may install system packages).
pub fn is_root() -> bool {
    output("id", &["-u"]).as_deref() == Some("0")
}

/// Whether this is a Debian-family system with apt.
pub fn is_debian() -> bool {
    Path::new("/etc/debian_version").exists() && which("apt-get").is_some()
}

/// The cargo that runs us.
pub fn cargo() -> Command {
    let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cmd.current_dir(root());
    cmd
}

/// The build directory every xtask command shares. Outside the clone by default, so a fresh
/// clone (CI) reuses earlier builds: `$CARGO_TARGET_DIR`, else `~/.cache/onmic/target`.
pub fn target_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("CARGO_TARGET_DIR") {
        return PathBuf::from(dir);
    }
    match std::env::var_os("HOME") {
        Some(home) => PathBuf::from(home).join(".cache/onmic/target"),
        None => root().join("target"),
    }
}
