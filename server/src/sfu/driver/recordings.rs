//! The recording tap's lifecycle on the room's home shard (see `crate::recording`).

use super::*;

impl Driver {
    pub(super) fn start_recording(
        &mut self,
        room: RoomId,
        reply: oneshot::Sender<recording::Finished>,
    ) {
        let snapshot = match self.hub.snapshot(&room) {
            Ok(s) => s,
            Err(_) => {
                let _ = reply.send(Err(RecordingError::NoSuchRoom));
                return;
            }
        };
        if snapshot.dismissed {
            let _ = reply.send(Err(RecordingError::Dismissed));
            return;
        }
        if let Some(active) = self.recordings.get(&room) {
            if !active.recording.is_finished() {
                let _ = reply.send(Err(RecordingError::AlreadyRecording));
                return;
            }
            // It failed on its own; make room for a new one.
            if let Some(old) = self.recordings.remove(&room) {
                self.finishing.push(old.recording.stop("failed"));
            }
        }
        let Ok(events) = self.hub.subscribe(&room) else {
            let _ = reply.send(Err(RecordingError::NoSuchRoom));
            return;
        };
        let dir = self.hub.config().data_dir.join("recordings");
        // The recorder answers `reply` itself once its file exists.
        match Recording::start(self.hub.clone(), room.clone(), dir, reply) {
            Ok(recording) => {
                self.recordings
                    .insert(room, ActiveRecording { recording, events });
            }
            Err(e) => tracing::error!(%e, "cannot start a recorder thread"),
        }
    }

    /// Stops recordings of dismissed rooms and collects finished recorder threads.
    pub(super) fn check_recordings(&mut self) {
        let mut dismissed = Vec::new();
        for (room, active) in &mut self.recordings {
            loop {
                match active.events.try_recv() {
                    Ok(frame) if matches!(frame.event.kind, EventKind::Dismissed) => {
                        dismissed.push(room.clone());
                        break;
                    }
                    Ok(_) | Err(broadcast::error::TryRecvError::Lagged(_)) => {}
                    Err(broadcast::error::TryRecvError::Closed) => {
                        dismissed.push(room.clone());
                        break;
                    }
                    Err(broadcast::error::TryRecvError::Empty) => break,
                }
            }
        }
        for room in dismissed {
            if let Some(active) = self.recordings.remove(&room) {
                self.finishing.push(active.recording.stop("dismissed"));
            }
        }
        let (done, running): (Vec<_>, Vec<_>) = std::mem::take(&mut self.finishing)
            .into_iter()
            .partition(|t| t.is_finished());
        self.finishing = running;
        for t in done {
            let _ = t.join();
        }
    }

    /// Stops every recording and waits for their files to be complete.
    pub(super) fn stop_all_recordings(&mut self) {
        for (_, active) in self.recordings.drain() {
            self.finishing.push(active.recording.stop("shutdown"));
        }
        for t in self.finishing.drain(..) {
            let _ = t.join();
        }
    }
}
