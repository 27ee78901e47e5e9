//! `onmic-server token ...` issues a token the server accepts; bad arguments are clear errors;
//! the issued token is in the audit log of whichever store is configured (PostgreSQL too).

mod common;

use std::process::Command;

use common::pg::PgCluster;

use onmic_room::Timestamp;
use onmic_room::token::{self, Privilege, TokenError};

const BIN: &str = env!("CARGO_BIN_EXE_onmic-server");

fn now() -> Timestamp {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970");
    Timestamp(u64::try_from(d.as_millis()).expect("fits"))
}

#[test]
fn token_command_issues_a_verifiable_token() {
    let out = Command::new(BIN)
        .args([
            "token",
            "--room",
            "r9",
            "--uid",
            "alice",
            "--privileges",
            "join,admin",
            "--ttl",
            "60",
        ])
        .env("ONMIC_TOKEN_SECRET", "cli-secret")
        .env("ONMIC_APP_ID", "cli-app")
        .output()
        .expect("runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let tok = String::from_utf8(out.stdout).expect("utf-8");
    let tok = tok.trim();
    let claims = token::verify(b"cli-secret", tok, &"cli-app".into(), &"r9".into(), now())
        .expect("verifies");
    assert_eq!(claims.uid.as_str(), "alice");
    assert!(claims.allows(Privilege::Admin, now()));
    assert!(!claims.allows(Privilege::PublishAudio, now()));
    assert!(matches!(
        token::verify(
            b"cli-secret",
            tok,
            &"cli-app".into(),
            &"r9".into(),
            now().plus(std::time::Duration::from_secs(61))
        ),
        Err(TokenError::Expired { .. })
    ));
    assert_eq!(
        token::verify(b"other", tok, &"cli-app".into(), &"r9".into(), now()),
        Err(TokenError::BadSignature)
    );
}

#[test]
fn token_command_refuses_bad_arguments() {
    let out = Command::new(BIN)
        .args(["token", "--room", "r", "--uid", "u", "--privileges", "root"])
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("unknown privilege"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn token_command_audits_into_postgres_and_refuses_two_stores() {
    let pg = PgCluster::start();
    let url = pg.database("onmic");
    let run = |extra: &[(&str, &str)]| {
        let mut cmd = Command::new(BIN);
        cmd.args(["token", "--room", "r1", "--uid", "bob"])
            .env("ONMIC_DATABASE_URL", &url)
            .env("ONMIC_TOKEN_SECRET", "cli-secret");
        for (k, v) in extra {
            cmd.env(k, v);
        }
        cmd.output().expect("runs")
    };
    let out = run(&[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        pg.sql(
            "onmic",
            "SELECT count(*) FROM audit WHERE action = 'issue_token' AND actor = 'cli' AND room = 'r1'"
        ),
        "1"
    );
    let out = run(&[("ONMIC_DATABASE", "/tmp/onmic-should-not-exist.sqlite3")]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("both set"), "{err}");
    assert!(!std::path::Path::new("/tmp/onmic-should-not-exist.sqlite3").exists());
}
