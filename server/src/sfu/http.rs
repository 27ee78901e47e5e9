//! WebRTC signalling over HTTP: `POST /rtc/offer` with `{room, token, offer: {type, sdp}}`
//! answers `{type: "answer", sdp}`. The token is the room token of the WebSocket `join`, and the
//! member must have joined over the WebSocket first. Errors are `{code, message}`.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use onmic_room::{RoomId, token};
use serde::Deserialize;
use str0m::change::SdpOffer;

use super::driver::{Sfu, SfuConfig, SfuError};
use super::router::BombingPolicy;
use crate::AppState;

/// The body of `POST /rtc/offer`.
#[derive(Debug, Deserialize)]
pub struct OfferRequest {
    /// The room.
    pub room: RoomId,
    /// The member's room token.
    pub token: String,
    /// The SDP offer (`{"type": "offer", "sdp": "..."}`).
    pub offer: serde_json::Value,
}

#[derive(Clone)]
struct MediaState {
    app: Arc<AppState>,
    sfu: Option<Arc<Sfu>>,
}

/// Starts the SFU on the HTTP listener's IP (any free UDP port); `None` (logged) if it cannot
/// bind, and `/rtc/offer` then answers 503.
pub fn start_media(hub: &Arc<crate::Hub>, config: &crate::Config) -> Option<Sfu> {
    let udp = std::net::SocketAddr::new(config.listen.ip(), 0);
    let sfu = Sfu::start(
        hub.clone(),
        SfuConfig {
            udp,
            bombing: BombingPolicy {
                kick_and_ban: config.bombing_ban_ms.map(std::time::Duration::from_millis),
                ..BombingPolicy::default()
            },
            volume_interval: std::time::Duration::from_millis(500),
            shards: config.media_threads.unwrap_or(0),
        },
    );
    match sfu {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::error!(%e, %udp, "media (SFU) could not start; /rtc answers 503");
            None
        }
    }
}

/// The signalling routes, on the server's SFU (`AppState::media`).
pub fn routes<S: Clone + Send + Sync + 'static>(app: Arc<AppState>) -> Router<S> {
    let sfu = app.media.clone();
    Router::new()
        .route("/rtc/offer", post(offer))
        .with_state(MediaState { app, sfu })
}

fn error(status: StatusCode, code: &str, message: impl ToString) -> Response {
    let body = serde_json::json!({ "code": code, "message": message.to_string() });
    (status, Json(body)).into_response()
}

/// Longest `/rtc/offer` body (axum's default limit for a body read whole).
const MAX_OFFER_BYTES: usize = 2 * 1024 * 1024;

async fn offer(State(st): State<MediaState>, request: axum::extract::Request) -> Response {
    let peer = request
        .extensions()
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map(|c| c.0.ip());
    let bridged = crate::cluster::bridge::bridged(&st.app, request.headers());
    let (parts, body) = request.into_parts();
    let Ok(body) = axum::body::to_bytes(body, MAX_OFFER_BYTES).await else {
        return error(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            format!("the offer is over {MAX_OFFER_BYTES} bytes"),
        );
    };
    let req: OfferRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => return error(StatusCode::BAD_REQUEST, "malformed", e),
    };
    // In a cluster, the offer of a room held by another node is answered by that node's SFU
    // (its answer carries that node's media address: media never goes through this node).
    if let Some(cluster) = st.app.cluster.as_ref().filter(|_| !bridged)
        && st.app.hub.member_count(&req.room).is_err()
    {
        match cluster.node_of(&req.room.0).await {
            Ok(None) => {}
            Ok(Some(node)) => {
                let request = axum::extract::Request::from_parts(parts, body.into());
                return crate::cluster::bridge::forward(
                    cluster,
                    &node,
                    &req.room.0,
                    request,
                    peer,
                    MAX_OFFER_BYTES,
                )
                .await;
            }
            Err(e) => return crate::cluster::bridge::error_response(&e),
        }
    }
    let Some(sfu) = st.sfu.clone() else {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "media_unavailable",
            "the media service is not running",
        );
    };
    let cfg = &st.app.config;
    let claims = match token::verify(
        cfg.token_secret.as_bytes(),
        &req.token,
        &cfg.app_id.as_str().into(),
        &req.room,
        st.app.hub.now(),
    ) {
        Ok(c) => c,
        Err(e) => return error(StatusCode::UNAUTHORIZED, e.code(), e),
    };
    let mut offer_json = req.offer;
    if let Some(sdp) = offer_json.get_mut("sdp")
        && let Some(text) = sdp.as_str()
    {
        *sdp = serde_json::Value::String(without_red(text));
    }
    // A room that outgrew this node: a further listener's media goes to a relay node.
    if let Some(answer) =
        crate::cluster::relay::place_listener(&st.app, &sfu, &req.room, &claims.uid, &offer_json)
            .await
    {
        return answer;
    }
    let offer: SdpOffer = match serde_json::from_value(offer_json) {
        Ok(o) => o,
        Err(e) => return error(StatusCode::BAD_REQUEST, "bad_sdp", e),
    };
    match sfu.connect(req.room, claims.uid, offer).await {
        Ok(answer) => Json(answer).into_response(),
        Err(e) => {
            let status = match e {
                SfuError::NotMember => StatusCode::FORBIDDEN,
                SfuError::NoSuchRoom => StatusCode::NOT_FOUND,
                SfuError::BadOffer(_) => StatusCode::BAD_REQUEST,
                _ => StatusCode::SERVICE_UNAVAILABLE,
            };
            error(status, e.code(), e)
        }
    }
}

/// The offer without RED (RFC 2198 redundant audio, `a=rtpmap:N red/48000/2`): the SFU does not
/// negotiate RED (`docs/sfu.md`), and str0m, which keeps RED off once the first audio m-line
/// locked its payload types, logs a warning for every further m-line that still offers it
/// (`Ignore remote PT RED change`, ~10 per browser offer). The RED payload types are removed
/// from each `m=audio` line with their `rtpmap`, `fmtp` and `rtcp-fb` lines; everything else is
/// kept byte for byte (line ends included). Text that is not SDP comes back unchanged for str0m
/// to refuse.
fn without_red(sdp: &str) -> String {
    let eol = if sdp.contains("\r\n") { "\r\n" } else { "\n" };
    let lines: Vec<&str> = sdp.split(eol).collect();
    // The RED payload types, per media section (a section starts at its `m=` line).
    let mut red: Vec<String> = Vec::new();
    let mut out: Vec<String> = Vec::with_capacity(lines.len());
    let mut section_start = 0;
    let flush = |out: &mut Vec<String>, start: usize, red: &[String]| {
        if red.is_empty() || start >= out.len() || !out[start].starts_with("m=audio ") {
            return;
        }
        // `m=audio PORT PROTO PT PT ...`: keep the first three fields, drop RED's PTs.
        let fields: Vec<&str> = out[start].split(' ').collect();
        if fields.len() > 3 {
            let kept: Vec<&str> = fields[..3]
                .iter()
                .copied()
                .chain(
                    fields[3..]
                        .iter()
                        .copied()
                        .filter(|pt| !red.iter().any(|r| r == pt)),
                )
                .collect();
            out[start] = kept.join(" ");
        }
    };
    for line in lines {
        if line.starts_with("m=") {
            flush(&mut out, section_start, &red);
            red.clear();
            section_start = out.len();
        } else if let Some(rest) = line.strip_prefix("a=rtpmap:")
            && let Some((pt, codec)) = rest.split_once(' ')
            && codec.to_ascii_lowercase().starts_with("red/")
        {
            red.push(pt.to_owned());
            continue;
        }
        let about_red = ["a=fmtp:", "a=rtcp-fb:"].iter().any(|prefix| {
            line.strip_prefix(prefix)
                .and_then(|rest| rest.split(' ').next())
                .is_some_and(|pt| red.iter().any(|r| r == pt))
        });
        if !about_red {
            out.push(line.to_owned());
        }
    }
    flush(&mut out, section_start, &red);
    out.join(eol)
}

#[cfg(test)]
mod tests {
    use super::without_red;

    /// Two audio m-lines as Chromium offers them (Opus 111, RED 63 carrying Opus), abridged.
    const CHROMIUM: &str = "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n\
a=group:BUNDLE 0 1\r\n\
m=audio 9 UDP/TLS/RTP/SAVPF 111 63 9 0\r\nc=IN IP4 0.0.0.0\r\na=mid:0\r\na=sendonly\r\n\
a=rtpmap:111 opus/48000/2\r\na=rtcp-fb:111 transport-cc\r\n\
a=fmtp:111 minptime=10;useinbandfec=1;stereo=1\r\n\
a=rtpmap:63 red/48000/2\r\na=fmtp:63 111/111\r\na=rtpmap:9 G722/8000\r\na=rtpmap:0 PCMU/8000\r\n\
m=audio 9 UDP/TLS/RTP/SAVPF 111 63\r\nc=IN IP4 0.0.0.0\r\na=mid:1\r\na=recvonly\r\n\
a=rtpmap:111 opus/48000/2\r\na=fmtp:111 minptime=10\r\na=rtpmap:63 red/48000/2\r\n\
a=fmtp:63 111/111\r\n";

    #[test]
    fn red_goes_from_every_audio_section_and_nothing_else_changes() {
        let out = without_red(CHROMIUM);
        assert!(!out.contains("red/"), "{out}");
        assert!(!out.contains(" 63"), "{out}");
        assert!(!out.contains("a=fmtp:63"), "{out}");
        assert!(
            out.contains("m=audio 9 UDP/TLS/RTP/SAVPF 111 9 0\r\n"),
            "{out}"
        );
        assert!(out.contains("m=audio 9 UDP/TLS/RTP/SAVPF 111\r\n"), "{out}");
        for kept in [
            "a=rtpmap:111 opus/48000/2",
            "a=fmtp:111 minptime=10;useinbandfec=1;stereo=1",
            "a=rtcp-fb:111 transport-cc",
            "a=rtpmap:9 G722/8000",
            "a=mid:1",
        ] {
            assert!(out.contains(kept), "{kept} kept: {out}");
        }
        assert!(out.ends_with("\r\n"), "line ends kept");
        // What is left is an offer str0m takes.
        let offer = str0m::change::SdpOffer::from_sdp_string(&out);
        assert!(offer.is_ok(), "{offer:?}");
    }

    #[test]
    fn an_offer_without_red_and_text_that_is_not_sdp_come_back_unchanged() {
        let plain = CHROMIUM
            .replace(" 63", "")
            .replace("a=rtpmap:63 red/48000/2\r\na=fmtp:63 111/111\r\n", "");
        assert_eq!(without_red(&plain), plain);
        for junk in [
            "",
            "not sdp at all",
            "m=audio",
            "m=audio 9\na=rtpmap:63 red/48000/2",
            "a=rtpmap:63 red/48000/2\na=fmtp:63",
            "a=rtpmap:\na=rtpmap: \nm=\n\u{0}\u{ffff}",
        ] {
            // Never a panic; junk stays junk for str0m to refuse.
            let _ = without_red(junk);
        }
        assert_eq!(without_red("not sdp at all"), "not sdp at all");
        assert_eq!(
            without_red("m=audio 9 RTP/AVP 63\na=rtpmap:63 red/48000/2"),
            "m=audio 9 RTP/AVP"
        );
    }
}
