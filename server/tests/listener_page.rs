//! The listener page is served with strict headers, and its script never turns text into HTML
//! (the browser behaviour itself is tested end to end in `tests/e2e/browser.rs`).

mod common;

use common::*;

#[tokio::test]
async fn the_page_and_its_assets_are_served_with_a_strict_csp() {
    let server = server(config()).await;
    let base = server.url();
    let client = reqwest::Client::new();
    for (path, content_type, needle) in [
        (
            "/listen/r1",
            "text/html; charset=utf-8",
            "<script type=\"module\" src=\"/static/listener.js\">",
        ),
        (
            "/listen/a/room/with/slashes",
            "text/html; charset=utf-8",
            "Tap to listen",
        ),
        (
            "/static/listener.js",
            "text/javascript; charset=utf-8",
            "withStereo",
        ),
        (
            "/static/listener.css",
            "text/css; charset=utf-8",
            "@keyframes ripple",
        ),
    ] {
        let r = client
            .get(format!("{base}{path}"))
            .send()
            .await
            .expect("answers");
        assert_eq!(r.status(), 200, "{path}");
        let h = r.headers().clone();
        let get = |name: &str| {
            h.get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_owned()
        };
        assert_eq!(get("content-type"), content_type, "{path}");
        let csp = get("content-security-policy");
        for directive in [
            "default-src 'none'",
            "script-src 'self'",
            "style-src 'self'",
            "connect-src 'self'",
            "frame-ancestors 'none'",
            "base-uri 'none'",
        ] {
            assert!(csp.contains(directive), "{path}: {directive} in {csp}");
        }
        assert!(
            !csp.contains("unsafe-inline") && !csp.contains("unsafe-eval"),
            "{csp}"
        );
        assert_eq!(get("x-content-type-options"), "nosniff", "{path}");
        assert_eq!(get("referrer-policy"), "no-referrer", "{path}");
        let body = r.text().await.expect("body");
        assert!(body.contains(needle), "{path} serves the right file");
    }
    // Nothing else is served from /static.
    let r = client
        .get(format!("{base}/static/../Cargo.toml"))
        .send()
        .await
        .expect("answers");
    assert_eq!(r.status(), 404);
}

#[test]
fn the_script_puts_user_text_into_the_page_only_as_text() {
    let js = onmic_server::page::LISTENER_JS;
    for sink in [
        "innerHTML",
        "outerHTML",
        "insertAdjacentHTML",
        "document.write",
        "eval(",
        "new Function",
        "setTimeout(\"",
    ] {
        assert!(!js.contains(sink), "listener.js uses {sink}");
    }
    assert!(js.contains("textContent"));
    // No inline script or style in the HTML (the CSP would block it anyway).
    let html = onmic_server::page::LISTENER_HTML;
    assert!(!html.contains("<script>") && !html.contains("style=") && !html.contains("onclick"));
}
