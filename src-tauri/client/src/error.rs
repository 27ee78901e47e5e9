//! The client's errors. Each one says what went wrong and what the user can do about it.

use onmic_room::protocol::CloseReason;

/// Why a client call failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The server URL is not an `http://host:port` URL.
    #[error(
        "the server address {0:?} is not an http:// URL with a host and port; check the server setting"
    )]
    BadServerUrl(String),
    /// The server could not be reached (TCP, WebSocket or HTTP).
    #[error("cannot reach the room server at {url}: {detail}; check the address and the network")]
    Unreachable {
        /// What was called.
        url: String,
        /// The underlying error.
        detail: String,
    },
    /// The server refused a request (a protocol error code, see `docs/protocol.md`).
    #[error("the server refused: {code}: {message}")]
    Refused {
        /// The protocol's error code, e.g. `seat_occupied`, `token_expired`.
        code: String,
        /// The server's detail.
        message: String,
    },
    /// The server sent something this client cannot read (bad JSON, a missing field, a
    /// wrong answer to `join`). The connection is given up.
    #[error(
        "the room server sent a message this client cannot read ({0}); the server may be a different version"
    )]
    Malformed(String),
    /// The server closed the session for good (kicked, replaced, dismissed, ...).
    #[error("the room server ended the session ({reason:?}): {message}")]
    Closed {
        /// Why, when the server said so.
        reason: Option<CloseReason>,
        /// Detail.
        message: String,
    },
    /// WebRTC could not be set up (peer connection, SDP, transport).
    #[error("voice connection failed: {0}; check that UDP to the server is not blocked")]
    Media(String),
    /// The client has stopped (closed, or the session ended); make a new one.
    #[error("the room client has stopped; connect again")]
    Stopped,
    /// No answer in time.
    #[error("the room server did not answer within {0:?}; check the network")]
    Timeout(std::time::Duration),
}

impl From<webrtc::error::Error> for ClientError {
    fn from(e: webrtc::error::Error) -> ClientError {
        ClientError::Media(e.to_string())
    }
}
