//! Debian's Chromium driven over WebDriver (`chromedriver` from the `chromium-driver` package,
//! fantoccini as the client), as a WebRTC peer with a fake microphone fed from a WAV file.

use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder};

use crate::studio::kill_group;

/// Where Debian puts Chromium's WebDriver (`ONMIC_CHROMEDRIVER` overrides).
pub const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
/// Debian's Chromium (`ONMIC_CHROMIUM` overrides).
pub const CHROMIUM: &str = "/usr/bin/chromium";

/// How to start the browser.
#[derive(Debug, Clone, Copy)]
pub struct BrowserOptions {
    /// Grant microphone requests (`false`: refuse them, as a person clicking "Block").
    pub microphone_allowed: bool,
    /// Let pages play audio without a user gesture (`false`: Chromium's default policy).
    pub autoplay_allowed: bool,
    /// The fake microphone's tone (Hz, both channels, amplitude 0.25, looped).
    pub mic_hz: f32,
}

impl Default for BrowserOptions {
    fn default() -> Self {
        BrowserOptions {
            microphone_allowed: true,
            autoplay_allowed: true,
            mic_hz: 1000.0,
        }
    }
}

/// A headless Chromium under chromedriver; [`Browser::quit`] at the end (drop also stops it).
pub struct Browser {
    /// The WebDriver client.
    pub client: Client,
    driver: Child,
    _profile: tempfile::TempDir,
    _capture: tempfile::TempDir,
}

impl Browser {
    /// Starts chromedriver and a fresh headless Chromium whose fake microphone plays a
    /// 1 kHz tone (looped), with autoplay allowed and loopback WebRTC enabled (TESTING.md).
    pub async fn launch() -> anyhow::Result<Browser> {
        Self::launch_with(BrowserOptions::default()).await
    }

    /// Like [`Browser::launch`], with `options`.
    pub async fn launch_with(options: BrowserOptions) -> anyhow::Result<Browser> {
        let chromedriver =
            std::env::var("ONMIC_CHROMEDRIVER").unwrap_or_else(|_| CHROMEDRIVER.to_owned());
        let chromium = std::env::var("ONMIC_CHROMIUM").unwrap_or_else(|_| CHROMIUM.to_owned());
        for path in [&chromedriver, &chromium] {
            anyhow::ensure!(
                Path::new(path).exists(),
                "{path} not found: install Debian's `chromium` and `chromium-driver` packages"
            );
        }
        let profile = tempfile::tempdir()?;
        let capture = tempfile::tempdir()?;
        let capture_wav = capture.path().join("mic.wav");
        crate::audio::write_tone(&capture_wav, options.mic_hz, 0.25, 10.0);
        let port = crate::free_port();
        let mut cmd = Command::new(&chromedriver);
        cmd.arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
        let mut driver = cmd.spawn()?;
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if Instant::now() > deadline {
                kill_group(&mut driver);
                anyhow::bail!("chromedriver did not open port {port}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let mut args = vec![
            "--headless".to_owned(),
            "--no-sandbox".to_owned(),
            "--disable-gpu".to_owned(),
            "--disable-dev-shm-usage".to_owned(),
            "--allow-loopback-in-peer-connection".to_owned(),
            if options.microphone_allowed {
                "--use-fake-ui-for-media-stream".to_owned()
            } else {
                "--use-fake-ui-for-media-stream=deny".to_owned()
            },
            "--use-fake-device-for-media-stream".to_owned(),
            format!(
                "--use-file-for-fake-audio-capture={}",
                capture_wav.display()
            ),
            "--disable-background-networking".to_owned(),
            "--disable-component-update".to_owned(),
            "--disable-sync".to_owned(),
            "--no-first-run".to_owned(),
            "--window-size=1100,800".to_owned(),
            format!("--user-data-dir={}", profile.path().display()),
        ];
        // Headless Chromium's default lets pages autoplay; ask for either policy explicitly.
        args.push(if options.autoplay_allowed {
            "--autoplay-policy=no-user-gesture-required".to_owned()
        } else {
            "--autoplay-policy=user-gesture-required".to_owned()
        });
        let mut caps = serde_json::Map::new();
        caps.insert("browserName".into(), "chrome".into());
        caps.insert(
            "goog:chromeOptions".into(),
            serde_json::json!({ "binary": chromium, "args": args }),
        );
        let client = match ClientBuilder::native()
            .capabilities(caps)
            .connect(&format!("http://127.0.0.1:{port}"))
            .await
        {
            Ok(c) => c,
            Err(e) => {
                kill_group(&mut driver);
                anyhow::bail!("chromedriver session: {e}");
            }
        };
        Ok(Browser {
            client,
            driver,
            _profile: profile,
            _capture: capture,
        })
    }

    /// Runs `script` (a function body; `return` a value) in the page.
    pub async fn eval(&self, script: &str) -> anyhow::Result<serde_json::Value> {
        Ok(self.client.execute(script, vec![]).await?)
    }

    /// The rendered text of the first element matching `css`, if any. Looked up and read in one
    /// script: the page re-renders its seats on every volume update, so an element found by one
    /// WebDriver call can be gone (stale) by the next.
    pub async fn text(&self, css: &str) -> Option<String> {
        let v = self
            .client
            .execute(
                "const e = document.querySelector(arguments[0]); return e ? e.innerText : null;",
                vec![serde_json::Value::String(css.to_owned())],
            )
            .await
            .ok()?;
        v.as_str().map(|t| t.trim().to_owned())
    }

    /// Sizes the window so that the page's viewport is `width` × `height` CSS pixels (a phone's
    /// 390 × 844, a laptop's 1280 × 800): sets the window, then corrects by what the browser's
    /// frame takes. Returns the viewport it got.
    pub async fn set_viewport(&self, width: u32, height: u32) -> anyhow::Result<(u32, u32)> {
        let inner = || async {
            let v = self
                .eval("return [window.innerWidth, window.innerHeight];")
                .await?;
            let n = |i: usize| v[i].as_u64().unwrap_or(0) as i64;
            anyhow::Ok((n(0), n(1)))
        };
        self.client.set_window_size(width, height).await?;
        let (w, h) = inner().await?;
        let (fw, fh) = (i64::from(width) - w, i64::from(height) - h);
        if fw != 0 || fh != 0 {
            let target =
                |size: u32, frame: i64| u32::try_from(i64::from(size) + frame).unwrap_or(size);
            self.client
                .set_window_size(target(width, fw), target(height, fh))
                .await?;
        }
        let (w, h) = inner().await?;
        Ok((u32::try_from(w)?, u32::try_from(h)?))
    }

    /// Saves a PNG screenshot of the page to `target/screenshots/<name>.png`.
    pub async fn screenshot(&self, name: &str) -> anyhow::Result<std::path::PathBuf> {
        let png = self.client.screenshot().await?;
        let path = crate::screenshot_dir().join(format!("{name}.png"));
        std::fs::write(&path, png)?;
        Ok(path)
    }

    /// Ends the session and stops chromedriver and Chromium.
    pub async fn quit(mut self) {
        let _ = self.client.clone().close().await;
        kill_group(&mut self.driver);
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        kill_group(&mut self.driver);
    }
}
