//! The listener web page: `GET /listen/{room}?token=…` serves a plain HTML page (ES module +
//! CSS, no build step, embedded in the binary) that joins the room as audience over the WebSocket
//! protocol, listens over WebRTC (`POST /rtc/offer`), shows the seats with speaking ripples, chat
//! and gifts, and lets a listener apply for a seat and speak. Design: `docs/listener.md`.
//!
//! Every response carries a strict Content-Security-Policy: scripts, styles and connections only
//! from this server, no inline code, no plugins, no framing.

use axum::Router;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

/// The page's HTML (the room and token are read from the URL by the script).
pub const LISTENER_HTML: &str = include_str!("../static/listener.html");
/// The page's script (an ES module).
pub const LISTENER_JS: &str = include_str!("../static/listener.js");
/// The page's styles.
pub const LISTENER_CSS: &str = include_str!("../static/listener.css");

/// The Content-Security-Policy of the listener page and its assets. `connect-src 'self'` covers
/// the WebSocket (`ws:`/`wss:` to the same host) and `POST /rtc/offer`; media flows over WebRTC,
/// which CSP does not govern.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
connect-src 'self'; img-src 'self' data:; media-src 'self' blob: mediastream:; \
base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// The page's routes.
pub fn routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route("/listen/{*room}", get(page))
        .route("/static/listener.js", get(script))
        .route("/static/listener.css", get(styles))
}

fn with_headers(content_type: &'static str, body: &'static str) -> Response {
    let mut r = body.into_response();
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    // The URL carries the listener's token: never send it to another site.
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        "permissions-policy",
        HeaderValue::from_static("microphone=(self), camera=()"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

async fn page() -> Response {
    with_headers("text/html; charset=utf-8", LISTENER_HTML)
}

async fn script() -> Response {
    with_headers("text/javascript; charset=utf-8", LISTENER_JS)
}

async fn styles() -> Response {
    with_headers("text/css; charset=utf-8", LISTENER_CSS)
}
