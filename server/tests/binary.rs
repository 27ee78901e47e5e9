//! The real `onmic-server` binary: `--help`, config file + environment, `/health`, and clean
//! shutdown on SIGTERM and SIGINT.

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

const BIN: &str = env!("CARGO_BIN_EXE_onmic-server");

/// A started server with its URL and its stderr collected in the background.
struct Started {
    child: Child,
    url: String,
    stderr: mpsc::Receiver<String>,
}

fn start(args: &[&str], envs: &[(&str, &str)]) -> Started {
    let mut cmd = Command::new(BIN);
    cmd.args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .env_remove("RUST_LOG")
        // Keep test runs from leaving a database in the source tree.
        .env("ONMIC_DATABASE", ":memory:");
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("the server binary starts");
    let stdout = child.stdout.take().expect("piped stdout");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(url) = line.strip_prefix("onmic-server listening on ") {
                let _ = tx.send(url.to_owned());
            }
        }
    });
    let mut stderr = child.stderr.take().expect("piped stderr");
    let (etx, erx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        let _ = etx.send(text);
    });
    let url = match rx.recv_timeout(Duration::from_secs(30)) {
        Ok(url) => url,
        Err(_) => {
            let _ = child.kill();
            panic!("no 'listening' line: {}", erx.recv().unwrap_or_default());
        }
    };
    Started {
        child,
        url,
        stderr: erx,
    }
}

fn health(url: &str) -> serde_json::Value {
    reqwest::blocking::get(format!("{url}/health"))
        .expect("GET /health answers")
        .error_for_status()
        .expect("/health is 200")
        .json()
        .expect("/health is JSON")
}

fn stop_with(started: Started, signal: Signal) -> (ExitStatus, String) {
    let Started {
        mut child, stderr, ..
    } = started;
    let pid = Pid::from_raw(i32::try_from(child.id()).expect("pid fits"));
    kill(pid, signal).expect("signal delivered");
    let log = stderr
        .recv_timeout(Duration::from_secs(20))
        .expect("the server exits after the signal");
    let status = child.wait().expect("exit status");
    (status, log)
}

#[test]
fn help_describes_the_server_and_its_options() {
    let out = Command::new(BIN).arg("--help").output().expect("runs");
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    for needle in [
        "Onmic room server",
        "--config",
        "--listen",
        "serve",
        "Usage",
    ] {
        assert!(text.contains(needle), "--help lacks {needle:?}:\n{text}");
    }
}

#[test]
fn health_answers_with_the_configured_node_name() {
    let s = start(
        &["--listen", "127.0.0.1:0"],
        &[("ONMIC_NODE_NAME", "node-from-env")],
    );
    let h = health(&s.url);
    assert_eq!(h["status"], "ok");
    assert_eq!(h["node"], "node-from-env");
    assert_eq!(h["version"], env!("CARGO_PKG_VERSION"));
    let (status, log) = stop_with(s, Signal::SIGTERM);
    assert!(status.success(), "exit {status:?}\n{log}");
}

#[test]
fn config_file_is_read_and_environment_overrides_it() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("onmic.toml");
    std::fs::write(
        &file,
        "listen = \"127.0.0.1:0\"\nnode_name = \"node-from-file\"\nlog = \"debug\"\n",
    )
    .expect("write config");
    let file = file.to_str().expect("utf-8 path");

    let s = start(&["--config", file], &[]);
    assert_eq!(health(&s.url)["node"], "node-from-file");
    let (status, log) = stop_with(s, Signal::SIGTERM);
    assert!(status.success());
    assert!(
        log.contains("DEBUG"),
        "log = \"debug\" from the file took effect:\n{log}"
    );

    let s = start(
        &[],
        &[("ONMIC_CONFIG", file), ("ONMIC_NODE_NAME", "node-from-env")],
    );
    assert_eq!(health(&s.url)["node"], "node-from-env");
    stop_with(s, Signal::SIGTERM);

    let out = Command::new(BIN)
        .args(["--config", file, "config"])
        .env("ONMIC_LOG", "warn")
        .output()
        .expect("runs");
    let effective: serde_json::Value =
        serde_json::from_slice(&out.stdout).expect("config prints JSON");
    assert_eq!(effective["node_name"], "node-from-file");
    assert_eq!(effective["log"], "warn");
}

#[test]
fn bad_config_is_a_clear_error_not_a_panic() {
    let dir = tempfile::tempdir().expect("temp dir");
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "listen = 12\n").expect("write");
    for args in [
        vec!["--config", bad.to_str().expect("utf-8")],
        vec!["--config", "/nonexistent/onmic.toml"],
    ] {
        let out = Command::new(BIN).args(&args).output().expect("runs");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{err}");
        assert!(err.starts_with("onmic-server: "), "{err}");
        assert!(!err.contains("panicked"), "{err}");
    }
    let out = Command::new(BIN)
        .env("ONMIC_LISTEN", "nowhere")
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .to_lowercase()
            .contains("listen")
    );
}

#[test]
fn sigterm_and_sigint_shut_down_cleanly() {
    for signal in [Signal::SIGTERM, Signal::SIGINT] {
        let s = start(&["--listen", "127.0.0.1:0"], &[]);
        let url = s.url.clone();
        health(&url);
        let (status, log) = stop_with(s, signal);
        assert!(status.success(), "{signal}: exit {status:?}\n{log}");
        assert!(
            log.contains(&format!("signal=\"{}\"", signal.as_str())),
            "{log}"
        );
        assert!(log.contains("shut down cleanly"), "{log}");
        assert!(
            reqwest::blocking::get(format!("{url}/health")).is_err(),
            "nothing listens after shutdown"
        );
    }
}

#[test]
fn a_taken_port_is_a_clear_error() {
    let s = start(&["--listen", "127.0.0.1:0"], &[]);
    let addr = s.url.trim_start_matches("http://").to_owned();
    let out = Command::new(BIN)
        .args(["--listen", &addr])
        .output()
        .expect("runs");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("cannot listen on"), "{err}");
    stop_with(s, Signal::SIGTERM);
}

#[test]
fn placeholder_secrets_are_refused_on_a_public_address() {
    let out = Command::new(BIN)
        .args(["--listen", "0.0.0.0:0"])
        .env("ONMIC_DATABASE", ":memory:")
        .output()
        .expect("runs");
    assert!(!out.status.success(), "it must not start");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("placeholder secrets") && err.contains("ONMIC_TOKEN_SECRET"),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");
}
