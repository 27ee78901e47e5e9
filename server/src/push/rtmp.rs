//! The publishing side of RTMP (Adobe RTMP 1.0): the simple handshake, the chunk stream in both
//! directions, and the `connect` → `createStream` → `publish` commands. [`ChunkWriter`] and
//! [`ChunkReader`] are sans-IO (bytes in, messages out; malformed input is an error, never a
//! panic); [`Publisher`] drives them over a blocking `TcpStream` with timeouts.
//!
//! Written here rather than taken from a crate: the RTMP crates' client sessions (`rml_rtmp`
//! 0.8's `ClientSession`) can publish audio, video and `onMetaData`, but not other script data
//! messages on the stream, which the speakers' levels need (`docs/push.md`); the subset a
//! publisher needs is small.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::Duration;

use super::amf0::{self, Value};

/// Message type ids (RTMP 1.0 §5.4, §7.1).
pub mod msg {
    /// Set Chunk Size.
    pub const SET_CHUNK_SIZE: u8 = 1;
    /// Abort Message.
    pub const ABORT: u8 = 2;
    /// Acknowledgement.
    pub const ACK: u8 = 3;
    /// User Control Message.
    pub const USER_CONTROL: u8 = 4;
    /// Window Acknowledgement Size.
    pub const WINDOW_ACK: u8 = 5;
    /// Set Peer Bandwidth.
    pub const PEER_BANDWIDTH: u8 = 6;
    /// Audio data (an FLV audio tag body).
    pub const AUDIO: u8 = 8;
    /// AMF0 data (an FLV script data tag body).
    pub const DATA_AMF0: u8 = 18;
    /// AMF0 command.
    pub const COMMAND_AMF0: u8 = 20;
}

/// The chunk size this publisher writes with (announced with Set Chunk Size first).
pub const OUT_CHUNK_SIZE: u32 = 4096;
/// Largest message accepted from the server (its answers are a few hundred bytes).
pub const MAX_IN_MESSAGE: usize = 1 << 20;
/// Largest chunk size accepted from the server (RTMP allows up to 2^31 - 1).
const MAX_IN_CHUNK: u32 = 1 << 24;
const HANDSHAKE_SIZE: usize = 1536;

/// Chunk stream ids this publisher uses.
const CSID_CONTROL: u8 = 2;
const CSID_COMMAND: u8 = 3;
const CSID_DATA: u8 = 5;
const CSID_AUDIO: u8 = 6;

/// Why the RTMP session failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RtmpError {
    /// The server could not be reached or the connection broke.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// The server answered with something this client cannot read.
    #[error("the server sent a malformed RTMP stream: {0}")]
    Protocol(String),
    /// The server refused `connect` or `publish`.
    #[error("the RTMP server refused: {0}")]
    Refused(String),
}

/// One whole RTMP message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// The message type id ([`msg`]).
    pub kind: u8,
    /// Timestamp in milliseconds.
    pub timestamp: u32,
    /// Message stream id.
    pub stream: u32,
    /// The body.
    pub payload: Vec<u8>,
}

/// Writes messages as chunks. Every message starts with a full (type 0) header, so the writer
/// keeps no compression state that a reconnect or an interleaved message could break.
#[derive(Debug)]
pub struct ChunkWriter {
    chunk_size: usize,
}

impl Default for ChunkWriter {
    fn default() -> Self {
        ChunkWriter { chunk_size: 128 }
    }
}

impl ChunkWriter {
    /// Sets the outgoing chunk size (send Set Chunk Size first).
    pub fn set_chunk_size(&mut self, size: u32) {
        self.chunk_size = size.clamp(1, 0x7FFF_FFFF) as usize;
    }

    /// Appends `payload` as chunks on `csid` (2..=63) to `out`.
    pub fn write(
        &self,
        out: &mut Vec<u8>,
        csid: u8,
        kind: u8,
        timestamp: u32,
        stream: u32,
        payload: &[u8],
    ) {
        let csid = csid.clamp(2, 63);
        let extended = timestamp >= 0x00FF_FFFF;
        let ts24 = if extended { 0x00FF_FFFF } else { timestamp };
        out.push(csid); // fmt 0
        out.extend_from_slice(&ts24.to_be_bytes()[1..]);
        let len = u32::try_from(payload.len())
            .unwrap_or(u32::MAX)
            .min(0x00FF_FFFF);
        out.extend_from_slice(&len.to_be_bytes()[1..]);
        out.push(kind);
        out.extend_from_slice(&stream.to_le_bytes());
        if extended {
            out.extend_from_slice(&timestamp.to_be_bytes());
        }
        let mut chunks = payload.chunks(self.chunk_size).peekable();
        if chunks.peek().is_none() {
            return;
        }
        let mut first = true;
        for chunk in chunks {
            if !first {
                out.push(0xC0 | csid); // fmt 3
                if extended {
                    out.extend_from_slice(&timestamp.to_be_bytes());
                }
            }
            first = false;
            out.extend_from_slice(chunk);
        }
    }
}

/// The header state of one incoming chunk stream.
#[derive(Debug, Default, Clone)]
struct InStream {
    timestamp: u32,
    delta: u32,
    length: usize,
    kind: u8,
    stream: u32,
    extended: bool,
    partial: Vec<u8>,
    seen: bool,
}

/// Reassembles messages from the server's chunks (all four header formats, extended
/// timestamps, Set Chunk Size and Abort handled here).
#[derive(Debug)]
pub struct ChunkReader {
    buf: Vec<u8>,
    chunk_size: usize,
    streams: std::collections::HashMap<u32, InStream>,
}

impl Default for ChunkReader {
    fn default() -> Self {
        ChunkReader {
            buf: Vec::new(),
            chunk_size: 128,
            streams: std::collections::HashMap::new(),
        }
    }
}

impl ChunkReader {
    /// Takes bytes from the socket.
    pub fn push(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
    }

    /// The next whole message, if the bytes so far hold one.
    pub fn poll(&mut self) -> Result<Option<Message>, RtmpError> {
        loop {
            let Some((consumed, message)) = self.parse_chunk()? else {
                return Ok(None);
            };
            self.buf.drain(..consumed);
            let Some(m) = message else { continue };
            match m.kind {
                msg::SET_CHUNK_SIZE => {
                    let size = be_u32(&m.payload).ok_or_else(|| bad("short Set Chunk Size"))?
                        & 0x7FFF_FFFF;
                    if size == 0 || size > MAX_IN_CHUNK {
                        return Err(bad(&format!("chunk size {size}")));
                    }
                    self.chunk_size = size as usize;
                }
                msg::ABORT => {
                    if let Some(csid) = be_u32(&m.payload)
                        && let Some(s) = self.streams.get_mut(&csid)
                    {
                        s.partial.clear();
                    }
                }
                _ => return Ok(Some(m)),
            }
        }
    }

    /// Parses one chunk at the start of the buffer: `None` if incomplete, else the bytes it
    /// took and the message it completed.
    fn parse_chunk(&mut self) -> Result<Option<(usize, Option<Message>)>, RtmpError> {
        let b = &self.buf;
        let Some(&first) = b.first() else {
            return Ok(None);
        };
        let fmt = first >> 6;
        let (csid, mut at) = match first & 0x3F {
            0 => match b.get(1) {
                Some(&x) => (64 + u32::from(x), 2),
                None => return Ok(None),
            },
            1 => match (b.get(1), b.get(2)) {
                (Some(&x), Some(&y)) => (64 + u32::from(x) + 256 * u32::from(y), 3),
                _ => return Ok(None),
            },
            n => (u32::from(n), 1),
        };
        let header_len = [11, 7, 3, 0][usize::from(fmt)];
        if b.len() < at + header_len {
            return Ok(None);
        }
        let mut s = self.streams.get(&csid).cloned().unwrap_or_default();
        if fmt != 0 && !s.seen {
            return Err(bad(&format!(
                "chunk stream {csid} starts without a full header"
            )));
        }
        let h = &b[at..at + header_len];
        let starts_message = s.partial.is_empty();
        let mut ts_field = 0;
        if fmt <= 2 {
            ts_field = u32::from_be_bytes([0, h[0], h[1], h[2]]);
        }
        if fmt <= 1 {
            s.length = u32::from_be_bytes([0, h[3], h[4], h[5]]) as usize;
            s.kind = h[6];
            if s.length > MAX_IN_MESSAGE {
                return Err(bad(&format!("a {}-byte message", s.length)));
            }
        }
        if fmt == 0 {
            s.stream = u32::from_le_bytes([h[7], h[8], h[9], h[10]]);
        }
        at += header_len;
        if fmt <= 2 {
            s.extended = ts_field == 0x00FF_FFFF;
        }
        if s.extended {
            let Some(x) = b.get(at..at + 4) else {
                return Ok(None);
            };
            if fmt <= 2 {
                ts_field = u32::from_be_bytes([x[0], x[1], x[2], x[3]]);
            }
            at += 4;
        }
        if starts_message {
            match fmt {
                0 => {
                    s.timestamp = ts_field;
                    s.delta = 0;
                }
                1 | 2 => {
                    s.delta = ts_field;
                    s.timestamp = s.timestamp.wrapping_add(ts_field);
                }
                _ => s.timestamp = s.timestamp.wrapping_add(s.delta),
            }
        }
        let remaining = s
            .length
            .checked_sub(s.partial.len())
            .ok_or_else(|| bad("a message header shortened a message in progress"))?;
        let want = remaining.min(self.chunk_size);
        if b.len() < at + want {
            return Ok(None);
        }
        s.partial.extend_from_slice(&b[at..at + want]);
        s.seen = true;
        at += want;
        let message = if s.partial.len() == s.length {
            Some(Message {
                kind: s.kind,
                timestamp: s.timestamp,
                stream: s.stream,
                payload: std::mem::take(&mut s.partial),
            })
        } else {
            None
        };
        self.streams.insert(csid, s);
        Ok(Some((at, message)))
    }
}

fn be_u32(b: &[u8]) -> Option<u32> {
    Some(u32::from_be_bytes(b.get(..4)?.try_into().ok()?))
}

fn bad(what: &str) -> RtmpError {
    RtmpError::Protocol(what.to_owned())
}

/// Where to publish: `rtmp://host[:port]/app[...]` and the stream key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// Host name or address.
    pub host: String,
    /// TCP port (1935 unless the URL says otherwise).
    pub port: u16,
    /// The application: the URL's path without its leading `/` (may hold further `/`).
    pub app: String,
    /// The URL as given (sent as `tcUrl`).
    pub tc_url: String,
    /// The stream key (`publish`'s name).
    pub key: String,
}

/// The publishing session over one TCP connection.
#[derive(Debug)]
pub struct Publisher {
    stream: TcpStream,
    writer: ChunkWriter,
    stream_id: u32,
    out: Vec<u8>,
    /// Bytes written to the socket.
    pub bytes_sent: u64,
}

/// What the server said while the publisher listened.
#[derive(Debug, Clone, PartialEq)]
pub enum ServerEvent {
    /// A User Control Ping Request with its timestamp: answer with [`Publisher::pong`].
    Ping(u32),
    /// An `onStatus` whose level is `error` (e.g. the stream was unpublished by the server).
    Error(String),
    /// Anything else (acknowledgements, bandwidth, status).
    Other,
}

impl Publisher {
    /// Connects, hand-shakes and publishes `target.key` in `live` mode. `timeout` bounds the TCP
    /// connect and every read and write of the set-up.
    pub fn connect(
        target: &Target,
        timeout: Duration,
    ) -> Result<(Publisher, TcpStream), RtmpError> {
        let addrs: Vec<SocketAddr> = (target.host.as_str(), target.port)
            .to_socket_addrs()?
            .collect();
        let mut last = std::io::Error::new(
            std::io::ErrorKind::NotFound,
            format!("{} has no address", target.host),
        );
        let mut stream = None;
        for addr in addrs {
            match TcpStream::connect_timeout(&addr, timeout) {
                Ok(s) => {
                    stream = Some(s);
                    break;
                }
                Err(e) => last = std::io::Error::new(e.kind(), format!("{addr}: {e}")),
            }
        }
        let mut stream = stream.ok_or(last)?;
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(timeout))?;
        stream.set_write_timeout(Some(timeout))?;
        handshake(&mut stream)?;
        let mut p = Publisher {
            stream,
            writer: ChunkWriter::default(),
            stream_id: 0,
            out: Vec::with_capacity(8192),
            // C0, C1 and C2.
            bytes_sent: (1 + 2 * HANDSHAKE_SIZE) as u64,
        };
        let mut reader = ChunkReader::default();
        p.send(
            CSID_CONTROL,
            msg::SET_CHUNK_SIZE,
            0,
            0,
            &OUT_CHUNK_SIZE.to_be_bytes(),
        )?;
        p.writer.set_chunk_size(OUT_CHUNK_SIZE);
        p.command(
            0,
            &[
                Value::String("connect".into()),
                Value::Number(1.0),
                Value::Object(vec![
                    ("app".into(), Value::String(target.app.clone())),
                    ("type".into(), Value::String("nonprivate".into())),
                    (
                        "flashVer".into(),
                        Value::String("FMLE/3.0 (compatible; onmic)".into()),
                    ),
                    ("tcUrl".into(), Value::String(target.tc_url.clone())),
                ]),
            ],
        )?;
        p.await_result(&mut reader, 1.0)?;
        let key = Value::String(target.key.clone());
        p.command(
            0,
            &[
                Value::String("releaseStream".into()),
                Value::Number(2.0),
                Value::Null,
                key.clone(),
            ],
        )?;
        p.command(
            0,
            &[
                Value::String("FCPublish".into()),
                Value::Number(3.0),
                Value::Null,
                key.clone(),
            ],
        )?;
        p.command(
            0,
            &[
                Value::String("createStream".into()),
                Value::Number(4.0),
                Value::Null,
            ],
        )?;
        let created = p.await_result(&mut reader, 4.0)?;
        let id = created
            .get(3)
            .and_then(Value::as_number)
            .ok_or_else(|| bad("createStream's answer has no stream id"))?;
        if !(0.0..=f64::from(u32::MAX)).contains(&id) {
            return Err(bad("createStream's stream id is out of range"));
        }
        p.stream_id = id as u32;
        p.command(
            p.stream_id,
            &[
                Value::String("publish".into()),
                Value::Number(5.0),
                Value::Null,
                key,
                Value::String("live".into()),
            ],
        )?;
        loop {
            let m = p.read_message(&mut reader)?;
            if m.kind != msg::COMMAND_AMF0 {
                continue;
            }
            let values = amf0::decode_all(&m.payload).map_err(|e| bad(&e.to_string()))?;
            match values.first().and_then(Value::as_str) {
                Some("onStatus") => {
                    let info = values.get(3);
                    let code = info
                        .and_then(|i| i.get("code"))
                        .and_then(Value::as_str)
                        .unwrap_or("");
                    let level = info
                        .and_then(|i| i.get("level"))
                        .and_then(Value::as_str)
                        .unwrap_or("");
                    if code == "NetStream.Publish.Start" {
                        break;
                    }
                    if level == "error" || code.contains("Publish.") {
                        return Err(RtmpError::Refused(describe(info, code)));
                    }
                }
                Some("_error") => {
                    return Err(RtmpError::Refused(describe(values.get(3), "publish")));
                }
                _ => {}
            }
        }
        // Later reads happen on the reader thread's clone, which waits as long as it must.
        let reads = p.stream.try_clone()?;
        reads.set_read_timeout(None)?;
        Ok((p, reads))
    }

    /// Sends a script data message (`@setDataFrame`, `onVolume`) at `timestamp` ms.
    pub fn data(&mut self, timestamp: u32, values: &[Value]) -> Result<(), RtmpError> {
        let body = amf0::encode(values);
        self.send(CSID_DATA, msg::DATA_AMF0, timestamp, self.stream_id, &body)
    }

    /// Sends an audio message (an FLV audio tag body) at `timestamp` ms.
    pub fn audio(&mut self, timestamp: u32, body: &[u8]) -> Result<(), RtmpError> {
        self.send(CSID_AUDIO, msg::AUDIO, timestamp, self.stream_id, body)
    }

    /// Answers a Ping Request.
    pub fn pong(&mut self, timestamp: u32) -> Result<(), RtmpError> {
        let mut body = vec![0, 7];
        body.extend_from_slice(&timestamp.to_be_bytes());
        self.send(CSID_CONTROL, msg::USER_CONTROL, 0, 0, &body)
    }

    /// Ends the publication politely (`FCUnpublish`, `deleteStream`) and closes.
    pub fn close(mut self) {
        let id = f64::from(self.stream_id);
        let key = Value::String(String::new());
        let _ = self.command(
            0,
            &[
                Value::String("FCUnpublish".into()),
                Value::Number(6.0),
                Value::Null,
                key,
            ],
        );
        let _ = self.command(
            0,
            &[
                Value::String("deleteStream".into()),
                Value::Number(7.0),
                Value::Null,
                Value::Number(id),
            ],
        );
        let _ = self.stream.flush();
        let _ = self.stream.shutdown(std::net::Shutdown::Both);
    }

    fn command(&mut self, stream: u32, values: &[Value]) -> Result<(), RtmpError> {
        let body = amf0::encode(values);
        self.send(CSID_COMMAND, msg::COMMAND_AMF0, 0, stream, &body)
    }

    fn send(
        &mut self,
        csid: u8,
        kind: u8,
        timestamp: u32,
        stream: u32,
        payload: &[u8],
    ) -> Result<(), RtmpError> {
        self.out.clear();
        self.writer
            .write(&mut self.out, csid, kind, timestamp, stream, payload);
        self.stream.write_all(&self.out)?;
        self.bytes_sent += self.out.len() as u64;
        Ok(())
    }

    fn read_message(&mut self, reader: &mut ChunkReader) -> Result<Message, RtmpError> {
        let mut buf = [0u8; 4096];
        loop {
            if let Some(m) = reader.poll()? {
                if m.kind == msg::USER_CONTROL
                    && m.payload.get(..2) == Some(&[0, 6])
                    && let Some(ts) = m.payload.get(2..).and_then(be_u32)
                {
                    self.pong(ts)?;
                }
                return Ok(m);
            }
            let n = self.stream.read(&mut buf)?;
            if n == 0 {
                return Err(RtmpError::Io(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "the server closed the connection",
                )));
            }
            reader.push(&buf[..n]);
        }
    }

    /// Waits for the `_result` of transaction `txn`; `_error` is a refusal.
    fn await_result(
        &mut self,
        reader: &mut ChunkReader,
        txn: f64,
    ) -> Result<Vec<Value>, RtmpError> {
        loop {
            let m = self.read_message(reader)?;
            if m.kind != msg::COMMAND_AMF0 {
                continue;
            }
            let values = amf0::decode_all(&m.payload).map_err(|e| bad(&e.to_string()))?;
            let name = values.first().and_then(Value::as_str);
            let id = values.get(1).and_then(Value::as_number);
            match (name, id) {
                (Some("_result"), Some(id)) if id == txn => return Ok(values),
                (Some("_error"), Some(id)) if id == txn => {
                    return Err(RtmpError::Refused(describe(values.get(3), "connect")));
                }
                _ => {}
            }
        }
    }
}

/// The server's `description` (or `code`) of a status object.
fn describe(info: Option<&Value>, fallback: &str) -> String {
    let code = info.and_then(|i| i.get("code")).and_then(Value::as_str);
    let text = info
        .and_then(|i| i.get("description"))
        .and_then(Value::as_str);
    match (code, text) {
        (Some(c), Some(t)) => format!("{c}: {t}"),
        (Some(c), None) => c.to_owned(),
        (None, Some(t)) => t.to_owned(),
        (None, None) => format!("{fallback} was refused"),
    }
}

/// The simple handshake: C0+C1, S0+S1+S2, C2 (the echo of S1).
fn handshake(stream: &mut TcpStream) -> Result<(), RtmpError> {
    let mut c0c1 = vec![0u8; 1 + HANDSHAKE_SIZE];
    c0c1[0] = 3;
    // Time 0, zero version (the simple handshake), then bytes that need not be random.
    let mut x: u32 = 0x9E37_79B9;
    for b in &mut c0c1[9..] {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        *b = x as u8;
    }
    stream.write_all(&c0c1)?;
    let mut s0 = [0u8; 1];
    stream.read_exact(&mut s0)?;
    if s0[0] != 3 {
        return Err(bad(&format!("RTMP version {} (not 3)", s0[0])));
    }
    let mut s1 = vec![0u8; HANDSHAKE_SIZE];
    stream.read_exact(&mut s1)?;
    let mut s2 = vec![0u8; HANDSHAKE_SIZE];
    stream.read_exact(&mut s2)?;
    stream.write_all(&s1)?;
    Ok(())
}

/// Reads what the server sends while publishing and classifies it; for the reader thread.
#[derive(Debug)]
pub struct Listener {
    stream: TcpStream,
    reader: ChunkReader,
}

impl Listener {
    /// Listens on the read half `Publisher::connect` returned.
    pub fn new(stream: TcpStream) -> Listener {
        Listener {
            stream,
            reader: ChunkReader::default(),
        }
    }

    /// The next event; an error when the connection ends.
    pub fn next_event(&mut self) -> Result<ServerEvent, RtmpError> {
        let mut buf = [0u8; 4096];
        loop {
            if let Some(m) = self.reader.poll()? {
                return Ok(classify(&m));
            }
            let n = self.stream.read(&mut buf)?;
            if n == 0 {
                return Err(RtmpError::Io(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "the server closed the connection",
                )));
            }
            self.reader.push(&buf[..n]);
        }
    }
}

fn classify(m: &Message) -> ServerEvent {
    match m.kind {
        msg::USER_CONTROL if m.payload.get(..2) == Some(&[0, 6]) => m
            .payload
            .get(2..)
            .and_then(be_u32)
            .map_or(ServerEvent::Other, ServerEvent::Ping),
        msg::COMMAND_AMF0 => {
            let Ok(values) = amf0::decode_all(&m.payload) else {
                return ServerEvent::Other;
            };
            if values.first().and_then(Value::as_str) != Some("onStatus") {
                return ServerEvent::Other;
            }
            let info = values.get(3);
            if info.and_then(|i| i.get("level")).and_then(Value::as_str) == Some("error") {
                ServerEvent::Error(describe(info, "onStatus"))
            } else {
                ServerEvent::Other
            }
        }
        _ => ServerEvent::Other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roundtrip(writer_chunk: u32, payloads: &[(u8, u32, Vec<u8>)]) -> Vec<Message> {
        let mut w = ChunkWriter::default();
        let mut out = Vec::new();
        if writer_chunk != 128 {
            w.write(
                &mut out,
                CSID_CONTROL,
                msg::SET_CHUNK_SIZE,
                0,
                0,
                &writer_chunk.to_be_bytes(),
            );
            w.set_chunk_size(writer_chunk);
        }
        for (kind, ts, p) in payloads {
            w.write(&mut out, CSID_AUDIO, *kind, *ts, 1, p);
        }
        let mut r = ChunkReader::default();
        let mut got = Vec::new();
        // Byte by byte: every split point must work.
        for b in out {
            r.push(&[b]);
            while let Some(m) = r.poll().expect("valid") {
                got.push(m);
            }
        }
        got
    }

    #[test]
    fn written_chunks_read_back() {
        let big: Vec<u8> = (0..10_000u32).map(|i| i as u8).collect();
        let msgs = vec![
            (msg::AUDIO, 0, vec![0xAF, 0, 0x11, 0x90]),
            (msg::AUDIO, 21, big.clone()),
            (msg::DATA_AMF0, 0x0100_0000, big.clone()),
            (msg::AUDIO, 5, vec![]),
        ];
        for size in [128, 4096] {
            let got = roundtrip(size, &msgs);
            assert_eq!(got.len(), msgs.len());
            for (g, (kind, ts, p)) in got.iter().zip(&msgs) {
                assert_eq!((g.kind, g.timestamp, &g.payload), (*kind, *ts, p));
            }
        }
    }

    #[test]
    fn compressed_headers_are_read() {
        // fmt 0 then fmt 1 (delta 10, new length), then fmt 3 continuing the same delta.
        let mut b = vec![0x04, 0, 0, 100, 0, 0, 2, 8, 1, 0, 0, 0, 0xAA, 0xBB];
        b.extend_from_slice(&[0x44, 0, 0, 10, 0, 0, 1, 8, 0xCC]);
        b.extend_from_slice(&[0xC4, 0xDD]);
        let mut r = ChunkReader::default();
        r.push(&b);
        let ts: Vec<u32> = std::iter::from_fn(|| r.poll().expect("valid"))
            .map(|m| m.timestamp)
            .collect();
        assert_eq!(ts, [100, 110, 120]);
    }

    #[test]
    fn malformed_streams_are_errors_not_panics() {
        let mut r = ChunkReader::default();
        r.push(&[0x43, 0, 0, 0, 0, 0, 1, 8]); // fmt 1 on a stream never started
        assert!(r.poll().is_err());
        let mut r = ChunkReader::default();
        r.push(&[0x02, 0, 0, 0, 0xFF, 0xFF, 0xFF, 8, 0, 0, 0, 0]); // 16 MiB message
        assert!(r.poll().is_err());
        let mut r = ChunkReader::default();
        r.push(&[0x02, 0, 0, 0, 0, 0, 4, 1, 0, 0, 0, 0, 0, 0, 0, 0]); // chunk size 0
        assert!(r.poll().is_err());
        // Arbitrary bytes never panic.
        let mut x: u32 = 1;
        for _ in 0..2000 {
            let mut r = ChunkReader::default();
            let bytes: Vec<u8> = (0..64)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 17;
                    x ^= x << 5;
                    x as u8
                })
                .collect();
            r.push(&bytes);
            while let Ok(Some(_)) = r.poll() {}
        }
    }
}
