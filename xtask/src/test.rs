//! `cargo xtask test` and `cargo xtask bench`.

use std::process::{Command, ExitCode};
use std::time::Instant;

use anyhow::{Context, Result};

use crate::phases::{Phases, run_counted};
use crate::{daemons, run, setup, util};

/// Everything a test process needs to find the daemons and binaries.
struct TestEnv {
    vars: Vec<(String, String)>,
    _display: daemons::Display,
    _pulse: daemons::Pulse,
}

fn start_daemons(studio: &std::path::Path, server: &std::path::Path) -> Result<TestEnv> {
    let display = daemons::xvfb()?;
    let pulse = daemons::pulseaudio()?;
    let mut vars = pulse.env();
    vars.push(("DISPLAY".into(), display.name.clone()));
    vars.push((
        "ONMIC_STUDIO_BIN".into(),
        studio.to_string_lossy().into_owned(),
    ));
    vars.push((
        "ONMIC_SERVER_BIN".into(),
        server.to_string_lossy().into_owned(),
    ));
    vars.push((
        "ONMIC_TAURI_DRIVER".into(),
        setup::tauri_driver()?.to_string_lossy().into_owned(),
    ));
    vars.push((
        "ONMIC_WEBKIT_DRIVER".into(),
        setup::webkit_driver()?.to_string_lossy().into_owned(),
    ));
    if let Some(chromium) = util::which("chromium") {
        vars.push((
            "ONMIC_CHROMIUM".into(),
            chromium.to_string_lossy().into_owned(),
        ));
    }
    if let Some(driver) = util::which("chromedriver") {
        vars.push((
            "ONMIC_CHROMEDRIVER".into(),
            driver.to_string_lossy().into_owned(),
        ));
    }
    Ok(TestEnv {
        vars,
        _display: display,
        _pulse: pulse,
    })
}

fn cargo_with(env: Option<&TestEnv>) -> Command {
    let mut cmd = util::cargo();
    cmd.env("CARGO_TARGET_DIR", util::target_dir())
        .env("CARGO_TERM_COLOR", "never");
    if let Some(env) = env {
        cmd.envs(env.vars.iter().map(|(k, v)| (k, v)));
    }
    cmd
}

/// `cargo xtask test`.
pub fn test() -> ExitCode {
    let started = Instant::now();
    let mut phases = Phases::default();
    eprintln!("xtask: build directory {}", util::target_dir().display());

    let set_up = phases.run("setup (packages, npm, drivers)", |_| {
        setup::system_packages()?;
        setup::npm_packages()?;
        setup::pip_packages()?;
        setup::tauri_driver()?;
        setup::webkit_driver()?;
        Ok(())
    });
    if !set_up {
        phases.print_summary(started.elapsed());
        return ExitCode::FAILURE;
    }
    let ui_built = phases.run("ui build (tsc + vite)", |_| setup::build_ui());
    phases.run("cargo fmt --check", |_| {
        util::run_ok(util::cargo().args(["fmt", "--all", "--", "--check"]))
    });
    phases.run("cargo clippy -D warnings", |_| {
        util::run_ok(cargo_with(None).args([
            "clippy",
            "--workspace",
            "--all-targets",
            "--",
            "-D",
            "warnings",
        ]))?;
        // The SFU's rtc driver exists only for the capacity bench's stack comparison
        // (`bench-rtc`); lint it here so that it keeps compiling.
        util::run_ok(cargo_with(None).args([
            "clippy",
            "-p",
            "onmic-server",
            "--features",
            "bench-rtc",
            "--lib",
            "--",
            "-D",
            "warnings",
        ]))
    });
    let mut bins = None;
    if ui_built {
        phases.run("build binaries", |_| {
            bins = Some(run::build_bins(false)?);
            Ok(())
        });
    } else {
        phases.skip("build binaries", "the UI did not build");
    }
    let mut env = None;
    if let Some((studio, server)) = &bins {
        phases.run("start daemons (Xvfb, PulseAudio)", |_| {
            env = Some(start_daemons(studio, server)?);
            Ok(())
        });
    }
    match &env {
        Some(env) => {
            phases.run("cargo test (all crates)", |counts| {
                let all = run_counted(
                    cargo_with(Some(env)).args([
                        "test",
                        "--workspace",
                        "--no-fail-fast",
                        "--exclude",
                        "onmic-e2e",
                    ]),
                    counts,
                );
                // The bench-only rtc driver's own unit tests (malformed offers and the like).
                let rtc = run_counted(
                    cargo_with(Some(env)).args([
                        "test",
                        "-p",
                        "onmic-server",
                        "--features",
                        "bench-rtc",
                        "--lib",
                        "--",
                        "driver_rtc",
                    ]),
                    counts,
                );
                all.and(rtc)
            });
            phases.run("ui tests (vitest)", |counts| {
                let npm = util::which("npm").context("npm is missing")?;
                run_counted(
                    Command::new(npm)
                        .args(["test"])
                        .current_dir(util::root().join("ui"))
                        .env("NO_COLOR", "1"),
                    counts,
                )
            });
            phases.run("end-to-end (Studio, browser, server)", |counts| {
                run_counted(
                    cargo_with(Some(env)).args([
                        "test",
                        "-p",
                        "onmic-e2e",
                        "--no-fail-fast",
                        "--",
                        "--test-threads=1",
                    ]),
                    counts,
                )
            });
            phases.run("cargo xtask run (screenshot)", |_| {
                let shot = util::root().join("target/screenshots/xtask-run.png");
                let exe = std::env::current_exe()?;
                util::run_ok(
                    Command::new(exe)
                        .args(["run", "--screenshot"])
                        .arg(&shot)
                        .envs(env.vars.iter().map(|(k, v)| (k, v)))
                        .env("CARGO_TARGET_DIR", util::target_dir())
                        // Keep the user's real Studio settings out of the test.
                        .env(
                            "XDG_CONFIG_HOME",
                            util::target_dir().join("xtask-run-config"),
                        )
                        // ... and the local room's database and secrets out of the real home.
                        .env("XDG_DATA_HOME", util::target_dir().join("xtask-run-data")),
                )
            });
        }
        None => phases.skip("tests", "the binaries or daemons are not available"),
    }
    // The packages: bundle the debug build (the release one is `cargo xtask bundle`), install
    // the .deb, start the installed Studio, remove it.
    match &env {
        Some(env) => {
            phases.run("package (.deb/.rpm, install, smoke)", |_| {
                crate::bundle::smoke(&env.vars)
            });
        }
        None => phases.skip("package", "the binaries or daemons are not available"),
    }
    drop(env);
    phases.print_summary(started.elapsed());
    if phases.all_passed() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// `cargo xtask with-daemons -- CMD…`: the binaries built, the test daemons started, `CMD` run
/// with the tests' environment (and `CARGO_TARGET_DIR`); its exit code is ours.
pub fn with_daemons(args: &[String]) -> ExitCode {
    let args = args.strip_prefix(&["--".to_owned()]).unwrap_or(args);
    let Some((program, rest)) = args.split_first() else {
        eprintln!("xtask: usage: cargo xtask with-daemons -- CMD [ARGS...]");
        return ExitCode::from(2);
    };
    let result = (|| -> Result<std::process::ExitStatus> {
        setup::system_packages()?;
        setup::build_ui()?;
        let (studio, server) = run::build_bins(false)?;
        let env = start_daemons(&studio, &server)?;
        util::run(
            Command::new(program)
                .args(rest)
                .envs(env.vars.iter().map(|(k, v)| (k, v)))
                .env("CARGO_TARGET_DIR", util::target_dir()),
        )
    })();
    match result {
        Ok(status) if status.success() => ExitCode::SUCCESS,
        Ok(status) => ExitCode::from(status.code().map_or(1, |c| c.clamp(1, 255) as u8)),
        Err(e) => {
            eprintln!("xtask: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// `cargo xtask bench [ARGS]`: every benchmark of the workspace (release), with the test
/// daemons running (PulseAudio; Xvfb, the drivers and the release Studio and server binaries
/// for the Studio's event-to-paint bench, `onmic-e2e`'s `studio_paint`); extra arguments go to
/// `cargo bench`.
pub fn bench(args: &[String]) -> Result<()> {
    setup::system_packages()?;
    setup::build_ui()?;
    let (studio, server) = run::build_bins(true)?;
    let env = start_daemons(&studio, &server)?;
    util::run_ok(
        cargo_with(Some(&env))
            .args(["bench", "--workspace"])
            .args(args),
    )
}
