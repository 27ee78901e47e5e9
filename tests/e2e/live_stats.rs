//! Live stats in the Studio under packet loss (issue 10, acceptance 6): the Studio starts its
//! local room and goes live on a stereo tone; a listener joins through the share link, applies,
//! is approved in the UI and sends a tone. Without loss, the Studio's loss figure (read from the
//! UI) is ≤ 1 %, and the bitrate, round trip, listeners and the speaker's row show figures. Then
//! 10 % of every UDP packet in the test's loopback-only network namespace is dropped at random
//! and the loss figure reads 10 ± 3 % (the median of five readings, 10 s apart: each reading
//! is its own 10-second window of ~500 packets, so random loss alone spreads one reading by
//! ~1.3 points and readings of 7.5 % were seen; five make a reading outside the bar by chance
//! rare); the speaker's loss is shown too. Screenshots of the stats panel
//! go under `target/screenshots/`.
//!
//! The loss is injected with nftables (`numgen random mod 1000 < 100 drop` on the input hook,
//! UDP only, inside the namespace) because this machine's kernel has no `sch_netem`; the effect
//! on the media is the same as `tc qdisc … netem loss 10%` on the namespace's interface, and
//! the WebSocket and WebDriver (TCP) are left alone.

use std::process::{Command, Stdio};
use std::time::Duration;

use fantoccini::Locator;
use onmic_e2e::audio::{NullSink, Playback, write_stereo_tone};
use onmic_e2e::client_host::ClientHost;
use onmic_e2e::netns::run_in_netns;
use onmic_e2e::studio::Studio;
use onmic_e2e::wait_for;

#[test]
fn the_loss_figure_follows_injected_packet_loss() {
    run_in_netns("the_loss_figure_follows_injected_packet_loss", scenario);
}

/// Drops `per_mille` ‰ of the UDP packets arriving in this namespace (`None`: no rule).
fn inject_udp_loss(per_mille: Option<u32>) -> anyhow::Result<()> {
    let _ = Command::new("nft")
        .args(["delete", "table", "inet", "onmic_loss"])
        .stderr(Stdio::null())
        .status();
    let Some(p) = per_mille else { return Ok(()) };
    let rules = format!(
        "table inet onmic_loss {{\n  chain in {{\n    type filter hook input priority 0; policy accept;\n    \
         meta l4proto udp numgen random mod 1000 < {p} counter drop\n  }}\n}}\n"
    );
    let mut child = Command::new("nft")
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .spawn()
        .map_err(|e| {
            anyhow::anyhow!("running nft: {e} (apt-get install nftables; see xtask/apt/loss.txt)")
        })?;
    std::io::Write::write_all(child.stdin.as_mut().expect("piped stdin"), rules.as_bytes())?;
    let status = child.wait()?;
    anyhow::ensure!(status.success(), "nft refused the loss rule");
    Ok(())
}

/// Packets the loss rule dropped so far.
fn dropped() -> String {
    let out = Command::new("nft")
        .args(["list", "table", "inet", "onmic_loss"])
        .output();
    out.ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .and_then(|t| {
            t.split("counter packets ")
                .nth(1)
                .and_then(|r| r.split_whitespace().next().map(str::to_owned))
        })
        .unwrap_or_else(|| "?".into())
}

/// A figure from the stats panel: its number, `None` for "—".
async fn stat(studio: &Studio, css: &str) -> Option<f64> {
    let text = studio.attr(css, "data-value").await?;
    text.split_whitespace().next()?.parse().ok()
}

async fn panel_shot(studio: &Studio, name: &str) -> anyhow::Result<()> {
    // The whole window: WebKitWebDriver's element screenshots come out black.
    studio.screenshot(name).await?;
    Ok(())
}

async fn scenario() -> anyhow::Result<()> {
    inject_udp_loss(None)?;
    let sink = NullSink::create("onmic_e2e_stats", "Onmic_E2E_Stats");
    let dir = tempfile::tempdir()?;
    let wav = dir.path().join("stereo.wav");
    write_stereo_tone(&wav, [440.0, 660.0], 0.25, 180.0);
    let _playback = Playback::start(&sink, &wav);

    let (studio, url) = onmic_e2e::console::launch_local_studio(&sink).await?;

    studio.click("#join-room").await?;
    studio.wait_on_air(Duration::from_secs(20)).await?;
    // Figures nobody can know yet read "—", never a made-up number.
    let loss_at_start = studio.attr("#stat-loss", "data-value").await;
    println!("loss figure right after going live: {loss_at_start:?}");

    // A listener joins through the share link: one listener.
    studio.click("#listener-link").await?;
    let link = wait_for(Duration::from_secs(10), "a share link", || async {
        let el = studio
            .client
            .find(Locator::Css("#listener-link-url"))
            .await
            .ok()?;
        el.prop("value").await.ok().flatten()
    })
    .await?;
    let token = link.split("token=").nth(1).unwrap_or_default().to_owned();
    let mut listener = ClientHost::connect(&url, "studio", &token).await?;
    let uid = listener.client.uid().as_str().to_owned();
    wait_for(Duration::from_secs(10), "1 listener", || async {
        (stat(&studio, "#stat-listeners").await? == 1.0).then_some(())
    })
    .await?;

    // It applies, the host approves in the UI, and it speaks.
    listener
        .client
        .apply(None)
        .await
        .map_err(|e| anyhow::anyhow!("apply: {e}"))?;
    wait_for(
        Duration::from_secs(10),
        "the request in the queue",
        || async {
            studio
                .attr("#queue-count", "data-count")
                .await
                .filter(|c| c == "1")
        },
    )
    .await?;
    studio
        .click(&format!("#applications li[data-uid='{uid}'] .approve"))
        .await?;
    wait_for(Duration::from_secs(10), "the listener seated", || async {
        studio
            .attr(&format!("#seats [data-uid='{uid}']"), "data-seat")
            .await
    })
    .await?;
    listener.start_tone(440.0, 660.0);
    let speaker_css = format!("#speaker-loss tr[data-uid='{uid}'] td.loss");

    // Without loss: ≤ 1 % once a full window of reports is in.
    wait_for(Duration::from_secs(30), "a loss figure", || async {
        stat(&studio, "#stat-loss").await
    })
    .await?;
    wait_for(
        Duration::from_secs(30),
        "the speaker's loss figure",
        || async {
            studio
                .attr(&speaker_css, "data-value")
                .await
                .filter(|v| !v.is_empty())
        },
    )
    .await?;
    tokio::time::sleep(Duration::from_secs(11)).await;
    let clean = stat(&studio, "#stat-loss").await;
    let bitrate = stat(&studio, "#stat-bitrate").await;
    let rtt = stat(&studio, "#stat-rtt").await;
    let listeners = stat(&studio, "#stat-listeners").await;
    let speaker_clean: Option<f64> = studio
        .attr(&speaker_css, "data-value")
        .await
        .and_then(|v| v.parse().ok());
    println!(
        "no loss injected: loss {clean:?} %, bitrate {bitrate:?} kbit/s, rtt {rtt:?} ms, \
         listeners {listeners:?}, speaker loss {speaker_clean:?} %"
    );
    panel_shot(&studio, "stats-panel-clean").await?;
    let clean = clean.ok_or_else(|| anyhow::anyhow!("no loss figure without loss"))?;
    assert!(clean <= 1.0, "loss {clean} % without any loss injected");
    assert!(
        speaker_clean.is_some_and(|l| l <= 1.0),
        "speaker loss {speaker_clean:?} % without any loss injected"
    );
    // Sound-card mode sends stereo Opus: a figure in the range of a music stream. (Its profile
    // asks for 128 kbit/s; this test measured ~243 kbit/s of RTP payload and headers, which
    // is reported, not explained, yet.)
    let bitrate = bitrate.ok_or_else(|| anyhow::anyhow!("no bitrate figure"))?;
    assert!(
        (64.0..=320.0).contains(&bitrate),
        "bitrate {bitrate} kbit/s in sound-card mode"
    );
    assert_eq!(listeners, Some(0.0), "the only listener is on a seat now");
    let graph_points = studio
        .client
        .execute(
            "return document.querySelectorAll('#stats-graph path').length",
            vec![],
        )
        .await?;
    assert!(
        graph_points.as_u64().unwrap_or(0) >= 1,
        "the history graph draws nothing"
    );

    // 10 % of UDP dropped: five readings 10 s apart (each its own 10 s window).
    inject_udp_loss(Some(100))?;
    tokio::time::sleep(Duration::from_secs(12)).await;
    let mut readings = Vec::new();
    let mut speaker = Vec::new();
    for i in 0..5 {
        if i > 0 {
            tokio::time::sleep(Duration::from_secs(10)).await;
        }
        let loss = stat(&studio, "#stat-loss").await;
        let s: Option<f64> = studio
            .attr(&speaker_css, "data-value")
            .await
            .and_then(|v| v.parse().ok());
        println!(
            "10 % UDP loss injected: reading {i}: loss {loss:?} %, speaker loss {s:?} % \
             (dropped so far: {})",
            dropped()
        );
        readings.push(loss.ok_or_else(|| anyhow::anyhow!("no loss figure under loss"))?);
        speaker.extend(s);
    }
    panel_shot(&studio, "stats-panel-10pct-loss").await?;
    readings.sort_by(f64::total_cmp);
    let median = readings[readings.len() / 2];
    assert!(
        (7.0..=13.0).contains(&median),
        "loss figure median {median} % (readings {readings:?}) with 10 % injected"
    );
    // The speaker's stream crosses the lossy namespace twice (listener → SFU, SFU → Studio); the
    // SFU renumbers what it forwards, so the Studio sees the second leg's loss (~10 % measured).
    assert!(
        speaker.iter().any(|l| *l >= 5.0),
        "speaker loss {speaker:?} % with 10 % injected on each leg"
    );

    inject_udp_loss(None)?;
    listener.close().await;
    studio.click("#leave-room").await?;
    studio.quit().await
}
