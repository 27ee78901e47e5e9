//! Reading what the server sends: WebSocket frames, the `/rtc/offer` answer, the server URL.
//! Everything here is outside data: it returns errors, never panics.

use onmic_room::protocol::ServerMessage;

use crate::error::ClientError;

/// Largest frame the client accepts (the protocol's limit is 16 KiB for client frames; server
/// frames such as `joined` carry the whole room and may be bigger).
pub const MAX_SERVER_FRAME: usize = 4 * 1024 * 1024;

/// What one WebSocket text frame from the server is.
#[derive(Debug)]
pub enum Frame {
    /// A message of the protocol.
    Message(Box<ServerMessage>),
    /// Valid JSON with a `type` this client does not know (a newer server): ignored.
    Unknown(String),
}

/// Parses one server frame. Unknown message types are not errors (a newer server may add some);
/// anything else that does not match the protocol is [`ClientError::Malformed`].
pub fn parse_frame(text: &str) -> Result<Frame, ClientError> {
    if text.len() > MAX_SERVER_FRAME {
        return Err(ClientError::Malformed(format!(
            "a frame of {} bytes (limit {MAX_SERVER_FRAME})",
            text.len()
        )));
    }
    let value: serde_json::Value =
        serde_json::from_str(text).map_err(|e| ClientError::Malformed(format!("not JSON: {e}")))?;
    let Some(kind) = value.get("type").and_then(|t| t.as_str()) else {
        return Err(ClientError::Malformed(
            "a frame without a string \"type\"".into(),
        ));
    };
    const KNOWN: [&str; 8] = [
        "joined",
        "ok",
        "error",
        "pong",
        "snapshot",
        "event",
        "volume_indication",
        "closing",
    ];
    if !KNOWN.contains(&kind) {
        return Ok(Frame::Unknown(kind.to_owned()));
    }
    let kind = kind.to_owned();
    serde_json::from_value::<ServerMessage>(value)
        .map(|m| Frame::Message(Box::new(m)))
        .map_err(|e| ClientError::Malformed(format!("a {kind:?} frame: {e}")))
}

/// The parts of the server URL the client needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerUrl {
    /// `http://host:port` without a trailing slash.
    pub http: String,
    /// `ws://host:port/ws`.
    pub ws: String,
    /// `host:port`, to find the local address that routes to the server.
    pub authority: String,
}

/// Checks and splits `http://host:port[/]`.
pub fn server_url(url: &str) -> Result<ServerUrl, ClientError> {
    let bad = || ClientError::BadServerUrl(url.to_owned());
    let rest = url.strip_prefix("http://").ok_or_else(bad)?;
    let authority = rest.trim_end_matches('/');
    if authority.is_empty() || authority.contains('/') || !authority.contains(':') {
        return Err(bad());
    }
    let (_, port) = authority.rsplit_once(':').ok_or_else(bad)?;
    port.parse::<u16>().map_err(|_| bad())?;
    Ok(ServerUrl {
        http: format!("http://{authority}"),
        ws: format!("ws://{authority}/ws"),
        authority: authority.to_owned(),
    })
}

/// Reads the `/rtc/offer` response: the answer SDP on 200, the server's `{code, message}`
/// otherwise.
pub fn parse_answer(status: u16, body: &[u8]) -> Result<String, ClientError> {
    let value: serde_json::Value = serde_json::from_slice(body).map_err(|e| {
        ClientError::Malformed(format!(
            "the /rtc/offer reply (status {status}) is not JSON: {e}"
        ))
    })?;
    if status != 200 {
        let field = |k: &str| {
            value
                .get(k)
                .and_then(|v| v.as_str())
                .unwrap_or("")
                .to_owned()
        };
        let code = field("code");
        if code.is_empty() {
            return Err(ClientError::Malformed(format!(
                "the /rtc/offer reply has status {status} but no error code"
            )));
        }
        return Err(ClientError::Refused {
            code,
            message: field("message"),
        });
    }
    match (
        value.get("type").and_then(|t| t.as_str()),
        value.get("sdp").and_then(|s| s.as_str()),
    ) {
        (Some("answer"), Some(sdp)) if sdp.starts_with("v=0") => Ok(sdp.to_owned()),
        _ => Err(ClientError::Malformed(
            "the /rtc/offer reply is not {\"type\":\"answer\",\"sdp\":\"v=0...\"}".into(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn malformed_frames_are_errors_not_panics() {
        for text in [
            "",
            "not json",
            "[]",
            "42",
            "{}",
            r#"{"type":5}"#,
            r#"{"type":"ok"}"#,
            r#"{"type":"ok","id":1,"version":-3}"#,
            r#"{"type":"event","event":{"version":1}}"#,
            r#"{"type":"joined","id":1,"uid":"u"}"#,
            r#"{"type":"closing","reason":"no_such_reason","message":""}"#,
            "{\"type\":\"error\",\"code\":\"x\",\"message\":\"\u{0}\",\"id\":\"one\"}",
        ] {
            match parse_frame(text) {
                Err(ClientError::Malformed(_)) => {}
                other => panic!("{text:?} gave {other:?}"),
            }
        }
        let huge = format!(
            r#"{{"type":"ok","pad":"{}"}}"#,
            "x".repeat(MAX_SERVER_FRAME)
        );
        assert!(matches!(parse_frame(&huge), Err(ClientError::Malformed(_))));
    }

    #[test]
    fn known_frames_parse_and_unknown_types_are_ignored() {
        match parse_frame(r#"{"type":"ok","id":3,"version":9}"#).expect("ok frame") {
            Frame::Message(m) => assert!(matches!(
                *m,
                ServerMessage::Ok {
                    id: Some(3),
                    version: 9
                }
            )),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            parse_frame(r#"{"type":"volumes","levels":[]}"#),
            Ok(Frame::Unknown(t)) if t == "volumes"
        ));
        match parse_frame(
            r#"{"type":"volume_indication","speakers":[{"uid":"a","volume":99,"speaking":true}]}"#,
        )
        .expect("volume frame")
        {
            Frame::Message(m) => assert!(matches!(*m, ServerMessage::VolumeIndication { .. })),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            parse_frame(r#"{"type":"volume_indication","speakers":[{"uid":"a","volume":300}]}"#),
            Err(ClientError::Malformed(_))
        ));
    }

    #[test]
    fn server_urls_are_checked() {
        let u = server_url("http://127.0.0.1:8080/").expect("valid");
        assert_eq!(u.ws, "ws://127.0.0.1:8080/ws");
        assert_eq!(u.http, "http://127.0.0.1:8080");
        for bad in [
            "",
            "127.0.0.1:80",
            "https://h:1",
            "http://",
            "http://host",
            "http://h:99999",
            "http://h:1/x",
        ] {
            assert!(
                matches!(server_url(bad), Err(ClientError::BadServerUrl(_))),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn offer_replies_are_checked() {
        assert_eq!(
            parse_answer(200, br#"{"type":"answer","sdp":"v=0\r\n"}"#).expect("answer"),
            "v=0\r\n"
        );
        match parse_answer(403, br#"{"code":"not_member","message":"join first"}"#) {
            Err(ClientError::Refused { code, .. }) => assert_eq!(code, "not_member"),
            other => panic!("{other:?}"),
        }
        for (status, body) in [
            (200, &b"<html>"[..]),
            (200, br#"{"type":"offer","sdp":"v=0"}"#),
            (200, br#"{"type":"answer","sdp":7}"#),
            (200, br#"{"type":"answer","sdp":"hello"}"#),
            (502, br#"{"oops":1}"#),
            (500, b""),
        ] {
            assert!(
                matches!(parse_answer(status, body), Err(ClientError::Malformed(_))),
                "{status} {:?}",
                String::from_utf8_lossy(body)
            );
        }
    }
}
