//! Whether the machine offers the web view a GPU (docs/studio.md, "Event-to-paint benchmark").
//!
//! Without one, WebKitGTK composites every frame of the window on the CPU (Mesa's llvmpipe), and
//! an element animated without end keeps that going 60 times a second: the `studio_paint`
//! benchmark measured the web view at 70 % of a core with eight rippling seats, 41 % without.
//! The UI then draws still indicators. WebKit hides the WebGL renderer's name ("Apple GPU"), so
//! the web view cannot tell by itself; the Studio looks at the machine.
//!
//! Without a GPU the executable also asks WebKitGTK to paint the page's tiles with Skia on the CPU
//! ([`CPU_PAINTING_VAR`]) instead of through GL on the software rasteriser: the benchmark's
//! event-to-paint delay halved (p50 190 → 92 ms, p99 495 → 212 ms). It gives llvmpipe half the
//! CPUs ([`llvmpipe_threads`]), composites only what changed and scrolls on the main thread
//! ([`webkit_switches`]) and sends the live meters half as often ([`live_meter_interval`]).

use serde::Serialize;

/// How the web view draws.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, specta::Type)]
#[serde(rename_all = "camelCase")]
pub enum RenderMode {
    /// A GPU composites the window (or the platform's web view decides: Windows, macOS).
    Gpu,
    /// No GPU: Mesa's software rasteriser draws every frame on the CPU.
    Software,
}

/// The rule on Linux: software when `LIBGL_ALWAYS_SOFTWARE` is set to anything but `0`/`false`
/// (Mesa then uses llvmpipe even with a GPU), or when no DRM render node (`/dev/dri/renderD*`)
/// exists (no GPU the user may render with).
pub fn linux_render_mode(libgl_always_software: Option<&str>, has_render_node: bool) -> RenderMode {
    let forced = libgl_always_software
        .is_some_and(|v| !matches!(v.trim(), "" | "0" | "false" | "FALSE" | "False"));
    if forced || !has_render_node {
        RenderMode::Software
    } else {
        RenderMode::Gpu
    }
}

/// The WebKitGTK environment variable that makes it paint tiles on the CPU (WebKitGTK ≥ 2.46).
pub const CPU_PAINTING_VAR: &str = "WEBKIT_SKIA_ENABLE_CPU_RENDERING";

/// Mesa's variable for how many threads llvmpipe rasterises with (its default: one per CPU).
pub const LLVMPIPE_THREADS_VAR: &str = "LP_NUM_THREADS";

/// The llvmpipe threads the web view composites with on a machine of `cpus` CPUs: half of them,
/// at least one. With one per CPU (Mesa's default) each composited frame takes every core at
/// once, and the web view's main thread (where a status's handler and React run) and the
/// Studio's threads wait behind it: on the 2-core VM, `studio_paint` (2,000 members, release
/// Studio, runs interleaved) read the handler reached p99 124–574 ms with two threads and
/// 60–80 ms with one, event-to-paint p50 53–80 → 35–61 ms (docs/studio.md, "Seventh round").
/// Machines with more cores were not measured; half keeps the same share free.
pub fn llvmpipe_threads(cpus: usize) -> usize {
    (cpus / 2).max(1)
}

/// The environment the web view should start with in `mode` on a machine of `cpus` CPUs, each
/// variable only where the user has not set it (`user_set`): without a GPU on Linux, CPU painting
/// ([`CPU_PAINTING_VAR`]) and half the CPUs for llvmpipe ([`llvmpipe_threads`]); nothing
/// otherwise.
pub fn webview_env(
    mode: RenderMode,
    cpus: usize,
    user_set: impl Fn(&str) -> bool,
) -> Vec<(&'static str, String)> {
    if !cfg!(target_os = "linux") || mode != RenderMode::Software {
        return Vec::new();
    }
    [
        (CPU_PAINTING_VAR, "1".to_string()),
        (LLVMPIPE_THREADS_VAR, llvmpipe_threads(cpus).to_string()),
    ]
    .into_iter()
    .filter(|(k, _)| !user_set(k))
    .collect()
}

/// How often the live meters (`join_room`'s meter channel) go to the UI in `mode`: ~30 frames a
/// second with a GPU, ~15 without. Each meter frame is a frame the web view composites, and on
/// llvmpipe compositing is most of the web view's CPU (`perf`: ~60 % of its samples in the
/// 2,000-member room); in the saved console page the frames came every 19–20 ms at p50 with
/// meters at 15 a second against 35–60 ms at 30 (docs/studio.md, "Sixth round"). The engine's
/// meters hold the peak since the last frame, so a slower frame misses no clip.
pub fn live_meter_interval(mode: RenderMode) -> std::time::Duration {
    match mode {
        RenderMode::Gpu => crate::meter_service::FRAME_INTERVAL,
        RenderMode::Software => crate::meter_service::FRAME_INTERVAL * 2,
    }
}

/// The WebKitGTK feature switches the Studio sets in `mode` (Linux; `src/webkit_features.rs`;
/// `ONMIC_WEBKIT_FEATURES` overrides them). Without a GPU: composite only what changed, as
/// separate rectangles (WebKitGTK 2.50 tracks damage but redraws the whole window each frame
/// unless asked, and unites the damage into one bounding box by default, which a meter on the
/// left and the chat on the right make the whole window). The `studio_paint` bench, room of 9:
/// event-to-paint p50 38.6/42.2 → 26.5/17.3 ms, p99 90.9/67.4 → 70.5/41.8 ms; 2,000 members:
/// p50 99.7 → 78.5 ms, p99 228 → 220 ms (docs/studio.md, "Fifth round"). And scroll overflow
/// boxes on the main thread (`AsyncOverflowScrolling` off): a composited scroller (the audio and
/// stage columns) is a layer of its own that every frame blends over the page on the CPU; without
/// them llvmpipe took 31–36 % of a core in the 2,000-member room instead of 49–53 %, the web view
/// 61–63 % instead of 75–76 % (docs/studio.md, "Tenth round"). Scrolling a column then repaints
/// it, which a console scrolled now and then can afford.
pub fn webkit_switches(mode: RenderMode) -> Vec<crate::webkit_features::FeatureSwitch> {
    use crate::webkit_features::FeatureSwitch;
    match mode {
        RenderMode::Gpu => Vec::new(),
        RenderMode::Software => vec![
            FeatureSwitch {
                name: "UseDamagingInformationForCompositing".into(),
                enabled: true,
            },
            FeatureSwitch {
                name: "UnifyDamagedRegions".into(),
                enabled: false,
            },
            FeatureSwitch {
                name: "AsyncOverflowScrolling".into(),
                enabled: false,
            },
        ],
    }
}

/// This machine's render mode, looked at once per process (the executable's start, the log
/// line and the UI's `render_mode` command all ask).
pub fn detect() -> RenderMode {
    static MODE: std::sync::OnceLock<RenderMode> = std::sync::OnceLock::new();
    *MODE.get_or_init(look)
}

fn look() -> RenderMode {
    if cfg!(target_os = "linux") {
        let has_render_node = std::fs::read_dir("/dev/dri").is_ok_and(|d| {
            d.flatten()
                .any(|e| e.file_name().to_string_lossy().starts_with("renderD"))
        });
        linux_render_mode(
            std::env::var("LIBGL_ALWAYS_SOFTWARE").ok().as_deref(),
            has_render_node,
        )
    } else {
        RenderMode::Gpu
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn damage_compositing_only_without_a_gpu() {
        assert!(webkit_switches(RenderMode::Gpu).is_empty());
        let sw = webkit_switches(RenderMode::Software);
        let on = |n: &str| sw.iter().find(|s| s.name == n).map(|s| s.enabled);
        assert_eq!(on("UseDamagingInformationForCompositing"), Some(true));
        assert_eq!(on("UnifyDamagedRegions"), Some(false));
        assert_eq!(on("AsyncOverflowScrolling"), Some(false));
    }

    #[test]
    fn cpu_painting_and_fewer_llvmpipe_threads_only_without_a_gpu_and_never_over_the_users_choice()
    {
        let nothing_set = |_: &str| false;
        let want: Vec<(&str, String)> = if cfg!(target_os = "linux") {
            vec![
                (CPU_PAINTING_VAR, "1".into()),
                (LLVMPIPE_THREADS_VAR, "1".into()),
            ]
        } else {
            Vec::new()
        };
        assert_eq!(webview_env(RenderMode::Software, 2, nothing_set), want);
        assert!(webview_env(RenderMode::Gpu, 2, nothing_set).is_empty());
        // The user's own value wins, variable by variable.
        let painting_set = webview_env(RenderMode::Software, 2, |k| k == CPU_PAINTING_VAR);
        assert!(painting_set.iter().all(|(k, _)| *k != CPU_PAINTING_VAR));
        let threads_set = webview_env(RenderMode::Software, 2, |k| k == LLVMPIPE_THREADS_VAR);
        assert!(threads_set.iter().all(|(k, _)| *k != LLVMPIPE_THREADS_VAR));
        assert!(webview_env(RenderMode::Software, 2, |_| true).is_empty());
    }

    #[test]
    fn llvmpipe_gets_half_the_cpus_and_at_least_one() {
        let got: Vec<usize> = [1, 2, 3, 4, 8, 16].map(llvmpipe_threads).to_vec();
        assert_eq!(got, [1, 1, 1, 2, 4, 8]);
    }

    #[test]
    fn software_without_a_render_node_or_when_mesa_is_told_so() {
        assert_eq!(linux_render_mode(None, true), RenderMode::Gpu);
        assert_eq!(linux_render_mode(None, false), RenderMode::Software);
        assert_eq!(linux_render_mode(Some("1"), true), RenderMode::Software);
        assert_eq!(linux_render_mode(Some("true"), true), RenderMode::Software);
        for off in ["0", "false", "", " 0 "] {
            assert_eq!(
                linux_render_mode(Some(off), true),
                RenderMode::Gpu,
                "{off:?}"
            );
        }
    }

    #[test]
    fn live_meters_go_half_as_often_without_a_gpu() {
        let gpu = live_meter_interval(RenderMode::Gpu);
        assert_eq!(gpu, crate::meter_service::FRAME_INTERVAL);
        assert_eq!(live_meter_interval(RenderMode::Software), gpu * 2);
    }
}
