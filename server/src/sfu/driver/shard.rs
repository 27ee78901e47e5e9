//! A shard's loop: commands, timers, the socket, peers joining and leaving, room events.

use super::*;

impl Driver {
    pub(super) fn new(
        hub: Arc<Hub>,
        socket: UdpSocket,
        addr: SocketAddr,
        config: SfuConfig,
        shard: Shard,
    ) -> Driver {
        let crypto = Arc::new(str0m::crypto::from_feature_flags());
        // One certificate per shard instead of one per peer (str0m's default): a peer then costs
        // no key generation at connect and keeps no certificate of its own. The certificate only
        // authenticates the DTLS handshake (its fingerprint is in the answer); every session
        // still derives its own SRTP keys from its own ephemeral key exchange.
        let dtls_cert = crypto.dtls_provider.generate_certificate();
        Driver {
            hub,
            recordings: HashMap::new(),
            push_taps: HashMap::new(),
            relay_taps: HashMap::new(),
            finishing: Vec::new(),
            addr,
            config,
            crypto,
            dtls_cert,
            peers: FxHashMap::default(),
            rooms: HashMap::new(),
            by_source: HashMap::new(),
            by_ufrag: HashMap::new(),
            timers: BinaryHeap::new(),
            next_reap: Instant::now(),
            // Peer ids are unique across shards: shard i hands out i+1, i+1+n, ...
            next_peer: shard.index as u64 + 1,
            stats: SfuStats::default(),
            shard,
            outbox: Outbox::new(),
            fan_targets: Vec::new(),
            undrained: Vec::new(),
            next_drain: Instant::now(),
            recv: StampedRecv::new(&socket),
            stale: false,
            relay_cost: Duration::ZERO,
            prefetch: std::env::var("ONMIC_SFU_PREFETCH").map_or(true, |v| v != "0"),
            socket,
        }
    }

    pub(super) fn run(mut self, rx: std_mpsc::Receiver<Cmd>) {
        let mut buf = vec![0u8; MAX_DATAGRAM];
        loop {
            loop {
                match rx.try_recv() {
                    Ok(Cmd::Shutdown(reply)) => {
                        self.stop_all_recordings();
                        let _ = reply.send(());
                        return;
                    }
                    Ok(cmd) => self.command(cmd),
                    Err(std_mpsc::TryRecvError::Empty) => break,
                    Err(std_mpsc::TryRecvError::Disconnected) => {
                        self.stop_all_recordings();
                        return;
                    }
                }
            }
            // Every turn serves, each within its budget: relays from other shards, timers,
            // then the socket. None may starve the others (see `TURN_BUDGET`).
            let relays_left = self.take_relays();
            let now = Instant::now();
            while let Some(Reverse((at, id))) = self.timers.peek().copied() {
                if at > now {
                    break;
                }
                self.timers.pop();
                let Some(p) = self.peers.get_mut(&id) else {
                    continue;
                };
                if p.timeout != at {
                    continue; // stale: the peer was driven since
                }
                // Forget the fired time so that `drive` re-arms even an unchanged timeout.
                p.timeout = now + Duration::from_secs(86_400);
                self.stats.timer_fires += 1;
                let _ = p.rtc.handle_input(Input::Timeout(now));
                self.drive(id);
            }
            if now >= self.next_drain {
                self.next_drain = now + DRAIN_EVERY;
                self.drain_all();
            }
            self.flush();
            self.push_volumes(now);
            let next = self
                .timers
                .peek()
                .map(|Reverse((at, _))| *at)
                .unwrap_or(now + IDLE_WAKE)
                .min(now + IDLE_WAKE);
            // Relays left over: look at the socket, but do not sleep on it.
            let wait = if relays_left {
                Duration::from_millis(1)
            } else {
                next.saturating_duration_since(Instant::now())
                    .max(Duration::from_millis(1))
            };
            let _ = self.socket.set_read_timeout(Some(wait));
            self.read_socket(&mut buf);
            if Instant::now() >= self.next_reap {
                self.next_reap = Instant::now() + Duration::from_millis(100);
                // Room events also take effect when nobody speaks (a kicked listener's peer is
                // closed within 100 ms, not at the room's next packet).
                let rooms: Vec<RoomId> = self.rooms.keys().cloned().collect();
                for room in rooms {
                    self.apply_room_events(&room);
                }
                self.reap();
                self.check_recordings();
            }
        }
    }

    /// Reads the socket: waits for a first datagram (as the read timeout says), then takes what
    /// else is queued, up to [`READ_BATCH`] datagrams or [`TURN_BUDGET`], so that a backlog in
    /// the socket drains in a few turns instead of one datagram per turn.
    fn read_socket(&mut self, buf: &mut [u8]) {
        let started = Instant::now();
        for i in 0..READ_BATCH {
            let got = if i == 0 {
                self.recv.recv(&self.socket, buf)
            } else {
                self.recv.try_recv(&self.socket, buf)
            };
            match got {
                Ok((_, source, _))
                    if self.shard.siblings.iter().any(|s| s.addr == source)
                        || self.shard.bell == Some(source) =>
                {
                    // A sibling's doorbell (or the relay link's): relays are queued for us.
                    self.take_relays();
                    self.flush();
                }
                Ok((n, source, waited)) => {
                    self.stats.datagrams_in += 1;
                    if n > 12
                        && (128..192).contains(&buf[0])
                        && buf[1] & 0x7f == crate::sfu::OPUS_PT
                    {
                        self.stats.opus_rtp_in += 1;
                    }
                    self.stale = waited.is_some_and(|w| w > SHED_AFTER);
                    self.datagram(&buf[..n], source);
                    self.stale = false;
                    self.flush();
                }
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    return;
                }
                Err(e) => {
                    // ICMP errors from a vanished peer surface here on Linux; keep serving.
                    tracing::debug!(%e, "media socket read");
                }
            }
            if started.elapsed() >= TURN_BUDGET {
                return;
            }
        }
    }

    /// Hands the queued datagrams to the kernel.
    pub(super) fn flush(&mut self) {
        self.stats.datagrams_out += self.outbox.flush(&self.socket);
    }

    /// Volume indication: each room's levels every interval, to its members over the WebSocket.
    pub(super) fn push_volumes(&mut self, now: Instant) {
        for (room, media) in &mut self.rooms {
            if home_shard(room, self.shard.count) != self.shard.index || media.relayed {
                // The room's home shard reports every publisher's level; a relayed room's
                // volumes come from its origin node, over the members' WebSockets there.
                continue;
            }
            let Some(reports) = media.router.poll_volumes(now) else {
                continue;
            };
            if let Some(reports) = media.volume_gate.filter(reports) {
                let speakers = reports
                    .into_iter()
                    .map(|r| SpeakerVolume {
                        uid: r.uid,
                        volume: r.volume,
                        speaking: r.speaking,
                    })
                    .collect();
                let _ = self.hub.push_volumes(room, speakers);
            }
        }
    }

    pub(super) fn command(&mut self, cmd: Cmd) {
        match cmd {
            Cmd::Connect {
                room,
                uid,
                offer,
                relayed,
                reply,
            } => {
                let _ = reply.send(self.connect_peer(room, uid, offer, relayed));
            }
            Cmd::Stats(reply) => {
                self.stats.peers = self.peers.len();
                self.stats.connected = self.peers.values().filter(|p| p.rtc.is_connected()).count();
                self.stats.read_at = Some(Instant::now());
                let _ = reply.send(self.stats);
            }
            Cmd::StartRecording { room, reply } => self.start_recording(room, reply),
            Cmd::SetPushTap { room, tap } => match tap {
                Some(tap) => {
                    self.push_taps.insert(room, tap);
                }
                None => {
                    self.push_taps.remove(&room);
                }
            },
            Cmd::StopRecording { room, reply } => {
                let stopped = match self.recordings.remove(&room) {
                    Some(active) if !active.recording.is_finished() => {
                        Ok(active.recording.stop("request"))
                    }
                    Some(active) => {
                        self.finishing.push(active.recording.stop("request"));
                        Err(RecordingError::NotRecording)
                    }
                    None => Err(RecordingError::NotRecording),
                };
                let _ = reply.send(stopped);
            }
            Cmd::Stall(pause) => std::thread::sleep(pause),
            Cmd::SlowRelays(cost) => self.relay_cost = cost,
            Cmd::CloseRelayed { room, uid } => {
                let gone: Vec<PeerId> = match self.rooms.get(&room) {
                    Some(media) if media.relayed => match &uid {
                        Some(uid) => media.router.peers_of(uid).collect(),
                        None => media.router.peers().collect(),
                    },
                    _ => Vec::new(),
                };
                for p in gone {
                    self.remove_peer(p);
                }
            }
            Cmd::RoomPeers { room, reply } => {
                let n = self.rooms.get(&room).map_or(0, |m| m.router.peer_count());
                let _ = reply.send(n);
            }
            Cmd::SetRelayTap { room, tap } => match tap {
                Some(tap) => {
                    self.relay_taps.insert(room, tap);
                }
                None => {
                    self.relay_taps.remove(&room);
                }
            },
            Cmd::Shutdown(reply) => {
                self.stop_all_recordings();
                let _ = reply.send(());
            }
        }
    }

    /// Connects a member's peer; `relayed`: a listener of a room held by another node (see
    /// `Cmd::Connect` with `relayed`), whose membership the origin checked.
    pub(super) fn connect_peer(
        &mut self,
        room: RoomId,
        uid: Uid,
        offer: SdpOffer,
        relayed: bool,
    ) -> Result<SdpAnswer, SfuError> {
        let settings = if relayed {
            if self.rooms.get(&room).is_some_and(|m| !m.relayed) {
                // This node holds the room itself: its listeners connect as members.
                return Err(SfuError::BadOffer(
                    "the room is held by this node, not relayed".into(),
                ));
            }
            None
        } else {
            // Events committed before this offer (a `member_left` of this uid's previous
            // session, say) must act on the old peers now, not on the new one at the next packet.
            self.apply_room_events(&room);
            let snapshot = self.hub.snapshot(&room).map_err(|_| SfuError::NoSuchRoom)?;
            if !snapshot.members.contains_key(&uid) {
                return Err(SfuError::NotMember);
            }
            Some(snapshot.settings)
        };
        let now = Instant::now();
        let mut config = crate::sfu::opus_rtc_config();
        if let Some(cert) = &self.dtls_cert {
            config = config.set_dtls_cert(cert.clone());
        }
        let mut rtc = config
            .set_extension_map(crate::sfu::sfu_extension_map())
            .set_crypto_provider(self.crypto.clone())
            .set_send_buffer_audio(AUDIO_SEND_BUFFER)
            // RTP in, RTP out: no depacketiser and no payloader per copy (see `Forwarded`).
            .set_rtp_mode(true)
            .build(now);
        let candidate = Candidate::host(self.addr, "udp")
            .map_err(|e| SfuError::BadOffer(format!("host candidate: {e}")))?;
        rtc.add_local_candidate(candidate);
        let answer = rtc
            .sdp_api()
            .accept_offer(offer)
            .map_err(|e| SfuError::BadOffer(e.to_string()))?;
        let opus_pt = rtc
            .codec_config()
            .params()
            .iter()
            .find(|p| p.spec().codec == Codec::Opus)
            .map(|p| p.pt());
        let id = PeerId(self.next_peer);
        self.next_peer += self.shard.count as u64;
        let ufrag = rtc.direct_api().local_ice_credentials().ufrag;
        // Replace the member's older peer connections (a reconnect).
        let old: Vec<PeerId> = self
            .rooms
            .get(&room)
            .map(|m| m.router.peers_of(&uid).collect())
            .unwrap_or_default();
        for p in old {
            self.remove_peer(p);
        }
        let media = match &settings {
            Some(settings) => self.room_media(&room, Some(settings)),
            None => Some(self.relayed_media(&room)),
        }
        .ok_or(SfuError::NoSuchRoom)?;
        media.router.add_peer(id, uid, false);
        self.peers.insert(
            id,
            Box::new(Peer {
                room: room.clone(),
                rtc,
                publish_mid: None,
                slots: Vec::new(),
                opus_pt,
                timeout: now,
                undrained: false,
            }),
        );
        self.by_ufrag.insert(ufrag, id);
        self.timers.push(Reverse((now, id)));
        self.refresh_room(&room);
        Ok(answer)
    }

    /// The room's media state, created (subscribed to the room's events) if this shard has none.
    pub(super) fn room_media(
        &mut self,
        room: &RoomId,
        settings: Option<&onmic_room::RoomSettings>,
    ) -> Option<&mut RoomMedia> {
        match self.rooms.entry(room.clone()) {
            std::collections::hash_map::Entry::Occupied(e) => Some(e.into_mut()),
            std::collections::hash_map::Entry::Vacant(v) => {
                let (router, events) = open_room(
                    &self.hub,
                    room,
                    settings,
                    &self.config.bombing,
                    self.config.volume_interval,
                )?;
                Some(v.insert(RoomMedia {
                    router,
                    events,
                    slot_of: HashMap::new(),
                    volume_gate: VolumeGate::default(),
                    last_relay: None,
                    relayed: false,
                }))
            }
        }
    }

    /// The media state of a relayed room (held by another node), created if this shard has
    /// none: a router with no publisher and no events (nobody here may publish).
    pub(super) fn relayed_media(&mut self, room: &RoomId) -> &mut RoomMedia {
        let config = &self.config;
        self.rooms.entry(room.clone()).or_insert_with(|| RoomMedia {
            router: Router::new(config.bombing.clone(), config.volume_interval),
            // No sender: the stream is closed, and draining it finds nothing.
            events: broadcast::channel(1).1,
            slot_of: HashMap::new(),
            volume_gate: VolumeGate::default(),
            last_relay: None,
            relayed: true,
        })
    }

    /// Asks the hub again who may publish in `room` and on which slot.
    pub(super) fn refresh_room(&mut self, room: &RoomId) {
        if let Some(media) = self.rooms.get_mut(room) {
            refresh_authorisation(&self.hub, room, &mut media.router, &mut media.slot_of);
        }
    }

    /// Applies the room events committed so far: re-checks authorisation, drops peers of members
    /// who left.
    pub(super) fn apply_room_events(&mut self, room: &RoomId) {
        let Some(media) = self.rooms.get_mut(room) else {
            return;
        };
        // A relayed room has no events here (its stream has no sender, which now reads as the
        // hub letting a room go): its origin's link says who leaves.
        if media.relayed {
            return;
        }
        let changes = RoomChanges::drain(&mut media.events);
        changes.apply_policy(&mut media.router, &self.config.bombing);
        for p in changes.departed_peers(&media.router) {
            self.remove_peer(p);
        }
        if changes.refresh && !changes.dismissed {
            self.refresh_room(room);
        }
    }

    pub(super) fn remove_peer(&mut self, id: PeerId) {
        if let Some(mut peer) = self.peers.remove(&id) {
            peer.rtc.disconnect();
            if let Some(media) = self.rooms.get_mut(&peer.room) {
                media.router.remove_peer(id);
                if media.router.peer_count() == 0 {
                    self.rooms.remove(&peer.room);
                }
            }
            self.by_source.retain(|_, p| *p != id);
            let ufrag = peer.rtc.direct_api().local_ice_credentials().ufrag;
            if self.by_ufrag.get(&ufrag) == Some(&id) {
                self.by_ufrag.remove(&ufrag);
            }
        }
    }

    pub(super) fn reap(&mut self) {
        // Rooms this shard only knew from relays, quiet for a while.
        let now = Instant::now();
        self.rooms.retain(|_, m| {
            m.router.peer_count() > 0
                || m.last_relay
                    .is_some_and(|t| now.saturating_duration_since(t) < RELAY_ROOM_IDLE)
        });
        let dead: Vec<PeerId> = self
            .peers
            .iter()
            .filter(|(_, p)| !p.rtc.is_alive())
            .map(|(id, _)| *id)
            .collect();
        for id in dead {
            self.remove_peer(id);
        }
        self.park_idle_slots(now);
    }

    /// Removes the send stream of every slot that carried no audio for [`SLOT_IDLE`] (see
    /// [`SlotTx`]): a peer's every `handle_timeout` then walks only the slots in use.
    fn park_idle_slots(&mut self, now: Instant) {
        for peer in self.peers.values_mut() {
            let Peer { rtc, slots, .. } = &mut **peer;
            for tx in slots.iter_mut() {
                if !tx.live
                    || tx.seq >= 1 << 16
                    || now.saturating_duration_since(tx.last_write) < SLOT_IDLE
                {
                    continue;
                }
                if let Some((ssrc, _)) = tx.ssrc {
                    rtc.direct_api().remove_stream_tx(ssrc);
                }
                tx.live = false;
                self.stats.slots_parked += 1;
            }
        }
    }

    pub(super) fn datagram(&mut self, data: &[u8], source: SocketAddr) {
        // Garbage (not STUN, DTLS, RTP or RTCP) is dropped here.
        let Ok(contents) = data.try_into() else {
            return;
        };
        let input = Input::Receive(
            Instant::now(),
            Receive {
                proto: Protocol::Udp,
                source,
                destination: self.addr,
                contents,
            },
        );
        let id = match self.by_source.get(&source) {
            Some(id) if self.peers.get(id).is_some_and(|p| p.rtc.accepts(&input)) => *id,
            _ => {
                let Some(id) = self.peer_for_new_source(data, &input) else {
                    return;
                };
                self.by_source.insert(source, id);
                id
            }
        };
        if let Some(p) = self.peers.get_mut(&id)
            && let Err(e) = p.rtc.handle_input(input)
        {
            tracing::debug!(peer = id.0, %e, "peer input failed; disconnecting");
            p.rtc.disconnect();
        }
        self.drive(id);
    }

    /// The peer a datagram from an address not yet known belongs to. A STUN request names it in
    /// its USERNAME (one lookup, however many peers the shard has); a STUN message without one
    /// (the answer to a check this side sent) is offered to each peer as before, which happens
    /// about once per connecting peer. Anything else from an unknown address is nobody's: a
    /// peer accepts DTLS and media only from an address its ICE checks went through, and those
    /// came as STUN first. Strangers' garbage therefore costs a parse, not a walk over every
    /// peer.
    fn peer_for_new_source(&self, data: &[u8], input: &Input) -> Option<PeerId> {
        let stun = str0m::ice::StunMessage::parse(data).ok()?;
        let accepts = |id: &PeerId| self.peers.get(id).is_some_and(|p| p.rtc.accepts(input));
        match stun.split_username() {
            Some((ours, _)) => self.by_ufrag.get(ours).copied().filter(accepts),
            None => self.peers.keys().copied().find(accepts),
        }
    }
}
