//! An HTTP(S) source with a read-ahead buffer: a download thread appends the body to memory as
//! fast as the network gives it; the decoder reads (and seeks) in what has arrived, waiting only
//! when it catches up with the download.

use std::io::{Read, Seek, SeekFrom};
use std::sync::{Arc, Condvar, Mutex};

use super::MusicError;

/// How long the decoder waits for bytes that do not come before giving up.
const STALL: std::time::Duration = std::time::Duration::from_secs(30);

/// The most a URL may deliver (a song, not a live stream).
const MAX_BYTES: usize = 512 * 1024 * 1024;

#[derive(Default)]
struct Inner {
    data: Vec<u8>,
    done: bool,
    error: Option<String>,
}

pub(crate) struct HttpReader {
    shared: Arc<(Mutex<Inner>, Condvar)>,
    len: Option<u64>,
    pos: u64,
}

impl HttpReader {
    /// Starts the request; fails at once on a connection error or an error status.
    pub(crate) fn open(url: &str) -> Result<HttpReader, MusicError> {
        let err = |m: String| MusicError::Http {
            url: url.to_string(),
            message: m,
        };
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(err("only http:// and https:// URLs are supported".into()));
        }
        let response = ureq::get(url).call().map_err(|e| err(e.to_string()))?;
        let len = response
            .headers()
            .get("content-length")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        let mut body = response.into_body().into_reader();
        let shared = Arc::new((Mutex::new(Inner::default()), Condvar::new()));
        let s2 = shared.clone();
        std::thread::Builder::new()
            .name("onmic-music-http".into())
            .spawn(move || {
                let mut buf = vec![0u8; 64 * 1024];
                loop {
                    let r = body.read(&mut buf);
                    let (lock, cv) = &*s2;
                    let mut g = lock.lock().unwrap_or_else(|p| p.into_inner());
                    match r {
                        Ok(0) => g.done = true,
                        Ok(n) if g.data.len() + n > MAX_BYTES => {
                            g.error = Some(format!("more than {MAX_BYTES} bytes"));
                            g.done = true;
                        }
                        Ok(n) => g.data.extend_from_slice(&buf[..n]),
                        Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                        Err(e) => {
                            g.error = Some(e.to_string());
                            g.done = true;
                        }
                    }
                    let done = g.done;
                    drop(g);
                    cv.notify_all();
                    if done {
                        break;
                    }
                }
            })
            .map_err(MusicError::Thread)?;
        Ok(HttpReader {
            shared,
            len,
            pos: 0,
        })
    }

    /// Waits until byte `upto` has arrived or the download ended; returns the bytes available.
    fn wait_for(&self, upto: u64) -> std::io::Result<u64> {
        let (lock, cv) = &*self.shared;
        let mut g = lock.lock().unwrap_or_else(|p| p.into_inner());
        while (g.data.len() as u64) < upto && !g.done {
            let (next, timeout) = cv.wait_timeout(g, STALL).unwrap_or_else(|p| p.into_inner());
            g = next;
            if timeout.timed_out() && (g.data.len() as u64) < upto && !g.done {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!("the download stalled for {} s", STALL.as_secs()),
                ));
            }
        }
        if (g.data.len() as u64) < upto
            && let Some(e) = &g.error
        {
            return Err(std::io::Error::other(format!("download failed: {e}")));
        }
        Ok(g.data.len() as u64)
    }
}

impl Read for HttpReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        let avail = self.wait_for(self.pos + 1)?;
        if avail <= self.pos {
            return Ok(0);
        }
        let (lock, _) = &*self.shared;
        let g = lock.lock().unwrap_or_else(|p| p.into_inner());
        let start = self.pos as usize;
        let n = buf.len().min(g.data.len() - start);
        buf[..n].copy_from_slice(&g.data[start..start + n]);
        self.pos += n as u64;
        Ok(n)
    }
}

impl Seek for HttpReader {
    fn seek(&mut self, to: SeekFrom) -> std::io::Result<u64> {
        let new = match to {
            SeekFrom::Start(p) => p as i64,
            SeekFrom::Current(d) => self.pos as i64 + d,
            SeekFrom::End(d) => {
                let len = match self.len {
                    Some(l) => l,
                    None => self.wait_for(u64::MAX)?,
                };
                len as i64 + d
            }
        };
        if new < 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "seek before the start",
            ));
        }
        self.pos = new as u64;
        Ok(self.pos)
    }
}

impl symphonia::core::io::MediaSource for HttpReader {
    fn is_seekable(&self) -> bool {
        true
    }

    fn byte_len(&self) -> Option<u64> {
        self.len
    }
}
