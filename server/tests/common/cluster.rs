//! What the cluster tests share (`cluster.rs`, `cluster_relay.rs`): a child process killed on
//! drop, a command inside a namespace host, a free port and a real `redis-server`.

use std::net::IpAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::WAIT;

/// A child process killed (SIGKILL) and reaped on drop.
pub struct Kid(pub Child);

impl Drop for Kid {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `cmd`, inside namespace `ns` when given.
pub fn command(ns: Option<&str>, program: &str) -> Command {
    match ns {
        Some(ns) => {
            let mut c = Command::new("ip");
            c.args(["netns", "exec", ns, program]);
            c
        }
        None => Command::new(program),
    }
}

/// A free TCP port on `ip` (bound, then released).
pub fn free_port(ip: IpAddr) -> u16 {
    std::net::TcpListener::bind((ip, 0))
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// A real `redis-server` on `ip:port` (inside `ns`), keeping nothing on disk; waits until it
/// answers PING.
pub fn redis(ns: Option<&str>, ip: IpAddr, port: u16) -> Kid {
    let child = command(ns, "redis-server")
        .args([
            "--bind",
            &ip.to_string(),
            "--port",
            &port.to_string(),
            "--save",
            "",
            "--appendonly",
            "no",
            "--protected-mode",
            "no",
            "--daemonize",
            "no",
            "--loglevel",
            "warning",
        ])
        .stdout(Stdio::null())
        .spawn()
        .expect("redis-server starts (apt-get install redis-server; see xtask/apt/redis.txt)");
    let kid = Kid(child);
    let deadline = Instant::now() + WAIT;
    loop {
        if let Ok(mut s) = std::net::TcpStream::connect((ip, port)) {
            use std::io::{Read, Write};
            let _ = s.set_read_timeout(Some(Duration::from_secs(1)));
            let mut buf = [0u8; 7];
            if s.write_all(b"PING\r\n").is_ok()
                && s.read_exact(&mut buf).is_ok()
                && &buf == b"+PONG\r\n"
            {
                return kid;
            }
        }
        assert!(Instant::now() < deadline, "redis-server did not answer");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The runtime a cluster test drives its clients with (the nodes are processes of their own).
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}
