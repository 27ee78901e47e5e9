//! The store's writer: one thread per store that writes what the hub commits, in order, in
//! batches, so that no room lock, WebSocket handler or SFU thread waits on the database.
//!
//! Contract: [`StoreWriter::submit`] adds to the pending [`WriteBatch`] under a short mutex (no
//! I/O) and returns the change's sequence number. The thread takes everything pending at once
//! and writes it in one transaction ([`Store::write_batch`]): what piled up while the last
//! batch was written becomes the next batch (group commit). Because a room's commit submits its
//! state, gifts and webhooks together under the room's lock, a batch that holds a room at
//! version `v` holds every webhook of that room up to `v`: the outbox never lags the state it
//! reports. [`StoreWriter::wait_written`] lets a reply wait (asynchronously) until its change is
//! on disk. A failed batch goes back in front of what came since and is retried with backoff
//! (50 ms doubling to 5 s), logged at `error` at once and every 10 s while it lasts; nothing is
//! dropped. [`StoreWriter::close`] writes what is pending, waiting at most its timeout.

use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::sync::watch;

use super::{Store, WriteBatch};

/// First retry delay after a failed batch.
const FIRST_RETRY: Duration = Duration::from_millis(50);
/// Longest retry delay.
const MAX_RETRY: Duration = Duration::from_secs(5);
/// How often a lasting failure is logged again.
const LOG_EVERY: Duration = Duration::from_secs(10);

/// The writer's health, for `/health` and logs.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct WriterStatus {
    /// Rows not written yet: those queued and those of the batch being written.
    pub pending: usize,
    /// Milliseconds since writes started failing (none: the last write succeeded).
    pub failing_ms: Option<u64>,
    /// The last error, while failing.
    pub last_error: Option<String>,
}

struct Failing {
    since: Instant,
    logged: Instant,
    attempts: u64,
    error: String,
}

struct State {
    pending: WriteBatch,
    /// Rows of the batch the thread is writing (taken out of `pending`, not on disk yet).
    in_flight: usize,
    /// Sequence number of the last submit.
    submitted: u64,
    /// Sequence number of the last submit on disk.
    written: u64,
    /// No more waiting for new work: write what is pending, then end.
    closing: bool,
    /// Give up (after `close`'s timeout): end even with writes pending.
    abandon: bool,
    /// The thread has ended.
    ended: bool,
    failing: Option<Failing>,
}

impl State {
    fn unwritten(&self) -> usize {
        self.pending.len() + self.in_flight
    }
}

struct Shared {
    state: Mutex<State>,
    /// Wakes the writer thread (new work, closing).
    work: Condvar,
    /// Wakes threads waiting for progress.
    progress: Condvar,
    /// The last sequence number on disk, for async waiters.
    written: watch::Sender<u64>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // The state is only a queue and counters, consistent between statements.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The writer thread of one store (see the module's contract).
pub struct StoreWriter {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for StoreWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreWriter")
            .field("status", &self.status())
            .finish()
    }
}

impl StoreWriter {
    /// Starts the writer thread of `store`; `written` runs on that thread after each batch is on
    /// disk (the hub wakes webhook delivery there).
    pub fn start(
        store: Arc<dyn Store>,
        written: impl Fn(&WriteBatch) + Send + 'static,
    ) -> std::io::Result<StoreWriter> {
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                pending: WriteBatch::default(),
                in_flight: 0,
                submitted: 0,
                written: 0,
                closing: false,
                abandon: false,
                ended: false,
                failing: None,
            }),
            work: Condvar::new(),
            progress: Condvar::new(),
            written: watch::Sender::new(0),
        });
        let thread_shared = shared.clone();
        std::thread::Builder::new()
            .name("onmic-store-writer".into())
            .spawn(move || run(&thread_shared, &*store, &written))?;
        Ok(StoreWriter { shared })
    }

    /// Adds a change to the pending batch (no I/O); returns its sequence number.
    pub fn submit(&self, change: impl FnOnce(&mut WriteBatch)) -> u64 {
        let mut st = self.shared.lock();
        change(&mut st.pending);
        st.submitted += 1;
        let seq = st.submitted;
        drop(st);
        self.shared.work.notify_one();
        seq
    }

    /// Rows not written yet: those queued and those of the batch being written (a write stuck
    /// on a frozen database still counts its rows).
    pub fn pending(&self) -> usize {
        self.shared.lock().unwritten()
    }

    /// The sequence number of the last change submitted.
    pub fn submitted(&self) -> u64 {
        self.shared.lock().submitted
    }

    /// The writer's health.
    pub fn status(&self) -> WriterStatus {
        let st = self.shared.lock();
        WriterStatus {
            pending: st.unwritten(),
            failing_ms: st
                .failing
                .as_ref()
                .map(|f| u64::try_from(f.since.elapsed().as_millis()).unwrap_or(u64::MAX)),
            last_error: st.failing.as_ref().map(|f| f.error.clone()),
        }
    }

    /// Waits (without blocking a thread) until change `seq` is on disk; `false` after `timeout`.
    pub async fn wait_written(&self, seq: u64, timeout: Duration) -> bool {
        let mut rx = self.shared.written.subscribe();
        matches!(
            tokio::time::timeout(timeout, rx.wait_for(|w| *w >= seq)).await,
            Ok(Ok(_))
        )
    }

    /// Blocks until everything submitted so far is on disk; `false` after `timeout`.
    pub fn flush_blocking(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut st = self.shared.lock();
        let target = st.submitted;
        while st.written < target && !st.ended {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            st = self
                .shared
                .progress
                .wait_timeout(st, left)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
        st.written >= target
    }

    /// Writes what is pending and ends the thread, waiting at most `timeout`; returns the rows
    /// that could not be written (lost, and logged as such). Submits after this are kept in
    /// memory only.
    pub fn close(&self, timeout: Duration) -> usize {
        self.shared.lock().closing = true;
        self.shared.work.notify_all();
        let flushed = self.flush_blocking(timeout);
        let mut st = self.shared.lock();
        if flushed {
            return 0;
        }
        st.abandon = true;
        let lost = st.unwritten();
        drop(st);
        self.shared.work.notify_all();
        tracing::error!(
            lost,
            "the store could not take the last changes before shutdown; they are lost"
        );
        lost
    }
}

impl Drop for StoreWriter {
    fn drop(&mut self) {
        // No waiting here (a drop may run on an async thread): the thread writes what is
        // pending, then ends.
        self.shared.lock().closing = true;
        self.shared.work.notify_all();
    }
}

fn run(shared: &Shared, store: &dyn Store, written: &dyn Fn(&WriteBatch)) {
    let mut retry = FIRST_RETRY;
    loop {
        let mut st = shared.lock();
        while st.pending.is_empty() && !st.closing {
            st = shared.work.wait(st).unwrap_or_else(|p| p.into_inner());
        }
        if st.pending.is_empty() || st.abandon {
            st.ended = true;
            drop(st);
            shared.progress.notify_all();
            return;
        }
        let batch = std::mem::take(&mut st.pending);
        st.in_flight = batch.len();
        let seq = st.submitted;
        drop(st);
        match store.write_batch(&batch) {
            Ok(()) => {
                written(&batch);
                let mut st = shared.lock();
                st.written = seq;
                st.in_flight = 0;
                if let Some(f) = st.failing.take() {
                    tracing::warn!(
                        failed_for_ms =
                            u64::try_from(f.since.elapsed().as_millis()).unwrap_or(u64::MAX),
                        attempts = f.attempts,
                        rows = batch.len(),
                        "store writes recovered; every queued change is written"
                    );
                }
                drop(st);
                shared.written.send_replace(seq);
                shared.progress.notify_all();
                retry = FIRST_RETRY;
            }
            Err(e) => {
                let mut st = shared.lock();
                st.in_flight = 0;
                let newer = std::mem::replace(&mut st.pending, batch);
                st.pending.append(newer);
                let pending = st.pending.len();
                let now = Instant::now();
                match &mut st.failing {
                    None => {
                        tracing::error!(
                            error = %e,
                            pending,
                            "writing to the store failed; the changes stay queued and are retried (members' requests are refused once store_queue_limit rows wait)"
                        );
                        st.failing = Some(Failing {
                            since: now,
                            logged: now,
                            attempts: 1,
                            error: e.to_string(),
                        });
                    }
                    Some(f) => {
                        f.attempts += 1;
                        f.error = e.to_string();
                        if now.duration_since(f.logged) >= LOG_EVERY {
                            f.logged = now;
                            tracing::error!(
                                error = %e,
                                pending,
                                failing_for_s = now.duration_since(f.since).as_secs(),
                                attempts = f.attempts,
                                "the store is still failing; changes are kept in memory and retried"
                            );
                        }
                    }
                }
                // Wait before retrying; only `close` giving up cuts the wait short.
                let (st, _) = shared
                    .work
                    .wait_timeout_while(st, retry, |st| !st.abandon)
                    .unwrap_or_else(|p| p.into_inner());
                drop(st);
                retry = (retry * 2).min(MAX_RETRY);
            }
        }
    }
}
