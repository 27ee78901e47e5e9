//! Issue 13, acceptance 5 and the engine/server half of 6: a real `onmic-server song import`
//! into real SQLite, a real server on loopback, the audio crate's catalog client (license →
//! download with progress → key → in-memory decryption) and the music player: the played audio
//! matches the decoded original; licenses of another member, another room or past their expiry
//! are refused; a tampered or cut package fails authentication; no plaintext of the song is
//! found on disk during or after playback.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant, SystemTime};

use common::*;
use onmic_audio::Block;
use onmic_audio::music::catalog::{CatalogClient, CatalogError, decrypt_to_source};
use onmic_audio::music::{
    MusicBus, MusicPlayer, MusicSource, PlayOptions, PlayerState, decode_to_48k,
};
use onmic_room::song_package::PackageError;
use serde_json::Value;

const LRC: &str =
    "[ti:Chirp]\n[ar:Onmic]\n[00:00.50]one\n[00:01.50]two\n[00:02.50]three\n[00:03.20]four\n";

/// A 4 s 44.1 kHz stereo FLAC: a rising chirp on the left, noise on the right (not periodic, so
/// a correlation can only be high if the samples line up).
fn make_song(dir: &Path) -> PathBuf {
    let path = dir.join("chirp.flac");
    let st = Command::new("ffmpeg")
        .args([
            "-hide_banner",
            "-loglevel",
            "error",
            "-y",
            "-f",
            "lavfi",
            "-i",
        ])
        .arg("aevalsrc=0.5*sin(2*PI*(150+400*t)*t)|0.3*(random(0)-0.5):s=44100:d=4")
        .args(["-c:a", "flac"])
        .arg(&path)
        .status()
        .expect("ffmpeg runs (xtask/apt/music.txt installs it)");
    assert!(st.success());
    path
}

fn import(db: &Path, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(BIN)
        .args(["song", "import"])
        .args(args)
        .env("ONMIC_DATABASE", db)
        .env_remove("RUST_LOG")
        .output()
        .expect("runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Every file under `dirs` (recursively, skipping `except`) modified since `since`: does any
/// hold one of `needles`?
fn plaintext_on_disk(
    dirs: &[PathBuf],
    except: &Path,
    since: SystemTime,
    needles: &[&[u8]],
) -> Vec<String> {
    let mut found = Vec::new();
    let mut stack: Vec<PathBuf> = dirs.to_vec();
    let mut scanned = 0;
    while let Some(d) = stack.pop() {
        if d.starts_with(except) {
            continue;
        }
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            let Ok(meta) = std::fs::symlink_metadata(&p) else {
                continue;
            };
            if meta.is_dir() {
                stack.push(p);
            } else if meta.is_file()
                && meta.len() < 256 << 20
                && meta.modified().is_ok_and(|m| m >= since)
                && !p.starts_with(except)
            {
                let Ok(bytes) = std::fs::read(&p) else {
                    continue;
                };
                scanned += 1;
                if needles
                    .iter()
                    .any(|n| bytes.windows(n.len()).any(|w| w == *n))
                {
                    found.push(p.display().to_string());
                }
            }
        }
    }
    assert!(scanned > 0, "the scan read no file at all");
    found
}

fn correlation(a: &[f32], b: &[f32]) -> f64 {
    let n = a.len().min(b.len());
    let (ma, mb) = (
        a[..n].iter().map(|&x| f64::from(x)).sum::<f64>() / n as f64,
        b[..n].iter().map(|&x| f64::from(x)).sum::<f64>() / n as f64,
    );
    let (mut ab, mut aa, mut bb) = (0.0, 0.0, 0.0);
    for i in 0..n {
        let (x, y) = (f64::from(a[i]) - ma, f64::from(b[i]) - mb);
        ab += x * y;
        aa += x * x;
        bb += y * y;
    }
    ab / (aa * bb).sqrt()
}

fn refused_code(r: Result<impl std::fmt::Debug, CatalogError>) -> String {
    match r {
        Err(CatalogError::Refused { code, message, .. }) => {
            assert!(!message.is_empty());
            code
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[test]
fn import_license_download_decrypt_play_and_every_refusal() {
    let started = SystemTime::now() - Duration::from_secs(1);
    let src = tempfile::tempdir().expect("tmp");
    let data = tempfile::tempdir().expect("tmp");
    let db = data.path().join("onmic.sqlite3");
    let song_path = make_song(src.path());
    let original = std::fs::read(&song_path).expect("read");
    std::fs::write(src.path().join("song.lrc"), LRC).expect("write");
    std::fs::write(src.path().join("bad.lrc"), "no tags here\n").expect("write");
    std::fs::write(src.path().join("notaudio.bin"), vec![7u8; 5000]).expect("write");
    let s = |p: &str| src.path().join(p).display().to_string();
    let song = song_path.display().to_string();

    // Import: ok, then a taken code, a non-audio file and malformed lyrics are clear errors.
    let (ok, out, err) = import(
        &db,
        &[
            &song,
            "--title",
            "Chirp",
            "--artist",
            "Onmic",
            "--lyrics",
            &s("song.lrc"),
            "--code",
            "chirp1",
        ],
    );
    assert!(ok, "{err}");
    let summary: Value = serde_json::from_str(out.trim()).expect("JSON summary");
    assert_eq!(summary["code"], "chirp1");
    assert!(
        (summary["duration_ms"].as_u64().unwrap() as i64 - 4000).abs() <= 5,
        "{summary}"
    );
    let (ok, _, err) = import(
        &db,
        &[
            &song, "--title", "Chirp", "--artist", "Onmic", "--code", "chirp1",
        ],
    );
    assert!(!ok && err.contains("already in the catalog"), "{err}");
    let (ok, _, err) = import(&db, &[&s("notaudio.bin"), "--title", "X", "--artist", "Y"]);
    assert!(!ok && err.contains("not a playable audio file"), "{err}");
    let (ok, _, err) = import(
        &db,
        &[
            &song,
            "--title",
            "X",
            "--artist",
            "Y",
            "--lyrics",
            &s("bad.lrc"),
        ],
    );
    assert!(!ok && err.contains("lyrics are not LRC"), "{err}");
    let (ok, _, err) = import(
        &db,
        &[&song, "--title", "X", "--artist", "Y", "--code", "bad code"],
    );
    assert!(!ok && err.contains("song code"), "{err}");

    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let server = rt.block_on(server(onmic_server::Config {
        database: Some(db.clone()),
        ..config()
    }));
    let base = server.url();
    rt.block_on(async {
        create_room(&base, "r1", "host").await;
        create_room(&base, "r2", "host").await;
    });
    let alice = CatalogClient::new(&base, &rt.block_on(token(&base, "r1", "alice")));
    let bob = CatalogClient::new(&base, &rt.block_on(token(&base, "r1", "bob")));
    let alice_r2 = CatalogClient::new(&base, &rt.block_on(token(&base, "r2", "alice")));
    let stranger = CatalogClient::new(&base, "v1.bogus.token");

    // The import is in the audit log.
    let (status, audit) = rt.block_on(rest(&base, "get", "/v1/audit", None));
    assert_eq!(status, 200);
    let imports: Vec<&Value> = audit["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == "song_import")
        .collect();
    assert_eq!(imports.len(), 1, "{audit}");
    assert_eq!(imports[0]["detail"]["song"]["code"], "chirp1");

    // Search.
    let found = alice.search("CHIRP").expect("search");
    assert_eq!(found.len(), 1);
    assert_eq!(
        (
            found[0].title.as_str(),
            found[0].artist.as_str(),
            found[0].has_lyrics
        ),
        ("Chirp", "Onmic", true)
    );
    assert!(alice.search("onmi").expect("by artist").len() == 1);
    assert!(alice.search("nothing like it").expect("search").is_empty());
    assert!(
        alice
            .search("%")
            .expect("a LIKE wildcard is literal")
            .is_empty()
    );
    assert_eq!(refused_code(stranger.search("")), "unauthorized");
    assert_eq!(refused_code(alice.license("nope", 60)), "no_such_song");

    // License → preload with progress → play.
    let lic = alice.license("chirp1", 60).expect("license");
    assert_eq!(
        (lic.uid.as_str(), lic.room.as_str(), lic.song.as_str()),
        ("alice", "r1", "chirp1")
    );
    let mut progress = Vec::new();
    let decrypted = alice
        .preload(&lic, |got, total| progress.push((got, total)))
        .expect("preload");
    let total = found[0].package_bytes;
    assert!(progress.len() > 1, "{progress:?}");
    assert!(progress.windows(2).all(|w| w[0].0 <= w[1].0));
    assert_eq!(
        *progress.last().unwrap(),
        (total, total),
        "Content-Length is the package size"
    );
    let lyrics = decrypted.lyrics.clone().expect("lyrics");

    let needles: Vec<&[u8]> = [
        original.len() / 4,
        original.len() / 2,
        original.len() * 3 / 4,
    ]
    .iter()
    .map(|&at| &original[at..at + 64])
    .collect();
    let mut scan_dirs = vec![data.path().to_path_buf(), std::env::temp_dir()];
    if let Some(home) = std::env::var_os("HOME") {
        for sub in [
            ".local/share/app.onmic.studio",
            ".cache/app.onmic.studio",
            ".config/app.onmic.studio",
        ] {
            scan_dirs.push(Path::new(&home).join(sub));
        }
    }

    let (player, voice) =
        MusicPlayer::open(&decrypted.source, PlayOptions::default()).expect("open");
    let mut bus = MusicBus::new();
    bus.add(voice).expect("add");
    let (mut p, mut l) = (Block::silent(2), Block::silent(2));
    let mut played: Vec<f32> = Vec::new();
    let mut lines_seen = Vec::new();
    let mut scanned_during = false;
    for _ in 0..1000 {
        let t = Instant::now();
        while player.buffered_chunks() == 0
            && !player.decoder_done()
            && t.elapsed() < Duration::from_secs(5)
        {
            std::thread::sleep(Duration::from_micros(200));
        }
        bus.mix(0.0, &mut p, &mut l);
        for i in 0..p.channel(0).len() {
            played.push(p.channel(0)[i]);
            played.push(p.channel(1)[i]);
        }
        let pos = player.position_ms();
        if let Some(line) = lyrics.line_at(pos)
            && lines_seen.last() != Some(&line.text)
        {
            lines_seen.push(line.text.clone());
        }
        if pos >= 2000 && !scanned_during {
            let hits = plaintext_on_disk(&scan_dirs, src.path(), started, &needles);
            assert!(
                hits.is_empty(),
                "plaintext song bytes on disk during playback: {hits:?}"
            );
            scanned_during = true;
        }
        if matches!(player.state(), PlayerState::Finished | PlayerState::Failed) {
            break;
        }
    }
    assert_eq!(player.state(), PlayerState::Finished);
    assert!(scanned_during);
    assert_eq!(lines_seen, ["one", "two", "three", "four"]);
    let reference = decode_to_48k(&MusicSource::File(song_path.clone()))
        .expect("decode original")
        .pcm;
    assert!(
        (played.len() as i64 - reference.len() as i64).abs() < 2 * 480 * 2,
        "{} vs {}",
        played.len(),
        reference.len()
    );
    let c = correlation(&played, &reference);
    println!("correlation of the played catalog song with the decoded original: {c:.6}");
    assert!(c >= 0.99, "correlation {c}");
    drop(bus);
    drop(player);
    let hits = plaintext_on_disk(&scan_dirs, src.path(), started, &needles);
    assert!(
        hits.is_empty(),
        "plaintext song bytes on disk after playback: {hits:?}"
    );
    // The scan would see them: the original file itself holds the needles.
    assert!(
        !plaintext_on_disk(
            &[src.path().to_path_buf()],
            Path::new("/nonexistent"),
            started,
            &needles
        )
        .is_empty()
    );

    // Each license is audited with the member and its address.
    let (_, audit) = rt.block_on(rest(&base, "get", "/v1/audit?room=r1", None));
    let licenses: Vec<&Value> = audit["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == "song_license")
        .collect();
    assert_eq!(licenses.len(), 1, "{audit}");
    assert_eq!(licenses[0]["actor"], "member:alice");
    assert!(
        licenses[0]["origin"]
            .as_str()
            .unwrap()
            .starts_with("127.0.0.1:"),
        "{audit}"
    );

    // Refusals: another member's license, another room's license, an expired one, a forged one.
    assert_eq!(
        refused_code(bob.preload(&lic, |_, _| {})),
        "license_wrong_member"
    );
    assert_eq!(
        refused_code(alice_r2.preload(&lic, |_, _| {})),
        "license_wrong_room"
    );
    let short = alice.license("chirp1", 1).expect("license");
    std::thread::sleep(Duration::from_millis(1300));
    assert_eq!(
        refused_code(alice.preload(&short, |_, _| {})),
        "license_expired"
    );
    let mut forged = lic.clone();
    forged.license = forged.license.replacen("sl1.", "sl1.00", 1);
    assert_eq!(
        refused_code(alice.preload(&forged, |_, _| {})),
        "license_invalid"
    );
    let bad_ttl = alice.license("chirp1", 10 * 86_400);
    assert_eq!(refused_code(bad_ttl), "invalid_request");

    // The package route: Content-Length, and a license is required.
    let http = reqwest::blocking::Client::new();
    let get = |license: Option<&str>| {
        let mut r = http.get(format!("{base}/v1/songs/chirp1/package")).header(
            "authorization",
            format!("Bearer {}", rt.block_on(token(&base, "r1", "alice"))),
        );
        if let Some(l) = license {
            r = r.header("x-onmic-license", l);
        }
        r.send().expect("answers")
    };
    let resp = get(None);
    assert_eq!(resp.status(), 403);
    let body: Value = resp.json().expect("json");
    assert_eq!(body["code"], "license_invalid");
    let resp = get(Some(&lic.license));
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.content_length(), Some(total));
    let package = resp.bytes().expect("bytes").to_vec();
    assert!(
        package.windows(64).all(|w| w != needles[1]),
        "the package holds plaintext"
    );

    // Tampered and cut packages fail authentication with clear errors.
    let key_reply: Value = http
        .post(format!("{base}/v1/songs/chirp1/key"))
        .header(
            "authorization",
            format!("Bearer {}", rt.block_on(token(&base, "r1", "alice"))),
        )
        .json(&serde_json::json!({ "license": lic.license }))
        .send()
        .expect("answers")
        .json()
        .expect("json");
    let key: Vec<u8> = (0..32)
        .map(|i| {
            u8::from_str_radix(&key_reply["key"].as_str().unwrap()[2 * i..2 * i + 2], 16).unwrap()
        })
        .collect();
    assert!(decrypt_to_source(&package, &key).is_ok());
    let mut tampered = package.clone();
    tampered[package.len() / 2] ^= 1;
    let e = decrypt_to_source(&tampered, &key).expect_err("tampered");
    assert!(matches!(e, PackageError::Authentication { .. }), "{e}");
    assert!(e.to_string().contains("failed authentication"), "{e}");
    let e = decrypt_to_source(&package[..package.len() - 100], &key).expect_err("cut");
    assert!(matches!(e, PackageError::Truncated { .. }), "{e}");

    rt.block_on(server.shutdown()).expect("clean shutdown");
}
