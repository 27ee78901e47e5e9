//! The host's console end to end (issue 10, acceptance 1 with an `onmic-client` listener in
//! place of Chromium, and acceptance 4's chat and chat-mute parts): the Studio starts its local
//! room and goes live on a stereo tone from a PulseAudio null sink; a listener joins through the
//! UI's share link and applies; the requests badge shows 1; the host approves in the UI; the
//! grid shows the listener's ripple while it sends a tone and not after it stops; the listener's
//! `<img onerror>` chat shows literally; a 1-minute chat mute set in the UI refuses its next
//! chat; the host mutes that seat in the UI and no packet of the listener reaches the Studio after
//! 300 ms (counted for 3 s); the host kicks it with a 10-minute ban from the audience list and
//! its rejoin is refused `banned`. Screenshots of each step, and of the main window at 1440×900
//! dark and light and at 1024×700, go under `target/screenshots/`. WebRTC runs inside a
//! loopback-only network namespace the test creates.

use std::time::Duration;

use fantoccini::Locator;
use onmic_client::{ClientConfig, ClientError, RoomClient};
use onmic_e2e::audio::{NullSink, Playback, write_stereo_tone};
use onmic_e2e::client_host::ClientHost;
use onmic_e2e::netns::run_in_netns;
use onmic_e2e::studio::Studio;
use onmic_e2e::wait_for;
use onmic_room::Action;

#[test]
fn the_host_runs_the_room_from_the_console() {
    run_in_netns("the_host_runs_the_room_from_the_console", scenario);
}

/// Switches the UI to `want` (`dark` or `light`) with its own theme button.
async fn theme(studio: &Studio, want: &str) -> anyhow::Result<()> {
    let current = studio
        .client
        .execute("return document.documentElement.dataset.theme", vec![])
        .await?;
    if current.as_str() != Some(want) {
        studio.click("#theme-toggle").await?;
    }
    let now = studio
        .client
        .execute("return document.documentElement.dataset.theme", vec![])
        .await?;
    anyhow::ensure!(
        now.as_str() == Some(want),
        "theme {now} after switching to {want}"
    );
    Ok(())
}

/// Lets the web view repaint after a resize or a theme change before a screenshot.
async fn settle() {
    tokio::time::sleep(Duration::from_millis(1500)).await;
}

/// The Studio's count of packets received, from the room bar.
async fn received(studio: &Studio) -> Option<u64> {
    let text = studio.text("#room-counters").await?;
    let (_, rest) = text.split_once("received ")?;
    rest.split_whitespace().next()?.parse().ok()
}

async fn scenario() -> anyhow::Result<()> {
    let sink = NullSink::create("onmic_e2e_console", "Onmic_E2E_Console");
    let monitor_name = format!("Monitor of {}", sink.description);
    let dir = tempfile::tempdir()?;
    let wav = dir.path().join("stereo.wav");
    write_stereo_tone(&wav, [440.0, 660.0], 0.25, 120.0);
    let _playback = Playback::start(&sink, &wav);

    let studio = Studio::launch(&[
        ("ONMIC_LOCAL_ROOM", "1"),
        ("ONMIC_SERVER_URL", "http://127.0.0.1:9"),
    ])
    .await?;
    studio.client.set_window_size(1440, 900).await?;
    theme(&studio, "dark").await?;

    let option = wait_for(Duration::from_secs(15), "the virtual input", || async {
        for o in studio
            .client
            .find_all(Locator::Css("#input-device option"))
            .await
            .ok()?
        {
            if o.text().await.ok()?.contains(&monitor_name) {
                return Some(o);
            }
        }
        None
    })
    .await?;
    option.click().await?;
    let url = studio.local_room_url().await?;
    studio.screenshot("console-0-offline").await?;

    // 1. The host goes live from the UI.
    studio.click("#join-room").await?;
    studio.wait_on_air(Duration::from_secs(20)).await?;

    // 2. A listener joins through the share link and applies.
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
    listener
        .client
        .apply(None)
        .await
        .map_err(|e| anyhow::anyhow!("the share link's token may apply: {e}"))?;
    wait_for(
        Duration::from_secs(10),
        "the requests badge at 1",
        || async {
            studio
                .attr("#queue-count", "data-count")
                .await
                .filter(|c| c == "1")
        },
    )
    .await?;
    studio.screenshot("console-1-request").await?;

    // 3. The host approves in the UI; the listener is seated.
    studio
        .click(&format!("#applications li[data-uid='{uid}'] .approve"))
        .await?;
    let seat = wait_for(
        Duration::from_secs(10),
        "the listener on a seat",
        || async {
            studio
                .attr(&format!("#seats [data-uid='{uid}']"), "data-seat")
                .await
        },
    )
    .await?;
    assert_eq!(
        studio.attr("#queue-count", "data-count").await.as_deref(),
        Some("0")
    );

    // 4. Its tone makes its seat ripple; silence stops the ripple.
    listener.start_tone(440.0, 660.0);
    let seat_css = format!("#seats [data-seat='{seat}']");
    wait_for(Duration::from_secs(10), "the listener's ripple", || async {
        studio
            .attr(&seat_css, "data-speaking")
            .await
            .filter(|s| s == "true")
    })
    .await?;
    studio.screenshot("console-2-speaking").await?;
    listener.stop_tone();
    wait_for(Duration::from_secs(10), "the ripple to stop", || async {
        studio
            .attr(&seat_css, "data-speaking")
            .await
            .filter(|s| s == "false")
    })
    .await?;

    // 5. Chat shows literally (never as HTML).
    let evil = "<img src=x onerror=alert(1)>";
    listener
        .client
        .act(Action::Chat { text: evil.into() })
        .await
        .map_err(|e| anyhow::anyhow!("chat: {e}"))?;
    wait_for(Duration::from_secs(10), "the chat line", || async {
        studio.text("#chat-feed").await.filter(|t| t.contains(evil))
    })
    .await?;
    let imgs = studio
        .client
        .execute(
            "return document.querySelectorAll('#chat-feed img').length",
            vec![],
        )
        .await?;
    assert_eq!(imgs, serde_json::json!(0), "chat rendered as HTML");

    // 5b. A scroll up pauses the feed; new lines wait behind a button that goes back to live.
    // Long lines (the room lets a member send 5 in 5 s) make the feed taller than its box.
    for i in 0..4 {
        let text = format!(
            "line {i}: {}",
            "a long line that wraps over several rows ".repeat(10)
        );
        listener
            .client
            .act(Action::Chat { text })
            .await
            .map_err(|e| anyhow::anyhow!("chat: {e}"))?;
    }
    wait_for(Duration::from_secs(10), "the long lines", || async {
        studio
            .text("#chat-feed")
            .await
            .filter(|t| t.contains("line 3:"))
    })
    .await?;
    studio
        .client
        .execute(
            "document.getElementById('chat-feed').dispatchEvent(new WheelEvent('wheel', { deltaY: -240, bubbles: true })); return 0",
            vec![],
        )
        .await?;
    wait_for(Duration::from_secs(5), "the feed paused", || async {
        studio
            .attr("#chat-feed", "class")
            .await
            .filter(|c| c.contains("paused"))
    })
    .await?;
    // The room's chat window (5 messages in 5 s) has room again after it.
    tokio::time::sleep(Duration::from_secs(6)).await;
    listener
        .client
        .act(Action::Chat {
            text: "while you scrolled".into(),
        })
        .await
        .map_err(|e| anyhow::anyhow!("chat: {e}"))?;
    let waiting = wait_for(Duration::from_secs(10), "the new-lines button", || async {
        studio
            .text("#chat-resume")
            .await
            .filter(|t| t.contains("1 new line"))
    })
    .await?;
    let feed = studio.text("#chat-feed").await.unwrap_or_default();
    assert!(
        !feed.contains("while you scrolled"),
        "a paused feed stays as it was: {waiting}"
    );
    studio.screenshot("console-chat-paused").await?;
    studio.click("#chat-resume").await?;
    wait_for(Duration::from_secs(5), "the feed live again", || async {
        studio
            .text("#chat-feed")
            .await
            .filter(|t| t.contains("while you scrolled"))
    })
    .await?;

    // Screenshots of the main window, live: dark and light at 1440×900, and 1024×700.
    theme(&studio, "dark").await?;
    settle().await;
    studio.screenshot("studio-console-dark-1440x900").await?;
    theme(&studio, "light").await?;
    settle().await;
    studio.screenshot("studio-console-light-1440x900").await?;
    studio.client.set_window_size(1024, 700).await?;
    settle().await;
    studio.screenshot("studio-console-light-1024x700").await?;
    theme(&studio, "dark").await?;
    settle().await;
    studio.screenshot("studio-console-dark-1024x700").await?;
    studio.client.set_window_size(1440, 900).await?;
    settle().await;

    // 6. A 1-minute chat mute set in the UI refuses the listener's next chat.
    studio.click("#tab-audience").await?;
    studio
        .click(&format!(".member-row[data-uid='{uid}'] .row-menu"))
        .await?;
    studio
        .click("#member-actions [data-action='mute-chat']")
        .await?;
    wait_for(
        Duration::from_secs(10),
        "the chat mute to apply",
        || async {
            let r = listener
                .client
                .act(Action::Chat {
                    text: "still here?".into(),
                })
                .await;
            match r {
                Err(ClientError::Refused { code, .. }) => Some(code),
                _ => None,
            }
        },
    )
    .await?;

    studio.screenshot("console-2b-audience").await?;

    // 7. The host mutes the seat; nothing of the listener reaches the Studio after 300 ms.
    listener.start_tone(440.0, 660.0);
    wait_for(
        Duration::from_secs(10),
        "the listener heard again",
        || async {
            studio
                .attr(&seat_css, "data-speaking")
                .await
                .filter(|s| s == "true")
        },
    )
    .await?;
    studio.click(&format!("{seat_css} .seat-menu-btn")).await?;
    studio
        .click(&format!("{seat_css} [data-action='mute']"))
        .await?;
    wait_for(Duration::from_secs(5), "the seat muted", || async {
        studio
            .attr(&seat_css, "data-muted")
            .await
            .filter(|m| m == "true")
    })
    .await?;
    tokio::time::sleep(Duration::from_millis(300 + 1100)).await; // + one counter refresh
    let before = received(&studio).await.unwrap_or_default();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let after = received(&studio).await.unwrap_or_default();
    println!("Studio packets received after the mute: {before} → {after} over 3 s");
    assert_eq!(
        before, after,
        "packets still reach the Studio after the mute"
    );
    studio.screenshot("console-3-muted").await?;

    // 8. Kick with a 10-minute ban from the audience list; the rejoin is refused `banned`.
    studio
        .click(&format!(".member-row[data-uid='{uid}'] .row-menu"))
        .await?;
    let ban = studio
        .client
        .find(Locator::Css(
            "#member-actions select[data-field='ban'] option[value='10']",
        ))
        .await?;
    ban.click().await?;
    studio.click("#member-actions [data-action='kick']").await?;
    wait_for(Duration::from_secs(10), "the listener gone", || async {
        let rows = studio
            .client
            .find_all(Locator::Css(&format!(".member-row[data-uid='{uid}']")))
            .await
            .ok()?;
        rows.is_empty().then_some(())
    })
    .await?;
    studio.screenshot("console-4-kicked").await?;
    listener.close().await;
    match RoomClient::connect(ClientConfig::new(&url, "studio", token)).await {
        Err(ClientError::Refused { code, .. }) => assert_eq!(code, "banned"),
        Ok(_) => anyhow::bail!("a banned listener joined again"),
        Err(e) => anyhow::bail!("the rejoin failed otherwise: {e}"),
    }

    studio.click("#leave-room").await?;
    studio.quit().await
}
