//! The DSP thread's real-time priority ([`EngineConfig::realtime`]), as the OS grants or refuses
//! it: granted wherever the kernel lets this process use `SCHED_FIFO` (asked directly), and the
//! thread's policy is then `SCHED_FIFO` (read back from `/proc`, not from the engine's word);
//! refused (a process without `CAP_SYS_NICE` and without an `rtprio` limit, as a
//! desktop user without rtkit or limits.conf), the engine says why and processes audio at normal
//! priority; not asked, the thread is left alone. Linux only: the other systems' mechanisms
//! (MMCSS, time constraints) are the crate's and are not run here (docs/platforms.md).
#![cfg(target_os = "linux")]

use std::process::Command;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use onmic_audio::BLOCK_FRAMES;
use onmic_audio::engine::{EngineConfig, EngineHandle, EngineIo, Realtime, start};

/// The child run of [`refused_without_the_right_keeps_processing_at_normal_priority`].
const CHILD: &str = "ONMIC_REALTIME_CHILD";

/// `SCHED_OTHER` and `SCHED_FIFO` as `/proc/<pid>/task/<tid>/stat` field 41 shows them.
const SCHED_OTHER: u32 = 0;
const SCHED_FIFO: u32 = 1;

/// Whether the kernel lets this process's children run at `SCHED_FIFO`, asked directly (not
/// through the crate the engine uses): `chrt -f 1 true` (util-linux) inherits this process's
/// capabilities, limits and cgroup. Root in a container whose cgroup has no real-time budget is
/// refused although it holds `CAP_SYS_NICE`, so the capability alone would not say.
fn kernel_allows_fifo() -> bool {
    Command::new("chrt")
        .args(["-f", "1", "true"])
        .stderr(std::process::Stdio::null())
        .status()
        .expect("chrt (util-linux) runs")
        .success()
}

/// Whether this process holds capability `cap` (its bit in `/proc/self/status`'s `CapEff`).
fn has_capability(cap: u32) -> bool {
    let status = std::fs::read_to_string("/proc/self/status").expect("status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        .is_some_and(|eff| eff & (1 << cap) != 0)
}

/// The scheduling policy of this process's thread named `name`.
fn policy_of(name: &str) -> Option<u32> {
    for task in std::fs::read_dir("/proc/self/task").expect("tasks") {
        let dir = task.expect("task").path();
        let comm = std::fs::read_to_string(dir.join("comm")).unwrap_or_default();
        if comm.trim() != name {
            continue;
        }
        let stat = std::fs::read_to_string(dir.join("stat")).ok()?;
        // Fields after the command's closing parenthesis start at field 3.
        let rest = &stat[stat.rfind(')')? + 2..];
        return rest.split_whitespace().nth(41 - 3)?.parse().ok();
    }
    None
}

/// Starts an engine and feeds it 0.5 s of silence in real time; returns what it reported.
fn run(realtime: bool) -> (Realtime, Option<u32>, u64) {
    let (mut handle, mut io): (EngineHandle, EngineIo) = start(EngineConfig {
        realtime,
        capture_channels: 1,
        ..EngineConfig::default()
    })
    .expect("engine");
    let t0 = Instant::now();
    let mut policy = None;
    for k in 0..50u32 {
        let due = t0 + Duration::from_millis(10 * u64::from(k));
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        if let Ok(chunk) = io.capture.write_chunk_uninit(BLOCK_FRAMES) {
            chunk.fill_from_iter(std::iter::repeat(0.0));
        }
        if let Ok(chunk) = io.output.read_chunk(io.output.slots()) {
            chunk.commit_all();
        }
        if k == 25 {
            policy = policy_of("onmic-dsp");
        }
    }
    let rt = handle
        .stats()
        .realtime()
        .cloned()
        .expect("the DSP thread started");
    let blocks = handle.stats().blocks.load(Ordering::Relaxed);
    handle.stop();
    (rt, policy, blocks)
}

#[test]
fn granted_where_the_process_may_and_the_thread_really_runs_fifo() {
    if std::env::var_os(CHILD).is_some() {
        return; // the child runs only the refusal case
    }
    let (rt, policy, blocks) = run(true);
    println!("asked: {rt:?}, policy {policy:?}, {blocks} blocks");
    if kernel_allows_fifo() {
        assert_eq!(rt, Realtime::Granted);
        assert_eq!(policy, Some(SCHED_FIFO), "the DSP thread's policy in /proc");
    } else {
        // Without the right (a developer's desktop session): the refusal case's behaviour,
        // which the child below checks everywhere.
        assert!(matches!(rt, Realtime::Refused(_)), "{rt:?}");
        assert_eq!(policy, Some(SCHED_OTHER));
    }
    assert!(blocks >= 40, "the engine processed {blocks} of 50 blocks");

    let (rt, policy, blocks) = run(false);
    println!("not asked: {rt:?}, policy {policy:?}, {blocks} blocks");
    assert_eq!(rt, Realtime::NotAsked);
    assert_eq!(policy, Some(SCHED_OTHER));
    assert!(blocks >= 40, "the engine processed {blocks} of 50 blocks");
}

#[test]
fn refused_without_the_right_keeps_processing_at_normal_priority() {
    if std::env::var_os(CHILD).is_some() {
        // In the child: no CAP_SYS_NICE, RLIMIT_RTPRIO 0.
        assert!(
            !kernel_allows_fifo(),
            "the child still may use real-time scheduling"
        );
        let (rt, policy, blocks) = run(true);
        println!("child: {rt:?}, policy {policy:?}, {blocks} blocks");
        match &rt {
            Realtime::Refused(why) => assert!(
                why.contains("not permitted"),
                "the reason names the permission: {why}"
            ),
            other => panic!("expected a refusal, got {other:?}"),
        }
        assert_eq!(policy, Some(SCHED_OTHER));
        assert!(blocks >= 40, "the engine processed {blocks} of 50 blocks");
        return;
    }
    // The same test binary, this test only, without the right to real-time scheduling: the
    // rtprio limit set to 0 (`prlimit`, util-linux) and, where this process holds them (root),
    // CAP_SYS_NICE dropped from the bounding set so that the exec does not grant it (`setpriv`,
    // util-linux; dropping needs CAP_SETPCAP, which a process without CAP_SYS_NICE has no need
    // of).
    let exe = std::env::current_exe().expect("exe");
    const CAP_SETPCAP: u32 = 8;
    let mut cmd = Command::new("prlimit");
    cmd.args(["--rtprio=0:0", "--"]);
    if has_capability(CAP_SETPCAP) {
        cmd.args([
            "setpriv",
            "--bounding-set=-sys_nice",
            "--inh-caps=-sys_nice",
            "--",
        ]);
    }
    let out = cmd
        .arg(&exe)
        .args([
            "--exact",
            "refused_without_the_right_keeps_processing_at_normal_priority",
            "--nocapture",
        ])
        .env(CHILD, "1")
        .output()
        .expect("prlimit and setpriv (util-linux) run the child");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    println!("{text}");
    assert!(out.status.success(), "the child failed: {text}");
    assert!(
        text.contains("1 passed"),
        "the child ran the refusal test: {text}"
    );
}
