//! Local socket input for PCM injection: another app connects (Unix socket, or TCP on the
//! loopback interface), sends a 12-byte header, then raw interleaved samples until it closes.
//!
//! Header (all little-endian): `b"OPCM"`, sample rate `u32`, channels `u16`, sample format
//! `u16` (1 = signed 16-bit, 3 = 32-bit float). One client at a time; the next connection may
//! send a different format. See `docs/music.md`.

use std::io::Read;
use std::net::{SocketAddr, TcpListener};
use std::os::unix::net::UnixListener;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use super::{MusicError, PcmInjector};

/// Header magic.
pub const MAGIC: &[u8; 4] = b"OPCM";
/// Sample format code: signed 16-bit little-endian.
pub const FORMAT_S16LE: u16 = 1;
/// Sample format code: 32-bit float little-endian.
pub const FORMAT_F32LE: u16 = 3;

/// A parsed stream header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PcmHeader {
    /// Sample rate, Hz.
    pub rate: u32,
    /// Channels.
    pub channels: u16,
    /// [`FORMAT_S16LE`] or [`FORMAT_F32LE`].
    pub format: u16,
}

impl PcmHeader {
    /// The 12 bytes a client sends first.
    pub fn to_bytes(self) -> [u8; 12] {
        let mut b = [0u8; 12];
        b[..4].copy_from_slice(MAGIC);
        b[4..8].copy_from_slice(&self.rate.to_le_bytes());
        b[8..10].copy_from_slice(&self.channels.to_le_bytes());
        b[10..12].copy_from_slice(&self.format.to_le_bytes());
        b
    }

    /// Parses and checks a header.
    pub fn parse(b: &[u8; 12]) -> Result<PcmHeader, String> {
        if &b[..4] != MAGIC {
            return Err("not an Onmic PCM stream (the header must start with \"OPCM\")".into());
        }
        let h = PcmHeader {
            rate: u32::from_le_bytes([b[4], b[5], b[6], b[7]]),
            channels: u16::from_le_bytes([b[8], b[9]]),
            format: u16::from_le_bytes([b[10], b[11]]),
        };
        if !(8_000..=384_000).contains(&h.rate) {
            return Err(format!("sample rate {} Hz is outside 8–384 kHz", h.rate));
        }
        if !(1..=8).contains(&h.channels) {
            return Err(format!("{} channels (1–8 supported)", h.channels));
        }
        if h.format != FORMAT_S16LE && h.format != FORMAT_F32LE {
            return Err(format!(
                "sample format {} (1 = s16le, 3 = f32le supported)",
                h.format
            ));
        }
        Ok(h)
    }
}

/// Counters of a socket input.
#[derive(Debug, Default)]
pub struct SocketStats {
    /// Connections accepted.
    pub connections: AtomicU64,
    /// Connections refused for a bad header.
    pub bad_headers: AtomicU64,
    /// Frames received (at the client's rate).
    pub frames: AtomicU64,
}

/// A running socket input; stop it (or drop it) to close the socket.
#[derive(Debug)]
pub struct SocketInput {
    running: Arc<AtomicBool>,
    thread: Option<JoinHandle<PcmInjector>>,
    /// Counters.
    pub stats: Arc<SocketStats>,
    /// The TCP address it listens on, if TCP.
    pub local_addr: Option<SocketAddr>,
}

enum Listener {
    Tcp(TcpListener),
    Unix(UnixListener),
}

impl SocketInput {
    /// Listens on a Unix socket at `path` (removed first if it is a stale socket).
    pub fn bind_unix(path: &Path, injector: PcmInjector) -> Result<SocketInput, MusicError> {
        if let Ok(meta) = std::fs::symlink_metadata(path) {
            use std::os::unix::fs::FileTypeExt;
            if meta.file_type().is_socket() {
                let _ = std::fs::remove_file(path);
            }
        }
        let l = UnixListener::bind(path).map_err(MusicError::Socket)?;
        l.set_nonblocking(true).map_err(MusicError::Socket)?;
        Self::start(Listener::Unix(l), None, injector)
    }

    /// Listens on TCP at `addr`, which must be a loopback address.
    pub fn bind_tcp(addr: SocketAddr, injector: PcmInjector) -> Result<SocketInput, MusicError> {
        if !addr.ip().is_loopback() {
            return Err(MusicError::Socket(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!(
                    "{addr} is not a loopback address; PCM input listens on 127.0.0.1 or ::1 only"
                ),
            )));
        }
        let l = TcpListener::bind(addr).map_err(MusicError::Socket)?;
        let local = l.local_addr().map_err(MusicError::Socket)?;
        l.set_nonblocking(true).map_err(MusicError::Socket)?;
        Self::start(Listener::Tcp(l), Some(local), injector)
    }

    fn start(
        listener: Listener,
        local_addr: Option<SocketAddr>,
        mut injector: PcmInjector,
    ) -> Result<SocketInput, MusicError> {
        let running = Arc::new(AtomicBool::new(true));
        let stats = Arc::new(SocketStats::default());
        let (r2, s2) = (running.clone(), stats.clone());
        let thread = std::thread::Builder::new()
            .name("onmic-music-socket".into())
            .spawn(move || {
                while r2.load(Ordering::Relaxed) {
                    let conn: Option<Box<dyn Read>> = match &listener {
                        Listener::Tcp(l) => l.accept().ok().and_then(|(s, _)| {
                            s.set_nonblocking(false).ok()?;
                            s.set_read_timeout(Some(Duration::from_millis(100))).ok()?;
                            Some(Box::new(s) as Box<dyn Read>)
                        }),
                        Listener::Unix(l) => l.accept().ok().and_then(|(s, _)| {
                            s.set_nonblocking(false).ok()?;
                            s.set_read_timeout(Some(Duration::from_millis(100))).ok()?;
                            Some(Box::new(s) as Box<dyn Read>)
                        }),
                    };
                    match conn {
                        Some(c) => {
                            s2.connections.fetch_add(1, Ordering::Relaxed);
                            serve(c, &mut injector, &r2, &s2);
                        }
                        None => std::thread::sleep(Duration::from_millis(20)),
                    }
                }
                injector
            })
            .map_err(MusicError::Thread)?;
        Ok(SocketInput {
            running,
            thread: Some(thread),
            stats,
            local_addr,
        })
    }

    /// Closes the socket and hands the injector back.
    pub fn stop(mut self) -> Option<PcmInjector> {
        self.running.store(false, Ordering::Relaxed);
        self.thread.take().and_then(|t| t.join().ok())
    }
}

impl Drop for SocketInput {
    fn drop(&mut self) {
        self.running.store(false, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Reads exactly `buf.len()` bytes, riding out read timeouts while `running`.
fn read_full(c: &mut dyn Read, buf: &mut [u8], running: &AtomicBool) -> bool {
    let mut n = 0;
    while n < buf.len() {
        if !running.load(Ordering::Relaxed) {
            return false;
        }
        match c.read(&mut buf[n..]) {
            Ok(0) => return false,
            Ok(k) => n += k,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock
                        | std::io::ErrorKind::TimedOut
                        | std::io::ErrorKind::Interrupted
                ) => {}
            Err(_) => return false,
        }
    }
    true
}

fn serve(mut c: Box<dyn Read>, inj: &mut PcmInjector, running: &AtomicBool, stats: &SocketStats) {
    let mut hb = [0u8; 12];
    if !read_full(&mut *c, &mut hb, running) {
        return;
    }
    let h = match PcmHeader::parse(&hb) {
        Ok(h) => h,
        Err(_) => {
            stats.bad_headers.fetch_add(1, Ordering::Relaxed);
            return;
        }
    };
    let ch = usize::from(h.channels);
    let bytes_per = if h.format == FORMAT_S16LE { 2 } else { 4 };
    // 10 ms at the client's rate per read.
    let frames = (h.rate as usize / 100).max(1);
    let mut raw = vec![0u8; frames * ch * bytes_per];
    let mut pcm = vec![0.0f32; frames * ch];
    loop {
        // Take what arrives (a partial read is fine as long as it is whole frames).
        let mut n = 0;
        let frame_bytes = ch * bytes_per;
        loop {
            if !running.load(Ordering::Relaxed) {
                return;
            }
            match c.read(&mut raw[n..]) {
                Ok(0) => {
                    n -= n % frame_bytes;
                    if n > 0 {
                        decode(&raw[..n], &mut pcm, bytes_per);
                        let _ = inj.push(&pcm[..n / bytes_per], h.rate, ch);
                        stats
                            .frames
                            .fetch_add((n / frame_bytes) as u64, Ordering::Relaxed);
                    }
                    return;
                }
                Ok(k) => {
                    n += k;
                    if n % frame_bytes == 0 {
                        break;
                    }
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock
                            | std::io::ErrorKind::TimedOut
                            | std::io::ErrorKind::Interrupted
                    ) => {}
                Err(_) => return,
            }
        }
        decode(&raw[..n], &mut pcm, bytes_per);
        let _ = inj.push(&pcm[..n / bytes_per], h.rate, ch);
        stats
            .frames
            .fetch_add((n / frame_bytes) as u64, Ordering::Relaxed);
    }
}

fn decode(raw: &[u8], pcm: &mut [f32], bytes_per: usize) {
    if bytes_per == 2 {
        for (s, b) in pcm.iter_mut().zip(raw.chunks_exact(2)) {
            *s = f32::from(i16::from_le_bytes([b[0], b[1]])) / 32768.0;
        }
    } else {
        for (s, b) in pcm.iter_mut().zip(raw.chunks_exact(4)) {
            let v = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
            *s = if v.is_finite() {
                v.clamp(-1.0, 1.0)
            } else {
                0.0
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trip_and_malformed_headers() {
        let h = PcmHeader {
            rate: 44_100,
            channels: 1,
            format: FORMAT_S16LE,
        };
        assert_eq!(PcmHeader::parse(&h.to_bytes()), Ok(h));
        let mut bad = h.to_bytes();
        bad[0] = b'X';
        assert!(PcmHeader::parse(&bad).unwrap_err().contains("OPCM"));
        for (rate, ch, fmt, needle) in [
            (100, 1, 1, "Hz"),
            (48_000, 0, 1, "channels"),
            (48_000, 9, 1, "channels"),
            (48_000, 2, 2, "format"),
        ] {
            let b = PcmHeader {
                rate,
                channels: ch,
                format: fmt,
            }
            .to_bytes();
            let e = PcmHeader::parse(&b).unwrap_err();
            assert!(e.contains(needle), "{e}");
        }
    }
}
