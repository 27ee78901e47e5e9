//! Webhooks: which events become webhooks, their signed bodies, and the delivery worker that
//! drains the persisted outbox with exponential backoff. Delivery is at least once; receivers
//! de-duplicate by `event_id` (also sent as `X-Onmic-Event-Id`).
//!
//! Signature: `X-Onmic-Signature: sha256=<hex HMAC-SHA256(webhook_secret, raw body)>`.

use std::sync::Arc;
use std::time::Duration;

use hmac::{Hmac, Mac};
use onmic_room::{Event, EventKind, RoomId, RoomState, Timestamp};
use serde_json::{Value, json};
use sha2::Sha256;
use tokio::sync::watch;

use crate::hub::Hub;

/// Signature header name.
pub const SIGNATURE_HEADER: &str = "x-onmic-signature";
/// Event id header name.
pub const EVENT_ID_HEADER: &str = "x-onmic-event-id";
/// Longest retry delay.
pub const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// `sha256=<hex>` over `body` with `secret`.
pub fn sign(secret: &[u8], body: &[u8]) -> String {
    let mut mac =
        <Hmac<Sha256> as Mac>::new_from_slice(secret).expect("HMAC accepts keys of any length");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

fn item(
    app: &str,
    room: &str,
    event_id: String,
    ty: &str,
    at: Timestamp,
    data: Value,
) -> (String, String) {
    let body = json!({
        "event_id": event_id,
        "type": ty,
        "app": app,
        "room": room,
        "at": at.0,
        "data": data,
    });
    (event_id, body.to_string())
}

/// The `room_created` webhook.
pub fn room_created(app: &str, state: &RoomState, at: Timestamp) -> (String, String) {
    let data = json!({ "owner": state.owner, "title": state.title, "seat_count": state.settings.seat_count });
    item(
        app,
        state.id.as_str(),
        format!("{}:created", state.id),
        "room_created",
        at,
        data,
    )
}

/// The `recording_started` / `recording_stopped` webhooks (event id `<recording id>:<kind>`).
pub fn recording(
    app: &str,
    record: &crate::store::RecordingRecord,
    started: bool,
    at: Timestamp,
) -> (String, String) {
    let (ty, suffix) = if started {
        ("recording_started", "started")
    } else {
        ("recording_stopped", "stopped")
    };
    let data = json!({
        "id": record.id, "file": record.file, "status": record.status, "reason": record.reason,
        "duration_ms": record.duration_ms, "bytes": record.bytes,
    });
    item(
        app,
        &record.room,
        format!("{}:{suffix}", record.id),
        ty,
        at,
        data,
    )
}

/// The `push_started` / `push_stopped` / `push_failed` webhooks (event id `<push id>:<kind>`).
pub fn push(
    app: &str,
    status: &crate::push::PushStatus,
    kind: &str,
    at: Timestamp,
) -> (String, String) {
    let data = json!({
        "id": status.id, "url": status.url, "codec": status.codec, "state": status.state,
        "reason": status.reason, "duration_ms": status.duration_ms, "bytes_sent": status.bytes_sent,
        "reconnects": status.reconnects, "last_error": status.last_error,
    });
    let suffix = kind.strip_prefix("push_").unwrap_or(kind);
    item(
        app,
        &status.room,
        format!("{}:{suffix}", status.id),
        kind,
        at,
        data,
    )
}

/// Webhooks for room events (event id `<room>:<version>`).
pub fn room_events(app: &str, room: &RoomId, events: &[Event]) -> Vec<(String, String)> {
    events
        .iter()
        .filter_map(|e| {
            let (ty, data) = match &e.kind {
                EventKind::MemberJoined { member } => {
                    ("member_joined", json!({ "uid": member.uid }))
                }
                EventKind::MemberLeft { uid, reason } => {
                    ("member_left", json!({ "uid": uid, "reason": reason }))
                }
                EventKind::RoleChanged { uid, role } => {
                    ("role_changed", json!({ "uid": uid, "role": role }))
                }
                EventKind::SeatChanged { seat, reason } => {
                    ("seat_changed", json!({ "seat": seat, "reason": reason }))
                }
                EventKind::Gift {
                    from,
                    to,
                    gift,
                    count,
                    value,
                } => (
                    "gift_sent",
                    json!({ "from": from, "to": to, "gift": gift, "count": count, "value": value }),
                ),
                EventKind::BombingDetected { uid, detail } => {
                    ("bombing_detected", json!({ "uid": uid, "detail": detail }))
                }
                EventKind::Dismissed => ("room_dismissed", json!({})),
                _ => return None,
            };
            let mut data = data;
            data["version"] = json!(e.version);
            Some(item(
                app,
                room.as_str(),
                format!("{room}:{}", e.version),
                ty,
                e.at,
                data,
            ))
        })
        .collect()
}

/// The delay before attempt `attempts + 1`.
pub fn backoff(base: Duration, attempts: u32) -> Duration {
    base.saturating_mul(1u32 << attempts.min(16))
        .min(MAX_BACKOFF)
}

/// Delivers the outbox until `stop` turns true. It reads the store without waiting for the
/// writer (`Hub::store_unflushed`): the writer wakes it once new webhooks are written.
pub async fn run_delivery(hub: Arc<Hub>, url: String, mut stop: watch::Receiver<bool>) {
    let client = match reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
    {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(%e, "webhook client could not be built; webhooks stay queued");
            return;
        }
    };
    let secret = hub.config().webhook_secret.clone().into_bytes();
    let base = Duration::from_millis(hub.config().webhook_retry_ms.max(1));
    // Webhooks this node had taken when it last stopped (or died) are due again.
    // Every store call runs on a blocking thread (`Hub::call_unflushed`): a frozen database
    // must not hold a runtime thread.
    match hub.call_unflushed(|s| s.release_webhooks(None)).await {
        Ok(0) => {}
        Ok(n) => tracing::info!(n, "webhooks claimed by this node's last run are due again"),
        Err(e) => tracing::error!(%e, "releasing this node's webhook claims failed"),
    }
    loop {
        if *stop.borrow() {
            return;
        }
        let now = hub.now();
        // Claimed: a node sharing the store (PostgreSQL in a cluster) does not get them too.
        let due = match hub.call_unflushed(move |s| s.claim_webhooks(now, 64)).await {
            Ok(d) => d,
            Err(e) => {
                tracing::error!(%e, "reading the outbox failed");
                Vec::new()
            }
        };
        for it in due {
            let result = client
                .post(&url)
                .header("content-type", "application/json")
                .header(SIGNATURE_HEADER, sign(&secret, it.body.as_bytes()))
                .header(EVENT_ID_HEADER, &it.event_id)
                .header("x-onmic-attempt", (it.attempts + 1).to_string())
                .body(it.body.clone())
                .send()
                .await;
            let outcome = match result {
                Ok(r) if r.status().is_success() => Ok(()),
                Ok(r) => Err(format!("HTTP {}", r.status())),
                Err(e) => Err(e.to_string()),
            };
            let stored = match outcome {
                Ok(()) => {
                    let (id, at) = (it.id, hub.now());
                    hub.call_unflushed(move |s| s.webhook_delivered(id, at))
                        .await
                }
                Err(err) => {
                    let next = hub.now().plus(backoff(base, it.attempts));
                    tracing::debug!(event = %it.event_id, %err, "webhook attempt failed");
                    let id = it.id;
                    hub.call_unflushed(move |s| s.webhook_failed(id, next, &err))
                        .await
                }
            };
            if let Err(e) = stored {
                tracing::error!(%e, "updating the outbox failed");
            }
        }
        let wait = match hub.call_unflushed(|s| s.next_webhook_at()).await {
            Ok(Some(t)) => t.since(hub.now()).max(Duration::from_millis(5)),
            _ => Duration::from_secs(1),
        }
        .min(Duration::from_secs(1));
        tokio::select! {
            _ = hub.webhooks_queued.notified() => {}
            _ = tokio::time::sleep(wait) => {}
            _ = stop.changed() => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_caps() {
        let b = Duration::from_millis(100);
        assert_eq!(backoff(b, 0), Duration::from_millis(100));
        assert_eq!(backoff(b, 3), Duration::from_millis(800));
        assert_eq!(backoff(b, 40), MAX_BACKOFF);
    }

    #[test]
    fn signature_is_hmac_sha256_hex() {
        // RFC 4231 test case 2.
        let s = sign(b"Jefe", b"what do ya want for nothing?");
        assert_eq!(
            s,
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
