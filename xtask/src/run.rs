//! `cargo xtask run` and the single-step commands around it.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, bail};

use crate::{daemons, setup, util};

/// Builds `packages`' binaries (debug or release) in the shared target dir.
pub fn build_bins(release: bool) -> Result<(PathBuf, PathBuf)> {
    let mut cmd = util::cargo();
    cmd.args([
        "build",
        "-p",
        "onmic-studio",
        "-p",
        "onmic-server",
        "--bins",
    ]);
    if release {
        cmd.arg("--release");
    }
    util::run_ok(cmd.env("CARGO_TARGET_DIR", util::target_dir()))?;
    let dir = util::target_dir().join(if release { "release" } else { "debug" });
    Ok((dir.join(exe("onmic-studio")), dir.join(exe("onmic-server"))))
}

fn exe(name: &str) -> String {
    format!("{name}{}", std::env::consts::EXE_SUFFIX)
}

/// `cargo xtask run`.
pub fn run(args: &[String]) -> Result<()> {
    let mut release = false;
    let mut screenshot = None;
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--release" => release = true,
            "--screenshot" => {
                screenshot = Some(PathBuf::from(
                    it.next().context("--screenshot needs a PATH")?,
                ))
            }
            other => bail!("unknown option `{other}` for run (see cargo xtask help)"),
        }
    }
    setup::system_packages()?;
    if cfg!(target_os = "linux")
        && std::env::var_os("DISPLAY").is_none()
        && std::env::var_os("WAYLAND_DISPLAY").is_none()
    {
        bail!(
            "no display: the Studio is a desktop window. On a headless machine run it under a virtual display:\n\n    xvfb-run -a cargo xtask run\n"
        );
    }
    setup::build_ui()?;
    let (studio, _server) = build_bins(release)?;

    // A desktop has its sound server; a bare machine gets one for this run.
    let _pulse = if cfg!(target_os = "linux")
        && !daemons::sound_server_running()
        && util::which("pulseaudio").is_some()
    {
        eprintln!("xtask: no sound server answers; starting PulseAudio for this run");
        Some(daemons::pulseaudio()?)
    } else {
        None
    };
    // The Studio runs the room server in-process (its embedded local room) on a loopback port.
    let mut cmd = Command::new(&studio);
    cmd.arg("--local-room");
    if let Some(pulse) = &_pulse {
        cmd.envs(pulse.env());
    }
    eprintln!("$ {}", util::describe(&cmd));
    let mut app = cmd.spawn().context("cannot start the Studio")?;
    match screenshot {
        None => {
            let status = app.wait()?;
            if !status.success() {
                bail!("the Studio exited with {status}");
            }
        }
        Some(path) => {
            std::thread::sleep(Duration::from_secs(8));
            if let Some(status) = app.try_wait()? {
                bail!("the Studio exited early with {status}");
            }
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir)?;
            }
            let shot = util::run(Command::new("import").args(["-window", "root"]).arg(&path));
            let _ = app.kill();
            let _ = app.wait();
            if !shot?.success() {
                bail!("`import` could not capture the screen (Debian package imagemagick)");
            }
            eprintln!("xtask: screenshot saved to {}", path.display());
        }
    }
    Ok(())
}

/// `cargo xtask bindings`: regenerates `ui/src/bindings.ts`.
pub fn bindings() -> Result<()> {
    let out = util::root().join("ui/src/bindings.ts");
    util::run_ok(
        util::cargo()
            .args([
                "run",
                "--quiet",
                "-p",
                "onmic-studio",
                "--",
                "--export-bindings",
            ])
            .arg(&out)
            .env("CARGO_TARGET_DIR", util::target_dir()),
    )?;
    eprintln!("xtask: wrote {}", out.display());
    Ok(())
}

/// `cargo xtask icons`: redraws the icon set with ImageMagick (a violet tile, a white mic).
pub fn icons() -> Result<()> {
    let dir = util::root().join("icons");
    let master = std::env::temp_dir().join("onmic-icon-1024.png");
    util::run_ok(
        Command::new("convert")
            .args([
                "-size",
                "1024x1024",
                "xc:none",
                "-fill",
                "#5b3df5",
                "-draw",
                "roundrectangle 64,64 960,960 200,200",
                "-fill",
                "#ffffff",
                "-draw",
                "roundrectangle 412,220 612,600 100,100",
                "-stroke",
                "#ffffff",
                "-strokewidth",
                "48",
                "-fill",
                "none",
                "-draw",
                "arc 312,360 712,720 0,180",
                "-draw",
                "line 512,720 512,820",
                "-draw",
                "line 392,830 632,830",
            ])
            .arg(&master),
    )?;
    for (size, name) in [
        (32, "32x32.png"),
        (128, "128x128.png"),
        (256, "128x128@2x.png"),
        (512, "icon.png"),
    ] {
        util::run_ok(
            Command::new("convert")
                .arg(&master)
                .args(["-resize", &format!("{size}x{size}"), "-depth", "8"])
                .arg(format!("PNG32:{}", dir.join(name).display())),
        )?;
    }
    util::run_ok(
        Command::new("convert")
            .arg(&master)
            .args(["-define", "icon:auto-resize=256,128,64,48,32,16"])
            .arg(dir.join("icon.ico")),
    )?;
    // macOS bundles want .icns: png2icns (Debian package icnsutils) packs 512/256/128/32/16.
    let png2icns = util::which("png2icns")
        .context("png2icns is missing for icons/icon.icns: apt-get install icnsutils")?;
    let tmp = std::env::temp_dir();
    let mut sizes = Vec::new();
    for size in [512, 256, 128, 32, 16] {
        let out = tmp.join(format!("onmic-icon-{size}.png"));
        util::run_ok(
            Command::new("convert")
                .arg(&master)
                .args(["-resize", &format!("{size}x{size}"), "-depth", "8"])
                .arg(format!("PNG32:{}", out.display())),
        )?;
        sizes.push(out);
    }
    util::run_ok(
        Command::new(png2icns)
            .arg(dir.join("icon.icns"))
            .args(&sizes),
    )?;
    for file in sizes.iter().chain([&master]) {
        let _ = std::fs::remove_file(file);
    }
    Ok(())
}
