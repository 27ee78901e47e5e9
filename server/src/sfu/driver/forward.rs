//! The hot path: polling peers, judging a publisher's packet, relaying it to the other shards and
//! writing it to every subscriber.

use super::*;

/// A subscriber polled only up to its forwarded packet (see [`Driver::fan_out`]) is polled until
/// it has nothing more to say at most this much later: its RTCP reports, ICE checks and next
/// timeout wait at most this long, the forwarded audio not at all. 250 ms, not 50: the drain's
/// full poll (every subsystem's events and timeout again) was ~4 % of the instructions per copy
/// at 50 ms (callgrind, docs/sfu.md), and what waits for it (the next timeout; RTCP goes out
/// with the next copy anyway, str0m hands it out before RTP) does not need 50 ms.
pub(super) const DRAIN_EVERY: Duration = Duration::from_millis(250);

/// Whether an (SRTP) datagram is RTP of payload type `pt`, not RTCP (RFC 5761: RTCP packet
/// types 192–223 share the second byte with marker + payload type).
fn is_rtp_of(datagram: &[u8], pt: u8) -> bool {
    datagram.len() > 12
        && (128..192).contains(&datagram[0])
        && !(192..224).contains(&datagram[1])
        && datagram[1] & 0x7f == pt
}

impl Driver {
    /// Polls a peer until it has nothing more to say; forwards the media it received.
    pub(super) fn drive(&mut self, id: PeerId) {
        self.poll(id, None);
    }

    /// Polls every peer that [`Driver::fan_out`] left with output possibly pending.
    pub(super) fn drain_all(&mut self) {
        let mut ids = std::mem::take(&mut self.undrained);
        for &id in &ids {
            if self.peers.get(&id).is_some_and(|p| p.undrained) {
                self.drive(id);
            }
        }
        ids.clear();
        // A nested fan-out may have queued more meanwhile; keep both (no allocation when the
        // list was empty, which is the steady state).
        ids.append(&mut self.undrained);
        self.undrained = ids;
    }

    /// Polls a peer and forwards the media it received. With `until_rtp` (the payload type of a
    /// packet just written to it), stops after the first RTP datagram of that type instead of
    /// polling until the peer has nothing more to say: a full poll walks every part of the peer
    /// connection (ICE, DTLS, SCTP, RTCP timers) a second time, which measured as a large share
    /// of a forwarded copy's cost. The peer is then marked undrained and fully polled within
    /// [`DRAIN_EVERY`]. str0m hands out RTCP before RTP, so the loop passes reports on.
    pub(super) fn poll(&mut self, id: PeerId, until_rtp: Option<u8>) {
        let mut media_in: VecDeque<RtpPacket> = VecDeque::new();
        {
            let Some(peer) = self.peers.get_mut(&id) else {
                return;
            };
            loop {
                if !peer.rtc.is_alive() {
                    break;
                }
                match peer.rtc.poll_output() {
                    Ok(Output::Timeout(t)) => {
                        peer.undrained = false;
                        if peer.timeout != t {
                            peer.timeout = t;
                            self.timers.push(Reverse((t, id)));
                        }
                        break;
                    }
                    Ok(Output::Transmit(t)) => {
                        let forwarded = until_rtp.is_some_and(|pt| is_rtp_of(&t.contents, pt));
                        self.outbox.datagrams.push((t.destination, t.contents));
                        if self.outbox.datagrams.len() >= MAX_BATCH {
                            self.stats.datagrams_out += self.outbox.flush(&self.socket);
                        }
                        if forwarded {
                            if !peer.undrained {
                                peer.undrained = true;
                                self.undrained.push(id);
                            }
                            break;
                        }
                    }
                    Ok(Output::Event(e)) => match e {
                        Event::MediaAdded(m) if m.kind == MediaKind::Audio => match m.direction {
                            Direction::RecvOnly | Direction::SendRecv
                                if peer.publish_mid.is_none() =>
                            {
                                peer.publish_mid = Some(m.mid)
                            }
                            Direction::SendOnly | Direction::SendRecv => {
                                // Parked until audio flows on the slot (see `SlotTx`).
                                let mut api = peer.rtc.direct_api();
                                let ssrc = api
                                    .stream_tx_by_mid(m.mid, None)
                                    .map(|s| (s.ssrc(), s.rtx()));
                                if let Some((ssrc, _)) = ssrc {
                                    api.remove_stream_tx(ssrc);
                                }
                                peer.slots.push(SlotTx {
                                    mid: m.mid,
                                    ssrc,
                                    live: false,
                                    last_write: Instant::now(),
                                    seq: 1,
                                });
                            }
                            _ => {}
                        },
                        Event::RtpPacket(p) => media_in.push_back(p),
                        Event::IceConnectionStateChange(IceConnectionState::Disconnected) => {
                            // Kept: ICE may recover, or the client restarts ICE. The presence
                            // timeout of the room decides when the member is gone.
                        }
                        _ => {}
                    },
                    Err(e) => {
                        tracing::debug!(peer = id.0, %e, "peer failed; disconnecting");
                        peer.rtc.disconnect();
                        break;
                    }
                }
            }
        }
        while let Some(d) = media_in.pop_front() {
            self.media(id, d);
        }
    }

    pub(super) fn media(&mut self, from: PeerId, packet: RtpPacket) {
        let Some(peer) = self.peers.get_mut(&from) else {
            return;
        };
        // Only Opus on the peer's own microphone m-line.
        let mid = peer
            .rtc
            .direct_api()
            .stream_rx(&packet.header.ssrc)
            .map(|s| s.mid());
        if mid.is_none()
            || mid != peer.publish_mid
            || Some(packet.header.payload_type) != peer.opus_pt
        {
            self.stats.dropped += 1;
            return;
        }
        let room = peer.room.clone();
        if self.rooms.get(&room).is_some_and(|m| m.relayed) {
            // A relay forwards nothing local: publishing authority stays with the room's node.
            self.stats.dropped += 1;
            return;
        }
        // Every committed seat/mute/kick takes effect before this packet is judged.
        self.apply_room_events(&room);
        let Some(media) = self.rooms.get_mut(&room) else {
            return;
        };
        let now = Instant::now();
        let level = packet.header.ext_vals.audio_level.map(|l| l.unsigned_abs());
        let decision = media.router.handle_rtp(now, from, StreamId(from.0), level);
        match decision {
            Decision::Forward => {}
            Decision::Drop(DropReason::Bombing(b)) => {
                self.stats.dropped += 1;
                self.stats.bombings += 1;
                if act_on_bombing(&self.hub, &room, &b) {
                    self.apply_room_events(&room);
                }
                return;
            }
            Decision::Drop(_) => {
                self.stats.dropped += 1;
                return;
            }
        }
        if self.stale {
            // Authorised, but it waited too long in the socket: this shard is behind. Forwarding
            // it would arrive too late to play and deepen the backlog for every listener.
            self.stats.shed += 1;
            return;
        }
        let Some(media) = self.rooms.get(&room) else {
            return;
        };
        let Some(uid) = media.router.uid_of(from) else {
            return;
        };
        let Some(&slot) = media.slot_of.get(uid) else {
            self.stats.dropped += 1;
            return;
        };
        let uid = uid.clone();
        self.stats.forwarded_in += 1;
        let frame = Forwarded {
            rtp_time: packet.header.timestamp,
            time: packet.time,
            marker: packet.header.marker,
            audio_level: packet.header.ext_vals.audio_level,
            voice_activity: packet.header.ext_vals.voice_activity,
            arrival: packet.timestamp,
            payload: packet.payload,
        };
        for sibling in &self.shard.siblings {
            let relay = Relay {
                room: room.clone(),
                from,
                uid: uid.clone(),
                slot,
                frame: frame.clone(),
                fed: false,
            };
            if sibling.tx.send(relay).is_ok() {
                self.outbox
                    .datagrams
                    .push((sibling.addr, DatagramSend::from(vec![0u8])));
            }
        }
        self.fan_out(&room, from, &uid, slot, &frame, now);
    }

    /// Takes the packets other shards relayed and forwards them to this shard's subscribers,
    /// for at most [`TURN_BUDGET`]: relays keep coming while a fan-out runs, and a shard that
    /// emptied the queue before doing anything else never got back to its socket, timers and
    /// commands once they came faster than it could forward them. Returns whether it stopped on
    /// the budget (relays may be left for the next turn).
    pub(super) fn take_relays(&mut self) -> bool {
        let started = Instant::now();
        loop {
            if started.elapsed() >= TURN_BUDGET {
                return true;
            }
            let Ok(relay) = self.shard.relays.try_recv() else {
                return false;
            };
            self.stats.relayed_in += 1;
            let now = Instant::now();
            if now.saturating_duration_since(relay.frame.arrival) > SHED_AFTER {
                // The publisher's shard read it long ago: this shard is behind (see `media`).
                self.stats.shed += 1;
                continue;
            }
            if !self.relay_cost.is_zero() {
                std::thread::sleep(self.relay_cost);
            }
            if !relay.fed && home_shard(&relay.room, self.shard.count) == self.shard.index {
                // This shard reports the room's volumes, the relayed publisher's too.
                self.apply_room_events(&relay.room);
                if let Some(media) = self.room_media(&relay.room, None) {
                    media.last_relay = Some(now);
                    if let Some(level) = relay.frame.audio_level {
                        media
                            .router
                            .observe_remote_level(&relay.uid, level.unsigned_abs());
                    }
                }
            }
            self.fan_out(
                &relay.room,
                relay.from,
                &relay.uid,
                relay.slot,
                &relay.frame,
                now,
            );
        }
    }

    /// Writes one authorised packet to this shard's subscribers of `room` on `slot`, and offers
    /// it to the room's recording and CDN push if this shard runs them.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn fan_out(
        &mut self,
        room: &RoomId,
        from: PeerId,
        uid: &Uid,
        slot: usize,
        data: &Forwarded,
        now: Instant,
    ) {
        // Recording tap: a copy for the room's recorder, never blocking (see `recording`).
        let ts = || data.time.rebase(Frequency::FORTY_EIGHT_KHZ).numer();
        if let Some(active) = self.recordings.get(room) {
            let ts = ts();
            if !active.recording.offer(from.0, ts, &data.payload)
                && let Some(gone) = self.recordings.remove(room)
            {
                self.finishing.push(gone.recording.stop("failed"));
            }
        }
        // CDN push tap: the same, for the push's mixer (see `crate::push`).
        if let Some(tap) = self.push_taps.get(room)
            && !tap.offer(uid, ts(), &data.payload)
        {
            self.push_taps.remove(room);
        }
        // Relay-link tap: the same, for the room's relay nodes (see `crate::cluster::relay`).
        if let Some(tap) = self.relay_taps.get(room)
            && !tap.offer(
                uid,
                slot,
                data.rtp_time,
                data.marker,
                data.audio_level,
                &data.payload,
            )
        {
            self.relay_taps.remove(room);
        }
        let Some(media) = self.rooms.get(room) else {
            return;
        };
        let mut targets = std::mem::take(&mut self.fan_targets);
        targets.clear();
        targets.extend(media.router.subscribers_of(from));
        for (k, &to) in targets.iter().enumerate() {
            if self.prefetch {
                self.prefetch_subscribers(&targets, k, slot);
            }
            let Some(peer) = self.peers.get_mut(&to) else {
                continue;
            };
            let Some(pt) = peer.opus_pt else {
                continue;
            };
            let Some(tx) = peer.slots.get_mut(slot) else {
                continue;
            };
            let Some((ssrc, rtx)) = tx.ssrc else {
                continue;
            };
            if !peer.rtc.is_connected() {
                continue;
            }
            if !tx.live {
                tx.live = true;
                // No resend-ratio cap: copies are never resent (not nackable, no NACK for
                // audio), and with the cap str0m keeps a history of every byte sent in the last
                // second per stream and evaluates it every 50 ms (~220 instructions per copy).
                peer.rtc
                    .direct_api()
                    .declare_stream_tx(ssrc, rtx, tx.mid, None)
                    .set_rtx_cache(AUDIO_SEND_BUFFER, AUDIO_RESEND_WINDOW, None);
            }
            let ext_vals = ExtensionValues {
                audio_level: data.audio_level,
                voice_activity: data.voice_activity,
                ..ExtensionValues::default()
            };
            let write = RtpWrite::new(
                pt,
                SeqNo::from(tx.seq),
                data.rtp_time,
                data.arrival,
                data.payload.clone(),
            )
            .marker(data.marker)
            .ext_vals(ext_vals);
            // The patched str0m's `send_rtp_now` serialises and encrypts the copy at once
            // (vendor/str0m/ONMIC-PATCH.md): no send queue, pacer or poll of the whole peer
            // connection per copy. What else the peer has to send (RTCP, ICE, DTLS) still comes
            // out of its polls at its own timers and inputs.
            // Encrypted into a recycled buffer of an earlier batch (see `Outbox`).
            let mut buf = self.outbox.spare.pop().unwrap_or_default();
            let write = match peer.rtc.send_rtp_now(now, ssrc, write, &mut buf) {
                Ok(t) => {
                    tx.last_write = now;
                    tx.seq += 1;
                    self.stats.forwarded_out += 1;
                    self.outbox.datagrams.push((t.destination, t.contents));
                    if self.outbox.datagrams.len() >= MAX_BATCH {
                        self.stats.datagrams_out += self.outbox.flush(&self.socket);
                    }
                    continue;
                }
                Err(write) => {
                    self.outbox.spare.push(buf);
                    write
                }
            };
            // The queued path: a stream's first packet (str0m completes a stream at its first
            // timeout), or whatever else `send_rtp_now` does not take.
            let mut api = peer.rtc.direct_api();
            let Some(stream) = api.stream_tx(&ssrc) else {
                continue;
            };
            stream.write_rtp(write);
            tx.last_write = now;
            tx.seq += 1;
            self.stats.forwarded_out += 1;
            // str0m sends written media once its send queue snapshot is refreshed, which only a
            // timeout did; the patched str0m's `release_written_media` refreshes the snapshot
            // only, the rest runs at the peer's own timeout as before.
            let _ = peer.rtc.release_written_media(now);
            // A subscriber that also publishes may fan out from here: that nested fan-out finds
            // the buffer taken and uses its own.
            self.poll(to, Some(*pt));
        }
        self.fan_targets = targets;
    }

    /// While the fan-out writes to `targets[k]`, asks for the cache lines the next subscribers'
    /// copies will touch, in three steps a few subscribers apart so that each step reads only
    /// lines an earlier one asked for: the peer and the `Rtc`'s own fields ([`PREFETCH_AHEAD`]
    /// × 3 ahead; only addresses), the peer's slot list (× 2), then what the `Rtc`'s fields point
    /// to: send stream, SRTP cipher, media, codec parameters, scratch buffer (× 1). A copy is
    /// ~6,500 instructions but several µs, most of it waiting for that memory, one dependent
    /// load after another; prefetched, the loads of several subscribers overlap.
    fn prefetch_subscribers(&self, targets: &[PeerId], k: usize, slot: usize) {
        use super::super::prefetch::{line, prefetch};
        let mut ask = |p: *const u8| prefetch(p);
        if let Some(peer) = targets
            .get(k + 3 * PREFETCH_AHEAD)
            .and_then(|id| self.peers.get(id))
        {
            let peer: &Peer = peer;
            prefetch(line(peer));
            prefetch(line(&peer.slots));
            prefetch(line(&peer.opus_pt));
            peer.rtc.send_rtp_lines(0, Ssrc::from(0), &mut ask);
        }
        if let Some(peer) = targets
            .get(k + 2 * PREFETCH_AHEAD)
            .and_then(|id| self.peers.get(id))
            && let Some(tx) = peer.slots.get(slot)
        {
            prefetch(line(tx));
        }
        if let Some(peer) = targets
            .get(k + PREFETCH_AHEAD)
            .and_then(|id| self.peers.get(id))
            && let Some((ssrc, _)) = peer.slots.get(slot).and_then(|tx| tx.ssrc)
        {
            peer.rtc.send_rtp_lines(1, ssrc, &mut ask);
        }
    }
}

/// How many subscribers apart the fan-out's prefetch steps are (see
/// `Driver::prefetch_subscribers`).
const PREFETCH_AHEAD: usize = 2;

#[cfg(test)]
mod tests {
    use super::is_rtp_of;

    fn datagram(first: u8, second: u8) -> Vec<u8> {
        let mut d = vec![0u8; 40];
        d[0] = first;
        d[1] = second;
        d
    }

    #[test]
    fn a_forwarded_opus_packet_is_told_from_rtcp_stun_and_dtls() {
        assert!(is_rtp_of(&datagram(0x80, 111), 111));
        assert!(
            is_rtp_of(&datagram(0x90, 0x80 | 111), 111),
            "marker, extension"
        );
        assert!(!is_rtp_of(&datagram(0x80, 96), 111), "another payload type");
        // RTCP sender/receiver reports: 200 & 0x7f = 72, so a payload type of 72 must not match.
        assert!(!is_rtp_of(&datagram(0x80, 200), 72));
        assert!(!is_rtp_of(&datagram(0x81, 201), 73));
        assert!(!is_rtp_of(&datagram(0x00, 0x01), 1), "STUN");
        assert!(!is_rtp_of(&datagram(22, 254), 126), "DTLS");
        assert!(
            !is_rtp_of(&[0x80, 111, 0, 1], 111),
            "shorter than an RTP header"
        );
    }
}
