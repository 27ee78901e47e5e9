//! A private PostgreSQL cluster for one test: `initdb` in a temporary directory, `postgres`
//! listening only on a Unix socket in that directory (no TCP port, so parallel tests never
//! collide), stopped (fast shutdown) and removed on drop. PostgreSQL refuses to run as root, so
//! as root (CI) the server runs as the `postgres` system user (Debian's `postgresql` package
//! creates it; `xtask/apt/postgres.txt`). The binaries are found in `ONMIC_PG_BIN` or the
//! newest `/usr/lib/postgresql/<version>/bin`.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::{Pid, User, chown, geteuid};

pub struct PgCluster {
    dir: tempfile::TempDir,
    bin: PathBuf,
    owner: Option<User>,
    child: Option<Child>,
    tcp: Option<(std::net::IpAddr, u16)>,
}

fn pg_bin() -> PathBuf {
    if let Some(dir) = std::env::var_os("ONMIC_PG_BIN") {
        return PathBuf::from(dir);
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|dir| {
            dir.filter_map(Result::ok)
                .filter_map(|e| {
                    let v = e.file_name().to_str()?.parse().ok()?;
                    Some((v, e.path().join("bin")))
                })
                .filter(|(_, bin)| bin.join("postgres").is_file())
                .collect()
        })
        .unwrap_or_default();
    versions.sort();
    versions.pop().map(|(_, bin)| bin).expect(
        "PostgreSQL is not installed (no /usr/lib/postgresql/*/bin/postgres): apt-get install postgresql, or set ONMIC_PG_BIN",
    )
}

impl PgCluster {
    /// A fresh cluster with durability settings fit for tests (no fsync: the data survives a
    /// crash of the processes under test, not of the machine).
    pub fn start() -> PgCluster {
        Self::start_with(&["fsync=off", "full_page_writes=off"])
    }

    /// A fresh cluster with `settings` (`name=value`) on the `postgres` command line.
    pub fn start_with(settings: &[&str]) -> PgCluster {
        Self::start_on(None, settings)
    }

    /// A fresh cluster (test durability settings) that also listens on TCP `ip:5432` inside
    /// network namespace `ns` (a host of `onmic_netns::inside_hosts`), accepting any address
    /// without a password, as another host's database server; [`PgCluster::tcp_url`] names it.
    /// (PostgreSQL's default port, so its Unix socket keeps the name the tools here expect.)
    pub fn start_in(ns: &str, ip: std::net::IpAddr) -> PgCluster {
        Self::start_on(Some((ns, ip, 5432)), &["fsync=off", "full_page_writes=off"])
    }

    fn start_on(tcp: Option<(&str, std::net::IpAddr, u16)>, settings: &[&str]) -> PgCluster {
        let bin = pg_bin();
        let dir = tempfile::Builder::new()
            .prefix("onmic-pg-")
            .tempdir()
            .expect("temporary directory");
        let owner = geteuid().is_root().then(|| {
            User::from_name("postgres")
                .expect("reading the user database")
                .expect("running as root, PostgreSQL needs the postgres system user (apt-get install postgresql)")
        });
        if let Some(u) = &owner {
            chown(dir.path(), Some(u.uid), Some(u.gid)).expect("chown the cluster directory");
        }
        let mut cluster = PgCluster {
            dir,
            bin,
            owner,
            child: None,
            tcp: None,
        };
        let data = cluster.data_dir();
        let out = cluster
            .command("initdb")
            .arg("-D")
            .arg(&data)
            .args([
                "-U",
                "onmic",
                "--auth=trust",
                "-E",
                "UTF8",
                "--no-locale",
                "--no-sync",
            ])
            .output()
            .expect("initdb runs");
        assert!(
            out.status.success(),
            "initdb failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let log = std::fs::File::create(cluster.dir.path().join("postgres.log")).expect("log");
        let mut cmd = match tcp {
            None => cluster.command("postgres"),
            Some((ns, _, _)) => {
                // Entering a namespace needs root, so `ip netns exec` runs as root and
                // `setpriv` drops to the postgres user; both exec, so the pid is postgres'.
                let mut cmd = Command::new("ip");
                cmd.args(["netns", "exec", ns]);
                if let Some(u) = &cluster.owner {
                    cmd.arg("setpriv")
                        .arg(format!("--reuid={}", u.uid))
                        .arg(format!("--regid={}", u.gid))
                        .arg("--clear-groups");
                }
                cmd.arg(cluster.bin.join("postgres"));
                cmd
            }
        };
        cmd.arg("-D").arg(&data).arg("-k").arg(cluster.dir.path());
        match tcp {
            None => {
                cmd.args(["-c", "listen_addresses="]);
            }
            Some((_, ip, port)) => {
                use std::io::Write;
                let mut hba = std::fs::OpenOptions::new()
                    .append(true)
                    .open(data.join("pg_hba.conf"))
                    .expect("pg_hba.conf");
                writeln!(hba, "host all all 0.0.0.0/0 trust").expect("pg_hba.conf written");
                cmd.args(["-c", &format!("listen_addresses={ip}")])
                    .args(["-c", &format!("port={port}")]);
                cluster.tcp = Some((ip, port));
            }
        }
        for s in settings {
            cmd.args(["-c", s]);
        }
        let child = cmd
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("postgres starts");
        cluster.child = Some(child);
        cluster.wait_ready();
        cluster
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn command(&self, program: &str) -> Command {
        let mut cmd = Command::new(self.bin.join(program));
        if let Some(u) = &self.owner {
            // Executes as that user directly (std drops root's supplementary groups too).
            cmd.uid(u.uid.as_raw()).gid(u.gid.as_raw());
        }
        cmd
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("postgres.log")).unwrap_or_default()
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let ready = Command::new(self.bin.join("pg_isready"))
                .arg("-q")
                .arg("-h")
                .arg(self.dir.path())
                .status()
                .is_ok_and(|s| s.success());
            if ready {
                return;
            }
            if let Some(Ok(Some(status))) = self.child.as_mut().map(Child::try_wait) {
                panic!("postgres exited ({status}):\n{}", self.log());
            }
            assert!(
                Instant::now() < deadline,
                "postgres not ready in 60 s:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The socket directory.
    pub fn socket_dir(&self) -> &Path {
        self.dir.path()
    }

    /// Creates database `name` and returns its connection string.
    pub fn database(&self, name: &str) -> String {
        let out = Command::new(self.bin.join("createdb"))
            .arg("-h")
            .arg(self.dir.path())
            .args(["-U", "onmic", name])
            .output()
            .expect("createdb runs");
        assert!(
            out.status.success(),
            "createdb {name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        self.url(name)
    }

    /// The connection string of database `name`.
    pub fn url(&self, name: &str) -> String {
        format!(
            "host={} user=onmic dbname={name}",
            self.dir.path().display()
        )
    }

    /// The TCP connection string of database `name` ([`PgCluster::start_in`]).
    pub fn tcp_url(&self, name: &str) -> String {
        let (ip, port) = self.tcp.expect("started with start_in");
        format!("host={ip} port={port} user=onmic dbname={name}")
    }

    /// Runs SQL in database `name` with `psql`; panics with its message if it fails.
    pub fn sql(&self, name: &str, sql: &str) -> String {
        let out = Command::new(self.bin.join("psql"))
            .arg("-h")
            .arg(self.dir.path())
            .args([
                "-U",
                "onmic",
                "-d",
                name,
                "-v",
                "ON_ERROR_STOP=1",
                "-At",
                "-c",
                sql,
            ])
            .output()
            .expect("psql runs");
        assert!(
            out.status.success(),
            "psql {sql}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    /// Pauses the whole cluster (SIGSTOP): every query waits until [`PgCluster::resume`].
    pub fn pause(&self) {
        self.signal_all(Signal::SIGSTOP);
    }

    /// Resumes a paused cluster (SIGCONT).
    pub fn resume(&self) {
        self.signal_all(Signal::SIGCONT);
    }

    /// The postmaster and its children (backends, checkpointer, ...): the postmaster's pid
    /// and every process whose parent it is.
    fn signal_all(&self, signal: Signal) {
        let Some(child) = &self.child else { return };
        let main = child.id();
        let mut pids = vec![main];
        if let Ok(dir) = std::fs::read_dir("/proc") {
            for e in dir.filter_map(Result::ok) {
                let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
                    continue;
                };
                let stat = std::fs::read_to_string(e.path().join("stat")).unwrap_or_default();
                // "pid (comm) state ppid ...": comm may hold spaces, so split after the ')'.
                let ppid = stat
                    .rsplit_once(')')
                    .and_then(|(_, rest)| rest.split_whitespace().nth(1))
                    .and_then(|p| p.parse::<u32>().ok());
                if ppid == Some(main) {
                    pids.push(pid);
                }
            }
        }
        for pid in pids {
            let _ = kill(Pid::from_raw(pid as i32), signal);
        }
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        self.resume();
        // Fast shutdown: roll back open transactions, disconnect, stop.
        let _ = kill(Pid::from_raw(child.id() as i32), Signal::SIGINT);
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
    }
}
