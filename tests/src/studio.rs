//! The real Studio window, driven over WebDriver (`tauri-driver` → `WebKitWebDriver` → the
//! app's webview), as a user would click it.

use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};

/// A running Studio under WebDriver. Call [`Studio::quit`] at the end; dropping it also stops
/// the driver (and with it the app).
pub struct Studio {
    /// The WebDriver client.
    pub client: Client,
    driver: Child,
    config_home: Option<tempfile::TempDir>,
}

/// Path of the Studio binary that `cargo xtask test` built.
pub fn studio_bin() -> PathBuf {
    PathBuf::from(crate::required_env("ONMIC_STUDIO_BIN"))
}

impl Studio {
    /// Starts `tauri-driver` with `env` added to the app's environment (the driver passes its
    /// own environment on), opens a session on the Studio, and waits for the UI to render.
    /// Settings live in a fresh config directory.
    pub async fn launch(env: &[(&str, &str)]) -> anyhow::Result<Self> {
        Self::launch_with_config(env, tempfile::tempdir()?).await
    }

    /// Like [`Studio::launch`], with settings in `config_home` (reuse one to test that settings
    /// survive a restart).
    pub async fn launch_with_config(
        env: &[(&str, &str)],
        config_home: tempfile::TempDir,
    ) -> anyhow::Result<Self> {
        Self::launch_app(&studio_bin(), env, config_home).await
    }

    /// Like [`Studio::launch_with_config`], the driver starting `app` (a wrapper that execs the
    /// Studio, to run it under other limits) instead of the Studio itself.
    pub async fn launch_app(
        app: &std::path::Path,
        env: &[(&str, &str)],
        config_home: tempfile::TempDir,
    ) -> anyhow::Result<Self> {
        crate::required_env("DISPLAY");
        let tauri_driver = crate::required_env("ONMIC_TAURI_DRIVER");
        let webkit_driver = crate::required_env("ONMIC_WEBKIT_DRIVER");
        let port = crate::free_port();
        let native_port = crate::free_port();
        let mut cmd = Command::new(tauri_driver);
        cmd.args([
            "--port",
            &port.to_string(),
            "--native-port",
            &native_port.to_string(),
        ])
        .args(["--native-driver", &webkit_driver])
        .env("XDG_CONFIG_HOME", config_home.path())
        // The local room's database and secrets, kept out of the real home.
        .env("XDG_DATA_HOME", config_home.path().join("data"))
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        // `ONMIC_STUDIO_STDERR=FILE`: the driver's and the Studio's log, for a diagnosis.
        .stderr(
            std::env::var_os("ONMIC_STUDIO_STDERR")
                .and_then(|f| std::fs::File::create(f).ok())
                .map_or_else(Stdio::null, Stdio::from),
        );
        for (k, v) in env {
            cmd.env(k, v);
        }
        // Its own process group, so that a failing test can stop the driver, WebKitWebDriver and
        // the app together.
        std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
        let mut driver = cmd.spawn()?;
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if Instant::now() > deadline {
                kill_group(&mut driver);
                anyhow::bail!("tauri-driver did not open port {port}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let mut caps = serde_json::Map::new();
        caps.insert(
            "tauri:options".into(),
            serde_json::json!({ "application": app.to_string_lossy() }),
        );
        caps.insert("browserName".into(), "wry".into());
        let client = match ClientBuilder::native()
            .capabilities(caps)
            .connect(&format!("http://127.0.0.1:{port}"))
            .await
        {
            Ok(c) => c,
            Err(e) => {
                kill_group(&mut driver);
                anyhow::bail!("cannot open a WebDriver session on the Studio: {e}");
            }
        };
        let studio = Self {
            client,
            driver,
            config_home: Some(config_home),
        };
        studio
            .client
            .wait()
            .at_most(Duration::from_secs(30))
            .for_element(Locator::Css(".topbar"))
            .await?;
        Ok(studio)
    }

    /// Saves a screenshot of the window as `target/screenshots/NAME.png`, once what the DOM holds
    /// now has been painted: WebKit's snapshot is the last composited frame, so a screenshot
    /// taken right after a DOM change the test just read (a badge's `data-count`) could show the
    /// frame before it. Two animation frames later the change is on screen.
    pub async fn screenshot(&self, name: &str) -> anyhow::Result<PathBuf> {
        let painted = self
            .client
            .execute_async(
                "const done = arguments[arguments.length - 1]; \
                 const t = setTimeout(() => done(false), 3000); \
                 requestAnimationFrame(() => requestAnimationFrame(() => { clearTimeout(t); done(true); }));",
                vec![],
            )
            .await?;
        if painted != serde_json::json!(true) {
            let state = self
                .client
                .execute(
                    "return [document.visibilityState, document.hasFocus(), window.innerWidth, window.innerHeight];",
                    vec![],
                )
                .await?;
            anyhow::bail!(
                "the Studio's web view painted no frame within 3 s before screenshot {name} (visibility, focus, size: {state})"
            );
        }
        let png = self.client.screenshot().await?;
        let path = crate::screenshot_dir().join(format!("{name}.png"));
        std::fs::write(&path, png)?;
        Ok(path)
    }

    /// The app's settings directory (`XDG_CONFIG_HOME`); its `data/` is `XDG_DATA_HOME`, where
    /// the local room keeps its database and secrets.
    pub fn config_home(&self) -> Option<&std::path::Path> {
        self.config_home.as_ref().map(|d| d.path())
    }

    /// The text of the first element matching `css`, if any.
    pub async fn text(&self, css: &str) -> Option<String> {
        let el = self.client.find(Locator::Css(css)).await.ok()?;
        el.text().await.ok()
    }

    /// The attribute `attr` of the first element matching `css`, if any.
    pub async fn attr(&self, css: &str, attr: &str) -> Option<String> {
        let el = self.client.find(Locator::Css(css)).await.ok()?;
        el.attr(attr).await.ok().flatten()
    }

    /// Clicks the first element matching `css`.
    pub async fn click(&self, css: &str) -> anyhow::Result<()> {
        self.client.find(Locator::Css(css)).await?.click().await?;
        Ok(())
    }

    /// The RMS level of every meter channel as the UI shows it now.
    pub async fn meter_rms(&self) -> anyhow::Result<Vec<f32>> {
        let mut levels = Vec::new();
        for el in self
            .client
            .find_all(Locator::Css("[data-testid=meter-channel]"))
            .await?
        {
            let v = el.attr("data-rms-dbfs").await?.unwrap_or_default();
            levels.push(v.parse::<f32>()?);
        }
        Ok(levels)
    }

    /// Ends the session (closing the app) and stops the driver.
    pub async fn quit(self) -> anyhow::Result<()> {
        self.quit_keeping_settings().await.map(drop)
    }

    /// Ends the session and hands back the settings directory for a relaunch.
    pub async fn quit_keeping_settings(mut self) -> anyhow::Result<tempfile::TempDir> {
        let result = self.client.clone().close().await;
        kill_group(&mut self.driver);
        result?;
        self.config_home
            .take()
            .ok_or_else(|| anyhow::anyhow!("settings directory already taken"))
    }
}

impl Studio {
    /// Waits (15 s) until the status bar says the embedded local room is reachable, and returns
    /// the room's URL, which its title names.
    pub async fn local_room_url(&self) -> anyhow::Result<String> {
        let title = crate::wait_for(Duration::from_secs(15), "the local room", || async {
            self.attr("#server-status", "title")
                .await
                .filter(|t| t.starts_with("Local room reachable"))
        })
        .await?;
        title
            .split_whitespace()
            .find(|w| w.starts_with("http://127.0.0.1:"))
            .map(str::to_owned)
            .ok_or_else(|| anyhow::anyhow!("the status title names no local room URL: {title}"))
    }

    /// Waits up to `timeout` until the Studio is in its room and publishing.
    pub async fn wait_on_air(&self, timeout: Duration) -> anyhow::Result<()> {
        crate::wait_for(timeout, "the Studio on air", || async {
            let state = self.attr("#room-state", "data-state").await?;
            let publishing = self.attr("#room-state", "data-publishing").await?;
            (state == "connected" && publishing == "true").then_some(())
        })
        .await
    }

    /// Scrolls the element with id `id` to the middle of its scroller (for a screenshot).
    pub async fn scroll_to(&self, id: &str) -> anyhow::Result<()> {
        self.client
            .execute(
                "document.getElementById(arguments[0]).scrollIntoView({block: 'center'})",
                vec![serde_json::Value::from(id)],
            )
            .await?;
        Ok(())
    }

    /// The scheduling policy (`/proc/…/stat` field 41: 0 `SCHED_OTHER`, 1 `SCHED_FIFO`) of each
    /// thread named `onmic-dsp` (the engine's) in this Studio's processes (the driver's process
    /// group), as the kernel has it.
    pub fn dsp_thread_policies(&self) -> Vec<u32> {
        let group = self.driver.id().to_string();
        let field = |stat: &str, n: usize| -> Option<String> {
            // Fields after the command's closing parenthesis start at field 3.
            let rest = stat.get(stat.rfind(')')? + 2..)?;
            rest.split_whitespace().nth(n - 3).map(str::to_owned)
        };
        let mut policies = Vec::new();
        let Ok(procs) = std::fs::read_dir("/proc") else {
            return policies;
        };
        for p in procs.flatten() {
            let dir = p.path();
            let stat = std::fs::read_to_string(dir.join("stat")).unwrap_or_default();
            if field(&stat, 5).as_deref() != Some(group.as_str()) {
                continue;
            }
            let Ok(tasks) = std::fs::read_dir(dir.join("task")) else {
                continue;
            };
            for t in tasks.flatten() {
                let comm = std::fs::read_to_string(t.path().join("comm")).unwrap_or_default();
                if comm.trim() != "onmic-dsp" {
                    continue;
                }
                let stat = std::fs::read_to_string(t.path().join("stat")).unwrap_or_default();
                if let Some(policy) = field(&stat, 41).and_then(|v| v.parse().ok()) {
                    policies.push(policy);
                }
            }
        }
        policies
    }
}

impl Drop for Studio {
    fn drop(&mut self) {
        kill_group(&mut self.driver);
    }
}

/// Kills `child`'s whole process group (it was started as a group leader) and reaps it.
pub(crate) fn kill_group(child: &mut Child) {
    let _ = Command::new("kill")
        .args(["-KILL", "--", &format!("-{}", child.id())])
        .status();
    let _ = child.kill();
    let _ = child.wait();
}
