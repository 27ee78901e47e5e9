//! Real key events on the test display (`xdotool`, through the X server's XTest extension): what
//! a person pressing keys produces, for the Studio's window and for global shortcut grabs.

use std::process::Command;

fn xdotool(args: &[&str]) -> anyhow::Result<String> {
    crate::required_env("DISPLAY");
    let out = Command::new("xdotool")
        .args(args)
        .output()
        .map_err(|e| anyhow::anyhow!("xdotool cannot run ({e}): apt-get install xdotool"))?;
    anyhow::ensure!(
        out.status.success(),
        "xdotool {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Gives the keyboard focus to the Studio's window (there is no window manager under Xvfb).
pub fn focus_studio() -> anyhow::Result<()> {
    let ids = xdotool(&["search", "--onlyvisible", "--name", "Onmic Studio"])?;
    let id = ids
        .lines()
        .last()
        .ok_or_else(|| anyhow::anyhow!("no Onmic Studio window on the display"))?
        .to_owned();
    xdotool(&["windowfocus", "--sync", &id]).map(drop)
}

/// Presses and releases `combo` (xdotool syntax: `ctrl+shift+m`, `F9`).
pub fn tap(combo: &str) -> anyhow::Result<()> {
    xdotool(&["key", "--clearmodifiers", combo]).map(drop)
}

/// Presses `combo` and keeps it down.
pub fn down(combo: &str) -> anyhow::Result<()> {
    xdotool(&["keydown", combo]).map(drop)
}

/// Releases `combo`.
pub fn up(combo: &str) -> anyhow::Result<()> {
    xdotool(&["keyup", combo]).map(drop)
}

/// Types `text` into whatever has the focus.
pub fn type_text(text: &str) -> anyhow::Result<()> {
    xdotool(&["type", "--delay", "20", text]).map(drop)
}
