//! System set-up: Debian packages, the UI's npm packages, `tauri-driver`. On Debian as root it
//! installs what is missing; elsewhere it prints the exact command and stops.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::util::{self, run_ok};

/// The `tauri-driver` version that matches Tauri 2.
pub const TAURI_DRIVER_VERSION: &str = "2.1.0";

/// Every Debian package named in `xtask/apt/*.txt`.
pub fn wanted_packages() -> Result<BTreeSet<String>> {
    let dir = util::root().join("xtask/apt");
    let mut packages = BTreeSet::new();
    for entry in std::fs::read_dir(&dir).with_context(|| format!("reading {}", dir.display()))? {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "txt") {
            let text = std::fs::read_to_string(&path)?;
            for line in text.lines() {
                let name = line.split('#').next().unwrap_or_default().trim();
                if !name.is_empty() {
                    packages.insert(name.to_owned());
                }
            }
        }
    }
    Ok(packages)
}

fn is_installed(package: &str) -> bool {
    util::output("dpkg-query", &["-W", "-f=${db:Status-Abbrev}", package])
        .is_some_and(|s| s.starts_with("ii"))
}

/// Installs (or asks for) the missing Debian packages. Non-Debian systems get a pointer.
pub fn system_packages() -> Result<()> {
    if !cfg!(target_os = "linux") {
        eprintln!(
            "xtask: not Linux: install Node.js 20+ and your platform's Tauri prerequisites (Xcode command line \
             tools on macOS; WebView2 and the MSVC build tools on Windows) if the build asks for them."
        );
        return Ok(());
    }
    if !util::is_debian() {
        eprintln!(
            "xtask: not a Debian-family system; install the equivalents of the packages in xtask/apt/*.txt \
             (WebKitGTK 4.1, GTK 3, ALSA, PulseAudio, libopus, Xvfb, WebKitWebDriver) with your package manager."
        );
        return Ok(());
    }
    let mut missing: Vec<String> = wanted_packages()?
        .into_iter()
        .filter(|p| !is_installed(p))
        .collect();
    if util::which("npm").is_none() || util::which("node").is_none() {
        missing.extend(["nodejs".to_owned(), "npm".to_owned()]);
    }
    if missing.is_empty() {
        return Ok(());
    }
    let list = missing.join(" ");
    if !util::is_root() {
        bail!(
            "missing system packages. Install them with:\n\n    sudo apt-get update && sudo apt-get install -y --no-install-recommends {list}\n"
        );
    }
    eprintln!(
        "xtask: installing {} missing package(s): {list}",
        missing.len()
    );
    run_ok(
        Command::new("apt-get")
            .arg("update")
            .env("DEBIAN_FRONTEND", "noninteractive"),
    )?;
    run_ok(
        Command::new("apt-get")
            .args(["install", "-y", "--no-install-recommends"])
            .args(&missing)
            .env("DEBIAN_FRONTEND", "noninteractive"),
    )
}

/// Installs the UI's npm packages when `node_modules` is missing or older than the lock file.
pub fn npm_packages() -> Result<()> {
    let ui = util::root().join("ui");
    let lock = ui.join("package-lock.json");
    let installed = ui.join("node_modules/.package-lock.json");
    let fresh = match (std::fs::metadata(&lock), std::fs::metadata(&installed)) {
        (Ok(l), Ok(i)) => i.modified()? >= l.modified()?,
        _ => false,
    };
    if fresh {
        return Ok(());
    }
    let Some(npm) = util::which("npm") else {
        bail!(
            "npm is not installed: install Node.js 20 or newer (Debian: apt-get install nodejs npm)"
        );
    };
    run_ok(
        Command::new(npm)
            .args(["ci", "--no-audit", "--no-fund"])
            .current_dir(&ui),
    )
}

/// The Python the voice-chain evaluation runs with (a venv under ~/.cache/onmic).
pub fn voice_eval_python() -> PathBuf {
    let home = std::env::var_os("HOME").map_or_else(|| PathBuf::from("/root"), PathBuf::from);
    home.join(".cache/onmic/voice-eval/venv/bin/python3")
}

/// Installs scripts/voice_eval/requirements.txt into a venv (pyroomacoustics, pesq, pystoi)
/// unless they import already.
pub fn pip_packages() -> Result<()> {
    let py = voice_eval_python();
    let ok = Command::new(&py)
        .args(["-c", "import pyroomacoustics, pesq, pystoi"])
        .output()
        .is_ok_and(|o| o.status.success());
    if ok {
        return Ok(());
    }
    let venv = py.parent().and_then(|p| p.parent()).context("venv path")?;
    run_ok(Command::new("python3").arg("-m").arg("venv").arg(venv))?;
    run_ok(
        Command::new(&py)
            .args(["-m", "pip", "install", "--quiet", "-r"])
            .arg(util::root().join("scripts/voice_eval/requirements.txt")),
    )
}

/// Builds the UI into `ui/dist` (what the Studio binary embeds).
pub fn build_ui() -> Result<()> {
    npm_packages()?;
    let npm = util::which("npm").context("npm is not installed")?;
    run_ok(
        Command::new(npm)
            .args(["run", "build"])
            .current_dir(util::root().join("ui")),
    )
}

/// The `tauri-driver` binary, installed with cargo (from crates.io) when missing.
pub fn tauri_driver() -> Result<PathBuf> {
    let cargo_bin = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")))
        .map(|home| home.join("bin/tauri-driver"));
    if let Some(found) = util::which("tauri-driver").or(cargo_bin.filter(|p| p.is_file())) {
        return Ok(found);
    }
    eprintln!("xtask: installing tauri-driver {TAURI_DRIVER_VERSION} (a few minutes, once)");
    run_ok(util::cargo().args([
        "install",
        "tauri-driver",
        "--locked",
        "--version",
        TAURI_DRIVER_VERSION,
    ]))?;
    util::which("tauri-driver")
        .or_else(|| {
            std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo/bin/tauri-driver"))
        })
        .filter(|p| p.is_file())
        .context("tauri-driver was installed but cannot be found; add ~/.cargo/bin to PATH")
}

/// `WebKitWebDriver` (Debian package `webkit2gtk-driver`).
pub fn webkit_driver() -> Result<PathBuf> {
    util::which("WebKitWebDriver")
        .context("WebKitWebDriver is missing: apt-get install webkit2gtk-driver")
}
