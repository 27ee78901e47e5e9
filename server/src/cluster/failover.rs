//! Failover: the rooms of a node that stopped heartbeating are taken over by the live nodes.
//!
//! Contract (shared store only, `database_url`; with a store per node nothing moves): on each
//! heartbeat a node asks the store for rooms, not dismissed, whose owner is not a live node
//! ([`crate::store::Store::orphaned_rooms`]). Each such room has one preferred taker among the
//! live nodes with media (rendezvous hashing of room and node id), so a dead node's rooms
//! spread over the survivors; any other live node takes a room still orphaned
//! [`FALLBACK_BEATS`] heartbeats after it first saw it (the preferred node died too). Taking a
//! room is two atomic steps, each of which exactly one node wins: a Lua compare-and-set moves
//! the Redis pin from the dead node to this one, then the store moves the owner
//! (`UPDATE ... WHERE node = <dead>`); the winner restores the room from the stored record
//! ([`crate::Hub::adopt`]): members, seats, mutes, bans and chat rules as last written, each
//! member with a fresh presence timeout. The dead node's webhook claims are released so its
//! undelivered webhooks are sent by the survivors.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use sha2::{Digest, Sha256};

use super::{Cluster, ClusterError, registry};
use crate::hub::Hub;

/// Heartbeats after which any live node takes a room its preferred node has not taken.
pub const FALLBACK_BEATS: u32 = 3;
/// Rooms looked at per heartbeat.
const BATCH: usize = 200;

/// Node `node`'s weight for room `room` (rendezvous hashing): the highest weight takes it.
pub fn weight(room: &str, node: &str) -> u64 {
    let mut h = Sha256::new();
    h.update(room.as_bytes());
    h.update([0]);
    h.update(node.as_bytes());
    let d = h.finalize();
    let mut b = [0u8; 8];
    b.copy_from_slice(&d[..8]);
    u64::from_be_bytes(b)
}

/// The preferred taker of `room` among `nodes` (none when empty).
pub fn preferred<'a>(room: &str, nodes: &'a [String]) -> Option<&'a str> {
    nodes
        .iter()
        .max_by_key(|n| (weight(room, n), n.as_str()))
        .map(String::as_str)
}

/// Moves the pin of `KEYS[1]` from `ARGV[1]` (or from no pin) to `ARGV[2]`, moving one count in
/// `KEYS[2]` (placed per node) too; returns `{owner, moved}`.
const MOVE_PIN: &str = r"
    local cur = redis.call('GET', KEYS[1])
    if cur == false or cur == ARGV[1] then
        redis.call('SET', KEYS[1], ARGV[2])
        redis.call('HINCRBY', KEYS[2], ARGV[2], 1)
        if cur then redis.call('HINCRBY', KEYS[2], ARGV[1], -1) end
        return {ARGV[2], 1}
    end
    return {cur, 0}";

impl Cluster {
    /// Moves room `room`'s pin from node `from` to node `to` if it is still `from`'s (or
    /// unpinned); returns whether this call moved it.
    pub async fn move_pin(&self, room: &str, from: &str, to: &str) -> Result<bool, ClusterError> {
        let mut con = self.redis.clone();
        let (owner, moved): (String, i64) = redis::Script::new(MOVE_PIN)
            .key(registry::room_key(room))
            .key(registry::PLACED_KEY)
            .arg(from)
            .arg(to)
            .invoke_async(&mut con)
            .await
            .map_err(|e| self.redis_err(e))?;
        let owner = registry::parse_pin(room, &owner)?;
        self.remember(room, &owner);
        Ok(moved == 1)
    }

    /// Takes over the rooms of dead nodes this node should take now (see the module's
    /// contract). Called after each heartbeat; a no-op without a shared store.
    pub async fn take_over(&self, hub: &Arc<Hub>) -> Result<(), ClusterError> {
        if !self.shared_store || self.draining.load(Ordering::Relaxed) {
            return Ok(());
        }
        let live: Vec<String> = self
            .nodes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .keys()
            .cloned()
            .collect();
        // A node that does not see itself live (its record missing) takes nothing.
        if !live.contains(&self.node) {
            return Ok(());
        }
        let takers: Vec<String> = {
            let nodes = self.nodes.lock().unwrap_or_else(|p| p.into_inner());
            let mut t: Vec<String> = nodes
                .values()
                .filter(|n| n.media.is_some() && !n.draining)
                .map(|n| n.id.clone())
                .collect();
            t.sort();
            t
        };
        let orphans = {
            let hub = hub.clone();
            let live = live.clone();
            tokio::task::spawn_blocking(move || hub.store_unflushed().orphaned_rooms(&live, BATCH))
                .await
                .unwrap_or_else(|e| {
                    Err(crate::StoreError::Io(std::io::Error::other(e.to_string())))
                })
        };
        let orphans = match orphans {
            Ok(o) => o,
            Err(e) => {
                tracing::warn!(%e, "cannot look for rooms of dead nodes in the store");
                return Ok(());
            }
        };
        let now = Instant::now();
        let fallback = self.heartbeat * FALLBACK_BEATS;
        let due: Vec<(String, String)> = {
            let mut seen = self.orphans_seen.lock().unwrap_or_else(|p| p.into_inner());
            let current: std::collections::HashSet<&str> =
                orphans.iter().map(|(r, _)| r.as_str()).collect();
            seen.retain(|r, _| current.contains(r.as_str()));
            orphans
                .into_iter()
                .filter(|(room, _)| {
                    let first = *seen.entry(room.clone()).or_insert(now);
                    preferred(room, &takers) == Some(self.node.as_str())
                        || now.duration_since(first) >= fallback
                })
                .collect()
        };
        let mut released: HashMap<String, ()> = HashMap::new();
        for (room, dead) in due {
            let started = Instant::now();
            if !self.move_pin(&room, &dead, &self.node).await? {
                continue; // another node won it
            }
            let claimed = {
                let (hub, r, d, me) = (hub.clone(), room.clone(), dead.clone(), self.node.clone());
                tokio::task::spawn_blocking(move || {
                    let store = hub.store_unflushed();
                    let rec = store.claim_room(&r, &d, &me)?;
                    Ok::<_, crate::StoreError>(rec)
                })
                .await
                .unwrap_or_else(|e| {
                    Err(crate::StoreError::Io(std::io::Error::other(e.to_string())))
                })
            };
            match claimed {
                Ok(Some(rec)) => {
                    let members = rec.state.members.len();
                    hub.adopt(rec);
                    self.orphans_seen
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .remove(&room);
                    self.counters.taken_over.fetch_add(1, Ordering::Relaxed);
                    tracing::info!(
                        room,
                        from = %dead,
                        members,
                        load_ms = started.elapsed().as_secs_f64() * 1e3,
                        "took over a room of a dead node"
                    );
                }
                Ok(None) => {
                    // The store names another owner: give the pin back to nobody's guess, the
                    // store's owner re-pins it on its next heartbeat.
                    tracing::warn!(room, from = %dead, "the pin moved here but the store names another owner; undoing the pin");
                    let _ = self.unpin(&room, &self.node).await;
                }
                Err(e) => {
                    tracing::warn!(room, from = %dead, %e, "cannot load a room taken over; undoing the pin");
                    let _ = self.move_pin(&room, &self.node, &dead).await;
                }
            }
            if released.insert(dead.clone(), ()).is_none() {
                let h = hub.clone();
                let dead2 = dead.clone();
                let n = tokio::task::spawn_blocking(move || {
                    h.store_unflushed().release_webhooks(Some(&dead2))
                })
                .await;
                if let Ok(Ok(n)) = n
                    && n > 0
                {
                    tracing::info!(node = %dead, n, "webhooks claimed by a dead node are due again");
                    hub.webhooks_queued.notify_one();
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rooms_spread_over_the_takers_and_each_has_one() {
        let nodes: Vec<String> = ["a", "b", "c"].iter().map(|s| (*s).to_owned()).collect();
        let mut counts: HashMap<&str, usize> = HashMap::new();
        for i in 0..300 {
            let room = format!("room-{i}");
            let p = preferred(&room, &nodes).expect("a taker");
            assert_eq!(preferred(&room, &nodes), Some(p), "stable");
            *counts.entry(p).or_default() += 1;
        }
        for n in ["a", "b", "c"] {
            let c = counts.get(n).copied().unwrap_or(0);
            assert!((70..=130).contains(&c), "{n}: {c} of 300 ({counts:?})");
        }
        assert_eq!(preferred("r", &[]), None);
        // Removing a node moves only its rooms.
        let two: Vec<String> = ["a", "b"].iter().map(|s| (*s).to_owned()).collect();
        for i in 0..300 {
            let room = format!("room-{i}");
            let p3 = preferred(&room, &nodes).expect("taker");
            if p3 != "c" {
                assert_eq!(preferred(&room, &two), Some(p3));
            }
        }
    }
}
