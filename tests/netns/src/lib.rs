//! Tests that run WebRTC (str0m, webrtc-rs, Chromium) may send traffic only to loopback or to
//! network namespaces they create. These helpers re-run the calling test, by name, inside fresh
//! namespaces and report its output; the inner run sees [`INNER`] set and does the work.
//!
//! ```no_run
//! // In a test: `#[test] fn my_test() { ... }`
//! fn my_test() {
//!     if !onmic_netns::inside_netns("my_test") {
//!         return; // the outer run: the inner one passed
//!     }
//!     // ... runs inside a namespace with only `lo` up
//! }
//! # my_test();
//! ```
//!
//! Root (or `CAP_SYS_ADMIN`) and `ip` from iproute2 are needed; without them the test fails and
//! says so.

use std::process::Command;

/// Set in the environment of the inner run.
pub const INNER: &str = "ONMIC_NETNS_INNER";
/// For the inner run of [`inside_two_hosts`]: the server host's namespace name.
pub const SERVER_NS: &str = "ONMIC_TEST_SERVER_NS";
/// The server host's address in [`inside_two_hosts`].
pub const SERVER_IP: &str = "10.77.0.1";
/// The client host's address in [`inside_two_hosts`].
pub const CLIENT_IP: &str = "10.77.0.2";
/// The client host's end of the veth pair in [`inside_two_hosts`].
pub const CLIENT_VETH: &str = "onmic-c0";

fn ip(args: &[&str]) -> std::process::Output {
    Command::new("ip")
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("running `ip {}`: {e} (install iproute2)", args.join(" ")))
}

fn ip_ok(args: &[&str]) {
    let out = ip(args);
    assert!(
        out.status.success(),
        "`ip {}` failed (network-namespace tests need root): {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Namespaces deleted on drop, even when the test panics.
struct Namespaces(Vec<String>);

impl Namespaces {
    fn add(&mut self, name: String) -> String {
        sweep_stale();
        ip_ok(&["netns", "add", &name]);
        self.0.push(name.clone());
        ip_ok(&["netns", "exec", &name, "ip", "link", "set", "lo", "up"]);
        name
    }
}

impl Drop for Namespaces {
    fn drop(&mut self) {
        for n in &self.0 {
            let _ = Command::new("ip").args(["netns", "del", n]).status();
        }
    }
}

/// Deletes namespaces left by test processes that were killed before their drop ran (a timeout's
/// SIGKILL): `onmic-<pid>-…` whose process is gone.
fn sweep_stale() {
    let Ok(dir) = std::fs::read_dir("/var/run/netns") else {
        return;
    };
    for entry in dir.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) = name
            .strip_prefix("onmic-")
            .and_then(|r| r.split('-').next())
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        if !std::path::Path::new(&format!("/proc/{pid}")).exists() {
            let _ = Command::new("ip").args(["netns", "del", &name]).status();
        }
    }
}

/// A namespace name unique to this process and test (tests of one binary run in parallel).
fn tag(test: &str) -> String {
    let h = test
        .bytes()
        .fold(7u32, |h, b| h.wrapping_mul(31).wrapping_add(b.into()));
    format!("onmic-{}-{:06x}", std::process::id(), h & 0xff_ffff)
}

/// Runs this binary's test `test` inside namespace `netns` with `envs`, and fails with its output
/// unless it passed.
fn run_inner(netns: &str, test: &str, envs: &[(&str, String)]) {
    let exe = std::env::current_exe().expect("test binary path");
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", netns])
        .arg(exe)
        // `--include-ignored`: an ignored test run by name (`-- --ignored NAME`) runs inside too.
        .args([
            "--exact",
            test,
            "--include-ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(INNER, "1");
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("running the test inside the namespace");
    let text = format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "inside the namespace:\n{text}");
    assert!(
        text.contains("1 passed"),
        "the inner test did not run:\n{text}"
    );
    eprintln!("{text}");
}

/// Runs `test` again inside a fresh namespace with only `lo` up, and fails with its output if it
/// fails. Returns `true` when already inside (the caller then runs the scenario), `false` after
/// the inner run passed.
pub fn inside_netns(test: &str) -> bool {
    inside_netns_with(test, &[])
}

/// [`inside_netns`] with extra environment variables for the inner run.
pub fn inside_netns_with(test: &str, envs: &[(&str, String)]) -> bool {
    if std::env::var_os(INNER).is_some() {
        return true;
    }
    let mut spaces = Namespaces(Vec::new());
    let name = spaces.add(tag(test));
    run_inner(&name, test, envs);
    false
}

/// Runs `test` again inside a "client host" namespace joined by a veth pair to a "server host"
/// namespace (client [`CLIENT_IP`], server [`SERVER_IP`]; the server namespace's name is in
/// [`SERVER_NS`] for the inner run, see [`enter_netns`]). Returns `true` when already inside.
pub fn inside_two_hosts(test: &str, envs: &[(&str, String)]) -> bool {
    if std::env::var_os(INNER).is_some() {
        return true;
    }
    let base = tag(test);
    let mut spaces = Namespaces(Vec::new());
    let s = spaces.add(format!("{base}-s"));
    let c = spaces.add(format!("{base}-c"));
    ip_ok(&[
        "link",
        "add",
        "onmic-s0",
        "netns",
        &s,
        "type",
        "veth",
        "peer",
        "name",
        CLIENT_VETH,
        "netns",
        &c,
    ]);
    ip_ok(&[
        "-n",
        &s,
        "addr",
        "add",
        &format!("{SERVER_IP}/24"),
        "dev",
        "onmic-s0",
    ]);
    ip_ok(&[
        "-n",
        &c,
        "addr",
        "add",
        &format!("{CLIENT_IP}/24"),
        "dev",
        CLIENT_VETH,
    ]);
    ip_ok(&["-n", &s, "link", "set", "onmic-s0", "up"]);
    ip_ok(&["-n", &c, "link", "set", CLIENT_VETH, "up"]);
    let mut all = envs.to_vec();
    all.push((SERVER_NS, s.clone()));
    run_inner(&c, test, &all);
    false
}

/// For the inner run of [`inside_hosts`]: the hosts' namespace names, comma-separated, in order.
pub const HOSTS_NS: &str = "ONMIC_TEST_HOSTS_NS";

/// The address of host `i` (0-based) of [`inside_hosts`]: `10.78.0.<i + 1>`.
pub fn host_ip(i: usize) -> std::net::IpAddr {
    std::net::IpAddr::from([10, 78, 0, u8::try_from(i + 1).expect("at most 254 hosts")])
}

/// The namespace names of the hosts of [`inside_hosts`], from the inner run's environment.
pub fn host_namespaces() -> Vec<String> {
    std::env::var(HOSTS_NS)
        .unwrap_or_default()
        .split(',')
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

/// Runs `test` again inside the last of `hosts` fresh "hosts": namespaces joined by one bridge
/// (a switch, in a namespace of its own), host `i` at [`host_ip`]`(i)`/24 with only `lo` and its
/// link to the bridge. The inner run finds every host's namespace name in [`HOSTS_NS`]
/// ([`host_namespaces`]) and starts processes there with `ip netns exec`. Returns `true` when
/// already inside.
pub fn inside_hosts(test: &str, hosts: usize, envs: &[(&str, String)]) -> bool {
    if std::env::var_os(INNER).is_some() {
        return true;
    }
    assert!((1..=254).contains(&hosts), "1-254 hosts");
    let base = tag(test);
    let mut spaces = Namespaces(Vec::new());
    let switch = spaces.add(format!("{base}-sw"));
    ip_ok(&["-n", &switch, "link", "add", "br0", "type", "bridge"]);
    ip_ok(&["-n", &switch, "link", "set", "br0", "up"]);
    let mut names = Vec::new();
    for i in 0..hosts {
        let host = spaces.add(format!("{base}-h{i}"));
        let (inside, port) = (format!("onmic-h{i}"), format!("onmic-p{i}"));
        ip_ok(&[
            "link", "add", &inside, "netns", &host, "type", "veth", "peer", "name", &port, "netns",
            &switch,
        ]);
        let addr = format!("{}/24", host_ip(i));
        ip_ok(&["-n", &host, "addr", "add", &addr, "dev", &inside]);
        ip_ok(&["-n", &host, "link", "set", &inside, "up"]);
        ip_ok(&["-n", &switch, "link", "set", &port, "master", "br0"]);
        ip_ok(&["-n", &switch, "link", "set", &port, "up"]);
        names.push(host);
    }
    let mut all = envs.to_vec();
    all.push((HOSTS_NS, names.join(",")));
    let last = names.last().expect("at least one host").clone();
    run_inner(&last, test, &all);
    false
}

/// Moves the calling thread into network namespace `name` (sockets it opens afterwards, and
/// threads it spawns, live there).
pub fn enter_netns(name: &str) {
    let f = std::fs::File::open(format!("/var/run/netns/{name}"))
        .unwrap_or_else(|e| panic!("opening namespace {name}: {e}"));
    nix::sched::setns(f, nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
}

/// Cuts (`false`) or restores (`true`) the client host's link to the server host, from inside
/// the client host of [`inside_two_hosts`].
pub fn set_link(up: bool) {
    ip_ok(&["link", "set", CLIENT_VETH, if up { "up" } else { "down" }]);
}

/// For bench binaries (no test harness): runs this executable again, with the same arguments and
/// output, inside a fresh loopback-only namespace with `envs`, and fails unless it succeeded.
/// Returns `true` when already inside (the caller then runs the bench), `false` afterwards.
pub fn bench_inside_netns(envs: &[(&str, String)]) -> bool {
    if std::env::var_os(INNER).is_some() {
        return true;
    }
    let mut spaces = Namespaces(Vec::new());
    let name = spaces.add(tag("bench"));
    let exe = std::env::current_exe().expect("bench binary path");
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", &name])
        .arg(exe)
        .args(std::env::args().skip(1))
        .env(INNER, "1");
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let status = cmd
        .status()
        .expect("running the bench inside the namespace");
    assert!(status.success(), "the bench failed inside the namespace");
    false
}
