//! The daemons tests need, each stopped when its guard drops (also when a phase fails):
//! a virtual X display (Xvfb) and a private PulseAudio server with two null sinks.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::util;

/// A running daemon, killed on drop.
pub struct Daemon {
    name: &'static str,
    child: Child,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        // Asked to end first, so that it cleans up after itself (Xvfb removes its lock file and
        // socket; killed, it leaves them, and 110 such locks once used up every display number).
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .stderr(Stdio::null())
            .status();
        let deadline = Instant::now() + Duration::from_secs(3);
        while Instant::now() < deadline && matches!(self.child.try_wait(), Ok(None)) {
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        eprintln!("xtask: stopped {}", self.name);
    }
}

/// Whether display `n` is free: no socket and no lock, or a lock left by an X server that is no
/// longer running (then the lock and socket are removed).
fn display_free(n: u32) -> bool {
    let lock = format!("/tmp/.X{n}-lock");
    let socket = format!("/tmp/.X11-unix/X{n}");
    let Ok(text) = std::fs::read_to_string(&lock) else {
        return !Path::new(&lock).exists() && !Path::new(&socket).exists();
    };
    let alive = text
        .trim()
        .parse::<u32>()
        .is_ok_and(|pid| Path::new(&format!("/proc/{pid}")).exists());
    if alive || !Path::new("/proc/self").exists() {
        return false;
    }
    std::fs::remove_file(&lock).is_ok() && {
        let _ = std::fs::remove_file(&socket);
        true
    }
}

fn wait_until(what: &str, timeout: Duration, mut ready: impl FnMut() -> bool) -> Result<()> {
    let deadline = Instant::now() + timeout;
    while !ready() {
        if Instant::now() > deadline {
            bail!("{what} did not come up within {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

/// A virtual X display.
pub struct Display {
    /// `:N`, for `DISPLAY`.
    pub name: String,
    _daemon: Daemon,
}

/// Starts Xvfb on the first free display from :90, with a 1920 × 1080 screen: larger than any
/// window the tests open (the Studio at 1440 × 900 included), so that the X server draws all of
/// it, as a host's screen would (at 1280 × 800 it clipped the Studio's window).
pub fn xvfb() -> Result<Display> {
    let n = (90..200)
        .find(|n| display_free(*n))
        .context("no free X display number between :90 and :199 (see /tmp/.X*-lock)")?;
    let name = format!(":{n}");
    let child = Command::new("Xvfb")
        .args([
            name.as_str(),
            "-screen",
            "0",
            "1920x1080x24",
            "-nolisten",
            "tcp",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("cannot start Xvfb (Debian package xvfb)")?;
    let daemon = Daemon {
        name: "Xvfb",
        child,
    };
    wait_until("Xvfb", Duration::from_secs(10), || {
        Path::new(&format!("/tmp/.X11-unix/X{n}")).exists()
    })?;
    eprintln!("xtask: Xvfb on {name}");
    Ok(Display {
        name,
        _daemon: daemon,
    })
}

/// A private PulseAudio server and what clients need to reach it.
pub struct Pulse {
    /// Its runtime directory (`XDG_RUNTIME_DIR`).
    pub runtime_dir: PathBuf,
    /// `PULSE_SERVER` for clients.
    pub server: String,
    _daemon: Daemon,
}

impl Pulse {
    /// Environment variables that point a client at this server.
    pub fn env(&self) -> Vec<(String, String)> {
        vec![
            (
                "XDG_RUNTIME_DIR".into(),
                self.runtime_dir.to_string_lossy().into_owned(),
            ),
            ("PULSE_SERVER".into(), self.server.clone()),
            ("ONMIC_TEST_AUDIO".into(), "1".into()),
        ]
    }

    fn pactl(&self, args: &[&str]) -> Result<()> {
        let mut cmd = Command::new("pactl");
        cmd.args(args)
            .env("PULSE_SERVER", &self.server)
            .stdout(Stdio::null());
        let status = cmd
            .status()
            .context("cannot run pactl (Debian package pulseaudio-utils)")?;
        if !status.success() {
            bail!("`{}` failed", util::describe(&cmd));
        }
        Ok(())
    }
}

impl Drop for Pulse {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.runtime_dir);
    }
}

/// The null sinks every test run has: 48 kHz stereo, monitors usable as inputs.
pub const TEST_SINKS: [&str; 2] = ["onmic_a", "onmic_b"];

/// A four-channel null sink (front left/right, rear left/right: what cpal's four-channel streams
/// play, so nothing is remixed; PulseAudio's own default for four is another map, and a
/// pro-audio card shows aux0–auxN, which the capture handles the same way): its monitor is the tests' multi-channel sound
/// card, for picking which two input channels the engine uses.
pub const QUAD_SINK: &str = "onmic_quad";

/// Starts a private PulseAudio with the [`TEST_SINKS`] and [`QUAD_SINK`]; `onmic_a` is the default sink and its
/// monitor the default source.
pub fn pulseaudio() -> Result<Pulse> {
    let runtime_dir = std::env::temp_dir().join(format!("onmic-pulse-{}", std::process::id()));
    std::fs::create_dir_all(&runtime_dir)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&runtime_dir, std::fs::Permissions::from_mode(0o700))?;
    }
    let child = Command::new("pulseaudio")
        .args([
            "--daemonize=no",
            "--exit-idle-time=-1",
            "--system=false",
            "--disallow-exit",
            "--log-target=stderr",
        ])
        .env("XDG_RUNTIME_DIR", &runtime_dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("cannot start pulseaudio (Debian package pulseaudio)")?;
    let server = format!("unix:{}", runtime_dir.join("pulse/native").display());
    let pulse = Pulse {
        runtime_dir,
        server,
        _daemon: Daemon {
            name: "PulseAudio",
            child,
        },
    };
    wait_until("PulseAudio", Duration::from_secs(15), || {
        Command::new("pactl")
            .arg("info")
            .env("PULSE_SERVER", &pulse.server)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    })?;
    for sink in TEST_SINKS {
        pulse.pactl(&[
            "load-module",
            "module-null-sink",
            &format!("sink_name={sink}"),
            "rate=48000",
            "channels=2",
            &format!("sink_properties=device.description={sink}"),
        ])?;
    }
    pulse.pactl(&[
        "load-module",
        "module-null-sink",
        &format!("sink_name={QUAD_SINK}"),
        "rate=48000",
        "channels=4",
        "channel_map=front-left,front-right,rear-left,rear-right",
        &format!("sink_properties=device.description={QUAD_SINK}"),
    ])?;
    pulse.pactl(&["set-default-sink", TEST_SINKS[0]])?;
    pulse.pactl(&["set-default-source", &format!("{}.monitor", TEST_SINKS[0])])?;
    eprintln!(
        "xtask: PulseAudio at {} with sinks {} and {QUAD_SINK} (4 channels)",
        pulse.server,
        TEST_SINKS.join(", ")
    );
    Ok(pulse)
}

/// Whether a sound server already answers for this user (a desktop session).
pub fn sound_server_running() -> bool {
    util::succeeds("pactl", &["info"])
}
