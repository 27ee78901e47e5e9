//! The room bar end to end (issue 10, scope 6 and 7): in the real Studio under WebDriver, the
//! host creates a local room through the *New room* dialog with non-default settings (4 seats, a
//! boss seat, kick-and-ban 1 hour, chat for seated members with a 10 s slow mode) and the
//! server's REST API reads them back; the host changes the safety policy on air and the server's
//! room state follows; a recording started and stopped in the UI is listed, fetched through the
//! UI, and its Ogg Opus file decodes (real libopus) to the length the list shows and the time it
//! ran; a listener joins with the UI's share link, may apply for a seat, and is closed
//! `dismissed` when the host ends the room after the confirmation. Screenshots of the dialog, the
//! rules, the recordings list and the confirmation go under `target/screenshots/`. WebRTC runs
//! inside a loopback-only network namespace the test creates.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use fantoccini::Locator;
use futures_util::{SinkExt, StreamExt};
use onmic_e2e::audio::{NullSink, Playback, write_stereo_tone};
use onmic_e2e::netns::run_in_netns;
use onmic_e2e::studio::Studio;
use onmic_e2e::wait_for;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

#[test]
fn the_host_creates_records_and_ends_a_room_from_the_room_bar() {
    run_in_netns(
        "the_host_creates_records_and_ends_a_room_from_the_room_bar",
        scenario,
    );
}

/// The local room's REST credentials, from its per-install `secrets.json` under `data`.
fn local_room_bearer(data: &Path) -> anyhow::Result<String> {
    fn find(dir: &Path) -> Option<PathBuf> {
        for entry in std::fs::read_dir(dir).ok()? {
            let path = entry.ok()?.path();
            if path.is_dir() {
                if let Some(p) = find(&path) {
                    return Some(p);
                }
            } else if path.file_name().is_some_and(|n| n == "secrets.json") {
                return Some(path);
            }
        }
        None
    }
    let path = find(data).ok_or_else(|| anyhow::anyhow!("no secrets.json under {data:?}"))?;
    let secrets: Value = serde_json::from_slice(&std::fs::read(path)?)?;
    let secret = secrets["customer_secret"]
        .as_str()
        .ok_or_else(|| anyhow::anyhow!("no customer_secret"))?;
    Ok(format!(
        "{}:{secret}",
        onmic_server::Config::default().customer_key
    ))
}

async fn get(url: &str, bearer: &str) -> anyhow::Result<Value> {
    let resp = reqwest::Client::new()
        .get(url)
        .bearer_auth(bearer)
        .send()
        .await?;
    anyhow::ensure!(resp.status().is_success(), "{url}: {}", resp.status());
    Ok(resp.json().await?)
}

/// Sets a form control's value as typing or picking would (React's own value setter, then the
/// `input` and `change` events), so that the UI's state follows.
async fn set_value(studio: &Studio, css: &str, value: &str) -> anyhow::Result<()> {
    let done = studio
        .client
        .execute(
            r#"const [css, value] = arguments;
               const el = document.querySelector(css);
               if (!el) return false;
               const proto = el instanceof HTMLSelectElement ? HTMLSelectElement.prototype : HTMLInputElement.prototype;
               Object.getOwnPropertyDescriptor(proto, "value").set.call(el, value);
               el.dispatchEvent(new Event("input", { bubbles: true }));
               el.dispatchEvent(new Event("change", { bubbles: true }));
               return true;"#,
            vec![json!(css), json!(value)],
        )
        .await?;
    anyhow::ensure!(done == json!(true), "no {css}");
    Ok(())
}

async fn select(studio: &Studio, css: &str, value: &str) -> anyhow::Result<()> {
    set_value(studio, css, value).await
}

async fn fill(studio: &Studio, css: &str, text: &str) -> anyhow::Result<()> {
    set_value(studio, css, text).await
}

/// Decodes every Opus packet of an Ogg Opus file with libopus; returns the 48 kHz samples per
/// channel after the pre-skip, trimmed to the last page's granule position (RFC 7845).
fn decoded_samples(path: &Path) -> anyhow::Result<u64> {
    let bytes = std::fs::read(path)?;
    let mut pos = 0;
    let mut packets: Vec<Vec<u8>> = Vec::new();
    let mut partial: Vec<u8> = Vec::new();
    let mut last_granule = 0u64;
    while pos + 27 <= bytes.len() {
        anyhow::ensure!(&bytes[pos..pos + 4] == b"OggS", "no Ogg page at {pos}");
        let granule = u64::from_le_bytes(bytes[pos + 6..pos + 14].try_into()?);
        let segments = usize::from(bytes[pos + 26]);
        let table = &bytes[pos + 27..pos + 27 + segments];
        let mut body = pos + 27 + segments;
        for &lace in table {
            partial.extend_from_slice(&bytes[body..body + usize::from(lace)]);
            body += usize::from(lace);
            if lace < 255 {
                packets.push(std::mem::take(&mut partial));
            }
        }
        if granule != u64::MAX {
            last_granule = granule;
        }
        pos = body;
    }
    anyhow::ensure!(packets.len() > 2, "no audio packets");
    anyhow::ensure!(packets[0].starts_with(b"OpusHead"), "not Ogg Opus");
    let pre_skip = u64::from(u16::from_le_bytes([packets[0][10], packets[0][11]]));
    let mut decoder = opus::Decoder::new(48_000, opus::Channels::Stereo)?;
    let mut out = vec![0f32; 5760 * 2];
    let mut decoded = 0u64;
    for packet in &packets[2..] {
        decoded += decoder.decode_float(packet, &mut out, false)? as u64;
    }
    let total = decoded.min(last_granule);
    Ok(total.saturating_sub(pre_skip))
}

async fn scenario() -> anyhow::Result<()> {
    let sink = NullSink::create("onmic_e2e_roombar", "Onmic_E2E_Roombar");
    let monitor_name = format!("Monitor of {}", sink.description);
    let dir = tempfile::tempdir()?;
    let wav = dir.path().join("stereo.wav");
    write_stereo_tone(&wav, [440.0, 660.0], 0.25, 180.0);
    let _playback = Playback::start(&sink, &wav);
    let data = dir.path().join("data");
    let data_env = data.to_string_lossy().into_owned();

    let studio = Studio::launch(&[
        ("ONMIC_LOCAL_ROOM", "1"),
        ("ONMIC_SERVER_URL", "http://127.0.0.1:9"),
        ("XDG_DATA_HOME", &data_env),
    ])
    .await?;
    studio.client.set_window_size(1440, 900).await?;
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
    let bearer = local_room_bearer(&data)?;

    // 1. A room with non-default settings, through the dialog.
    studio.click("#new-room").await?;
    fill(&studio, "#new-room-id", "roombar").await?;
    fill(&studio, "#new-room-title", "Room bar test").await?;
    fill(&studio, "#new-room-seats", "4").await?;
    studio
        .client
        .execute("document.querySelector('#new-room-boss').click()", vec![])
        .await?;
    fill(&studio, "#new-room-boss-min", "500").await?;
    select(&studio, "#new-room-bombing", "kickAndBan").await?;
    select(&studio, "#new-room-ban", "60").await?;
    select(&studio, "#new-room-chat-who", "seated").await?;
    select(&studio, "#new-room-slow", "10").await?;
    studio.screenshot("roombar-1-create-dialog").await?;
    studio.click("#create-room-submit").await?;
    tokio::time::sleep(Duration::from_secs(3)).await;
    studio.screenshot("roombar-1b-after-create").await?;
    if let Some(e) = studio.text("#create-room-error").await {
        anyhow::bail!("the dialog refused: {e}");
    }
    studio.wait_on_air(Duration::from_secs(30)).await?;
    let room = get(&format!("{url}/v1/rooms/roombar"), &bearer).await?;
    let s = &room["settings"];
    assert_eq!(room["title"], "Room bar test", "{room}");
    assert_eq!(s["seat_count"], 4, "{s}");
    assert_eq!(s["boss_seat"]["min_value"], 500, "{s}");
    assert_eq!(s["boss_seat"]["window"], 600_000, "{s}");
    assert_eq!(
        s["bombing"],
        json!({ "action": "kick_and_ban", "ban_ms": 3_600_000 }),
        "{s}"
    );
    assert_eq!(
        s["chat"],
        json!({ "who": "seated", "slow_mode_ms": 10_000 })
    );
    let seats = studio
        .client
        .find_all(Locator::Css("[data-seat-index]"))
        .await
        .map(|v| v.len())
        .unwrap_or(0);
    println!("seat elements in the grid: {seats}");

    // 2. The safety policy changes on air; the server's room follows.
    studio.click("#rules-toggle").await?;
    select(&studio, "#live-rules-bombing", "reportOnly").await?;
    select(&studio, "#live-rules-chat-who", "everyone").await?;
    studio.screenshot("roombar-2-rules").await?;
    studio.click("#rules-apply").await?;
    let settings = wait_for(
        Duration::from_secs(10),
        "the new policy on the server",
        || async {
            let room = get(&format!("{url}/v1/rooms/roombar"), &bearer)
                .await
                .ok()?;
            (room["settings"]["bombing"] == json!({ "action": "report_only" }))
                .then(|| room["settings"].clone())
        },
    )
    .await?;
    assert_eq!(
        settings["chat"],
        json!({ "who": "everyone", "slow_mode_ms": 10_000 })
    );
    // The bar follows once the room's event reaches the Studio (a status push after the reply).
    let label = wait_for(
        Duration::from_secs(5),
        "the bar showing the policy",
        || async {
            studio
                .text("#rules-toggle")
                .await
                .filter(|l| l.contains("alert only"))
        },
    )
    .await;
    assert!(
        label.is_ok(),
        "the bar shows the policy: {:?}",
        studio.text("#rules-toggle").await
    );

    // 3. Record ~4 s, stop, and fetch the file through the UI.
    studio.click("#record-toggle").await?;
    wait_for(Duration::from_secs(10), "recording on", || async {
        (studio.attr("#record-toggle", "data-recording").await? == "true").then_some(())
    })
    .await?;
    let started = Instant::now();
    tokio::time::sleep(Duration::from_secs(4)).await;
    studio.click("#record-toggle").await?;
    let ran = started.elapsed();
    let item = wait_for(Duration::from_secs(15), "a finished recording", || async {
        studio
            .client
            .find(Locator::Css("#recordings-list li[data-status=done]"))
            .await
            .ok()
    })
    .await?;
    let listed_ms: f64 = item
        .attr("data-duration-ms")
        .await?
        .unwrap_or_default()
        .parse()?;
    item.find(Locator::Css(".rec-save")).await?.click().await?;
    let path = wait_for(Duration::from_secs(15), "the saved copy", || async {
        studio.attr("#recordings-list .rb-rec-path", "title").await
    })
    .await?;
    studio.screenshot("roombar-3-recordings").await?;
    let samples = decoded_samples(Path::new(&path))?;
    let decoded_ms = samples as f64 / 48.0;
    println!(
        "recording: listed {listed_ms} ms, decoded {decoded_ms:.0} ms, ran {} ms between the clicks",
        ran.as_millis()
    );
    assert!(
        (decoded_ms - listed_ms).abs() <= 100.0,
        "the file decodes to {decoded_ms} ms, the list says {listed_ms}"
    );
    assert!(
        (decoded_ms - ran.as_millis() as f64).abs() <= 1000.0,
        "the file decodes to {decoded_ms} ms, recorded for {} ms",
        ran.as_millis()
    );

    // 4. A listener joins with the share link and may apply; ending the room closes it.
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
    let ws_url = format!("{}/ws", url.replace("http://", "ws://"));
    let (mut ws, _) = tokio_tungstenite::connect_async(&ws_url).await?;
    ws.send(Message::text(
        json!({ "id": 1, "type": "join", "room": "roombar", "token": token }).to_string(),
    ))
    .await?;
    ws.send(Message::text(
        json!({ "id": 2, "type": "apply" }).to_string(),
    ))
    .await?;
    let mut applied = false;
    let deadline = Instant::now() + Duration::from_secs(10);
    while !applied && Instant::now() < deadline {
        let Ok(Some(Ok(Message::Text(t)))) =
            tokio::time::timeout(Duration::from_secs(5), ws.next()).await
        else {
            continue;
        };
        let v: Value = serde_json::from_str(&t)?;
        anyhow::ensure!(v["type"] != "error", "the share link's token: {v}");
        applied = v["type"] == "ok" && v["id"] == 2;
    }
    assert!(applied, "the listener applied with the share link's token");
    studio.click("#dismiss-room").await?;
    wait_for(Duration::from_secs(5), "the confirmation", || async {
        studio.text("#dismiss-dialog").await
    })
    .await?;
    studio.screenshot("roombar-4-dismiss-confirm").await?;
    studio.click("#dismiss-confirm").await?;
    let mut closed = None;
    let deadline = Instant::now() + Duration::from_secs(10);
    while closed.is_none() && Instant::now() < deadline {
        match tokio::time::timeout(Duration::from_secs(5), ws.next()).await {
            Ok(Some(Ok(Message::Text(t)))) => {
                let v: Value = serde_json::from_str(&t)?;
                if v["type"] == "closing" {
                    closed = Some(v["reason"].as_str().unwrap_or_default().to_owned());
                }
            }
            Ok(Some(Ok(Message::Close(frame)))) => {
                closed = Some(frame.map(|f| f.reason.to_string()).unwrap_or_default());
            }
            Ok(None) | Ok(Some(Err(_))) => closed = Some("socket closed".into()),
            _ => {}
        }
    }
    assert_eq!(
        closed.as_deref(),
        Some("dismissed"),
        "the listener is told the room ended"
    );
    let room = get(&format!("{url}/v1/rooms/roombar"), &bearer).await?;
    assert_eq!(room["dismissed"], true);
    let recs = get(&format!("{url}/v1/rooms/roombar/recordings"), &bearer).await?;
    assert_eq!(recs["recordings"].as_array().map(Vec::len), Some(1));
    studio.screenshot("roombar-5-ended").await?;
    studio.quit().await?;
    Ok(())
}
