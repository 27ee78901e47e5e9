//! `cargo xtask bundle [--debug]`: the Studio's Linux packages (`.deb` and `.rpm`) made by the
//! Tauri CLI from the npm registry's `@tauri-apps/cli` (a devDependency of `ui/`, so its prebuilt
//! binary is in `ui/node_modules`), and the suite's smoke test of the installed `.deb`.
//!
//! Only the `deb` and `rpm` bundlers run (`--bundles deb,rpm`): both are written by the CLI
//! itself, while AppImage would download `linuxdeploy`. As root the CLI runs in a network
//! namespace of its own with no interface up (`unshare -n`), so a bundler that tried to download
//! anything would fail the build instead of quietly fetching.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::{run, setup, util};

/// The packages one bundle run made.
#[derive(Debug)]
pub struct Packages {
    /// The Debian package.
    pub deb: PathBuf,
    /// The RPM package.
    pub rpm: PathBuf,
}

/// `cargo xtask bundle [--debug]`.
pub fn bundle_command(args: &[String]) -> Result<()> {
    let mut debug = false;
    let mut smoke_test = false;
    for arg in args {
        match arg.as_str() {
            "--debug" => debug = true,
            "--smoke" => smoke_test = true,
            other => bail!("unknown option `{other}` for bundle (see cargo xtask help)"),
        }
    }
    if smoke_test {
        // The suite's package phase on its own; run under `cargo xtask with-daemons -- ...`
        // for the display and PulseAudio.
        let env: Vec<(String, String)> = std::env::vars().collect();
        return smoke(&env);
    }
    let packages = bundle(debug)?;
    eprintln!(
        "xtask: packages\n  {}\n  {}",
        packages.deb.display(),
        packages.rpm.display()
    );
    Ok(())
}

/// Builds the UI and the Studio (`debug`: the dev profile the tests use; otherwise the optimised
/// release profile) and bundles it.
pub fn bundle(debug: bool) -> Result<Packages> {
    setup::build_ui()?;
    let (studio, _) = run::build_bins(!debug)?;
    let cli = util::root().join("ui/node_modules/.bin/tauri");
    if !cli.exists() {
        bail!(
            "the Tauri CLI is missing ({}): run `cargo xtask setup` (npm installs ui/'s devDependencies)",
            cli.display()
        );
    }
    let profile_dir = studio.parent().context("the Studio's build directory")?;
    let out = profile_dir.join("bundle");
    // Old packages of another version must not be mistaken for this run's.
    let _ = std::fs::remove_dir_all(&out);
    let mut cmd = if util::is_root() && util::which("unshare").is_some() {
        let mut c = Command::new("unshare");
        c.args(["--net", "--"]).arg(&cli);
        c
    } else {
        Command::new(&cli)
    };
    cmd.arg("bundle")
        // `--no-binary-patching`: the CLI would otherwise rewrite the built binary in place
        // (updater metadata this app does not use), under the tests that run it.
        .args([
            "--bundles",
            "deb,rpm",
            "--ci",
            "--no-sign",
            "--no-binary-patching",
        ])
        .current_dir(util::root().join("src-tauri"))
        .env("CARGO_TARGET_DIR", util::target_dir());
    if debug {
        cmd.arg("--debug");
    }
    util::run_ok(&mut cmd)?;
    let find = |kind: &str| -> Result<PathBuf> {
        let dir = out.join(kind);
        std::fs::read_dir(&dir)
            .with_context(|| format!("no {} (the bundler made nothing)", dir.display()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .find(|p| p.extension().is_some_and(|x| x == kind))
            .with_context(|| format!("no .{kind} in {}", dir.display()))
    };
    Ok(Packages {
        deb: find("deb")?,
        rpm: find("rpm")?,
    })
}

/// The suite's package phase: bundle the debug build, check both packages, install the `.deb`,
/// start the installed Studio under the tests' X display and PulseAudio (its window appears, its
/// local room answers `/health`, a screenshot), then remove the package.
pub fn smoke(env: &[(String, String)]) -> Result<()> {
    let packages = bundle(true)?;
    // An RPM starts with its lead's magic number.
    let rpm = std::fs::read(&packages.rpm)?;
    if rpm.len() < 1024 || rpm[..4] != [0xed, 0xab, 0xee, 0xdb] {
        bail!("{} is not an RPM package", packages.rpm.display());
    }
    let field = |name: &str| -> Result<String> {
        let out = Command::new("dpkg-deb")
            .args(["--field"])
            .arg(&packages.deb)
            .arg(name)
            .output()?;
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    };
    let package = field("Package")?;
    let version = field("Version")?;
    eprintln!("xtask: {} is {package} {version}", packages.deb.display());
    if package.is_empty() || version != env!("CARGO_PKG_VERSION") {
        bail!("the .deb says package `{package}` version `{version}`");
    }
    if !util::is_root() {
        bail!("installing the .deb needs root (dpkg)");
    }
    util::run_ok(
        Command::new("apt-get")
            .args(["install", "-y", "--no-install-recommends"])
            .arg(&packages.deb),
    )?;
    let result = installed_smoke(&package, env);
    let removed = util::run_ok(Command::new("dpkg").args(["--purge", &package]));
    result?;
    removed?;
    if Path::new("/usr/bin/onmic-studio").exists() {
        bail!("/usr/bin/onmic-studio is still there after removing {package}");
    }
    Ok(())
}

fn installed_smoke(package: &str, env: &[(String, String)]) -> Result<()> {
    let files = util::output("dpkg", &["-L", package]).unwrap_or_default();
    for wanted in [
        "/usr/bin/onmic-studio",
        "/usr/share/applications/",
        "/usr/share/icons/hicolor/",
    ] {
        let present = if wanted.ends_with('/') {
            files.lines().any(|l| l.starts_with(wanted) && l != wanted)
        } else {
            files.lines().any(|l| l == wanted)
        };
        if !present {
            bail!("the package installs nothing under {wanted}:\n{files}");
        }
    }
    let desktop = files
        .lines()
        .find(|l| l.ends_with(".desktop"))
        .context("no desktop entry")?;
    let entry = std::fs::read_to_string(desktop)?;
    for line in [
        "Exec=onmic-studio",
        "Name=Onmic Studio",
        "Icon=onmic-studio",
    ] {
        if !entry.lines().any(|l| l.starts_with(line)) {
            bail!("{desktop} has no `{line}`:\n{entry}");
        }
    }
    let home = std::env::temp_dir().join(format!("onmic-installed-{}", std::process::id()));
    std::fs::create_dir_all(&home)?;
    let log_path = home.join("studio.log");
    let log = std::fs::File::create(&log_path)?;
    let mut cmd = Command::new("/usr/bin/onmic-studio");
    cmd.arg("--local-room")
        .envs(env.iter().map(|(k, v)| (k, v)))
        .env("XDG_CONFIG_HOME", home.join("config"))
        .env("XDG_DATA_HOME", home.join("data"))
        .stdout(Stdio::from(log.try_clone()?))
        .stderr(Stdio::from(log));
    let mut app = cmd.spawn().context("cannot start the installed Studio")?;
    let checked = (|| -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(60);
        let url = loop {
            if let Some(status) = app.try_wait()? {
                bail!(
                    "the installed Studio exited with {status}:\n{}",
                    std::fs::read_to_string(&log_path).unwrap_or_default()
                );
            }
            let text = plain(&std::fs::read_to_string(&log_path).unwrap_or_default());
            let found = text
                .lines()
                .filter(|l| l.contains("local room started"))
                .flat_map(|l| l.split_whitespace())
                .find_map(|w| w.strip_prefix("url="))
                .map(str::to_owned);
            if let Some(url) = found {
                break url;
            }
            if Instant::now() > deadline {
                bail!("the installed Studio did not start its local room:\n{text}");
            }
            std::thread::sleep(Duration::from_millis(200));
        };
        let health = util::output("curl", &["-fsS", &format!("{url}/health")])
            .with_context(|| format!("{url}/health does not answer"))?;
        eprintln!("xtask: the installed Studio's local room at {url}: {health}");
        let display = env
            .iter()
            .find(|(k, _)| k == "DISPLAY")
            .map(|(_, v)| v.clone())
            .context("no DISPLAY for the smoke test")?;
        loop {
            let tree = Command::new("xwininfo")
                .args(["-root", "-tree"])
                .env("DISPLAY", &display)
                .output()?;
            if String::from_utf8_lossy(&tree.stdout).contains("\"Onmic Studio\"") {
                break;
            }
            if Instant::now() > deadline {
                bail!("no window named \"Onmic Studio\" on {display}");
            }
            std::thread::sleep(Duration::from_millis(300));
        }
        // Let the webview paint before the screenshot.
        std::thread::sleep(Duration::from_secs(3));
        let shots = util::root().join("target/screenshots");
        std::fs::create_dir_all(&shots)?;
        util::run_ok(
            Command::new("import")
                .args(["-window", "root"])
                .arg(shots.join("installed-studio.png"))
                .env("DISPLAY", &display),
        )?;
        Ok(())
    })();
    let _ = app.kill();
    let _ = app.wait();
    let _ = std::fs::remove_dir_all(&home);
    checked
}

/// `text` without ANSI colour sequences (the Studio's log is coloured).
fn plain(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for d in chars.by_ref() {
                if d.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}
