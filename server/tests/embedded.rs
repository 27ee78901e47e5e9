//! The server embedded in another process, as the Studio's local room runs it.

use onmic_server::{Config, start};

#[tokio::test]
async fn embedded_server_serves_on_an_ephemeral_port_and_stops() {
    let config = Config {
        listen: "127.0.0.1:0".parse().expect("addr"),
        database: Some(":memory:".into()),
        ..Config::default()
    };
    let server = start(config).await.expect("starts");
    assert_ne!(server.local_addr().port(), 0, "a real port was picked");
    let url = server.url();
    let health: serde_json::Value = reqwest::get(format!("{url}/health"))
        .await
        .expect("answers")
        .json()
        .await
        .expect("json");
    assert_eq!(health["status"], "ok");
    server.shutdown().await.expect("clean shutdown");
    assert!(
        reqwest::get(format!("{url}/health")).await.is_err(),
        "stopped"
    );
}
