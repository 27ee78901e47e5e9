//! The encrypted song package of the DRM catalog (`docs/music.md`, "Song package"): a 32-byte
//! header, then the song file cut into chunks, each sealed with ChaCha20-Poly1305 under the
//! song's own random key. A chunk's nonce is its index plus a "last chunk" flag (the STREAM
//! construction), and every chunk authenticates the header, so a reordered, cut, extended or
//! altered package fails with a [`PackageError`] instead of decrypting to something else.
//! [`Decryptor`] decrypts progressively as bytes arrive (a download with a progress bar).

use chacha20poly1305::aead::{Aead, KeyInit, OsRng, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};

/// The first 8 bytes of every package.
pub const MAGIC: &[u8; 8] = b"ONMICSNG";
/// The package format version this code writes and reads.
pub const VERSION: u8 = 1;
/// Header length in bytes.
pub const HEADER_LEN: usize = 32;
/// Plaintext bytes per chunk this code writes.
pub const CHUNK_SIZE: u32 = 64 * 1024;
/// Authentication tag bytes after each chunk.
pub const TAG_LEN: usize = 16;
/// Song key length in bytes.
pub const KEY_LEN: usize = 32;
/// Largest song a package may hold (1 GiB).
pub const MAX_PLAIN_LEN: u64 = 1 << 30;

/// Why a package could not be made or opened.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PackageError {
    /// The bytes do not start with the package magic.
    #[error("not an Onmic song package (bad magic); download the package again")]
    NotAPackage,
    /// A newer format.
    #[error("song package version {0} is not supported (this build reads version 1); update Onmic")]
    UnsupportedVersion(u8),
    /// The header's sizes are inconsistent.
    #[error("the song package header is damaged: {0}; download the package again")]
    BadHeader(&'static str),
    /// A chunk failed authentication: wrong key, or the package was altered.
    #[error(
        "song package chunk {chunk} failed authentication: the package was altered or the key is not this song's; download the package and a license again"
    )]
    Authentication {
        /// Index of the chunk.
        chunk: u32,
    },
    /// The package ended early.
    #[error("the song package is cut short ({have} of {need} bytes); download the package again")]
    Truncated {
        /// Bytes received.
        have: u64,
        /// Bytes the header announces.
        need: u64,
    },
    /// Bytes after the last chunk.
    #[error("the song package has data after its last chunk; download the package again")]
    TrailingData,
    /// The key has the wrong length.
    #[error("a song key is {KEY_LEN} bytes, got {0}")]
    BadKey(usize),
    /// Nothing to package, or too much.
    #[error("a song file must be 1 byte to 1 GiB, got {0} bytes")]
    BadSize(u64),
}

/// The parsed package header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// Plaintext bytes per chunk (the last may be shorter).
    pub chunk_size: u32,
    /// Plaintext length of the song file.
    pub plain_len: u64,
    /// Number of chunks.
    pub chunks: u32,
}

impl Header {
    fn for_len(plain_len: u64, chunk_size: u32) -> Header {
        let chunks = plain_len.div_ceil(u64::from(chunk_size));
        Header {
            chunk_size,
            plain_len,
            chunks: u32::try_from(chunks).unwrap_or(u32::MAX),
        }
    }

    /// The header's 32 bytes.
    pub fn to_bytes(self) -> [u8; HEADER_LEN] {
        let mut b = [0u8; HEADER_LEN];
        b[..8].copy_from_slice(MAGIC);
        b[8] = VERSION;
        b[12..16].copy_from_slice(&self.chunk_size.to_le_bytes());
        b[16..24].copy_from_slice(&self.plain_len.to_le_bytes());
        b[24..28].copy_from_slice(&self.chunks.to_le_bytes());
        b
    }

    /// Parses and checks a header.
    pub fn parse(b: &[u8; HEADER_LEN]) -> Result<Header, PackageError> {
        if &b[..8] != MAGIC {
            return Err(PackageError::NotAPackage);
        }
        if b[8] != VERSION {
            return Err(PackageError::UnsupportedVersion(b[8]));
        }
        if b[9..12] != [0, 0, 0] || b[28..32] != [0, 0, 0, 0] {
            return Err(PackageError::BadHeader("reserved bytes are not zero"));
        }
        let le4 = |r: std::ops::Range<usize>| {
            let mut a = [0u8; 4];
            a.copy_from_slice(&b[r]);
            u32::from_le_bytes(a)
        };
        let mut a = [0u8; 8];
        a.copy_from_slice(&b[16..24]);
        let h = Header {
            chunk_size: le4(12..16),
            plain_len: u64::from_le_bytes(a),
            chunks: le4(24..28),
        };
        if h.chunk_size == 0 || h.chunk_size > 16 << 20 {
            return Err(PackageError::BadHeader("chunk size out of range"));
        }
        if h.plain_len == 0 || h.plain_len > MAX_PLAIN_LEN {
            return Err(PackageError::BadHeader("song length out of range"));
        }
        if Header::for_len(h.plain_len, h.chunk_size).chunks != h.chunks {
            return Err(PackageError::BadHeader(
                "chunk count does not match the length",
            ));
        }
        Ok(h)
    }

    /// Total package length in bytes.
    pub fn package_len(&self) -> u64 {
        HEADER_LEN as u64 + self.plain_len + u64::from(self.chunks) * TAG_LEN as u64
    }

    fn plain_chunk_len(&self, i: u32) -> usize {
        let start = u64::from(i) * u64::from(self.chunk_size);
        (self.plain_len - start).min(u64::from(self.chunk_size)) as usize
    }
}

fn nonce(i: u32, last: bool) -> Nonce {
    let mut n = [0u8; 12];
    n[..8].copy_from_slice(&u64::from(i).to_be_bytes());
    n[8] = u8::from(last);
    n.into()
}

fn cipher(key: &[u8]) -> Result<ChaCha20Poly1305, PackageError> {
    if key.len() != KEY_LEN {
        return Err(PackageError::BadKey(key.len()));
    }
    Ok(ChaCha20Poly1305::new(Key::from_slice(key)))
}

/// A fresh random song key (from the OS's random source).
pub fn new_key() -> [u8; KEY_LEN] {
    ChaCha20Poly1305::generate_key(&mut OsRng).into()
}

/// Encrypts a song file into a package with [`CHUNK_SIZE`] chunks.
pub fn encrypt(key: &[u8], plain: &[u8]) -> Result<Vec<u8>, PackageError> {
    encrypt_chunked(key, plain, CHUNK_SIZE)
}

/// Encrypts with a given chunk size (tests use small chunks).
pub fn encrypt_chunked(key: &[u8], plain: &[u8], chunk_size: u32) -> Result<Vec<u8>, PackageError> {
    let c = cipher(key)?;
    let len = plain.len() as u64;
    if len == 0 || len > MAX_PLAIN_LEN || chunk_size == 0 {
        return Err(PackageError::BadSize(len));
    }
    let h = Header::for_len(len, chunk_size);
    let head = h.to_bytes();
    let mut out = Vec::with_capacity(h.package_len() as usize);
    out.extend_from_slice(&head);
    for (i, chunk) in plain.chunks(chunk_size as usize).enumerate() {
        let i = i as u32;
        let sealed = c
            .encrypt(
                &nonce(i, i + 1 == h.chunks),
                Payload {
                    msg: chunk,
                    aad: &head,
                },
            )
            .map_err(|_| PackageError::BadSize(len))?;
        out.extend_from_slice(&sealed);
    }
    Ok(out)
}

/// Progressive decryption: [`Decryptor::push`] bytes as they arrive, read
/// [`Decryptor::progress`], then [`Decryptor::finish`] for the song file (in memory only).
pub struct Decryptor {
    cipher: ChaCha20Poly1305,
    header: Option<Header>,
    head: [u8; HEADER_LEN],
    pending: Vec<u8>,
    received: u64,
    next_chunk: u32,
    plain: Vec<u8>,
}

impl std::fmt::Debug for Decryptor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Decryptor")
            .field("header", &self.header)
            .field("received", &self.received)
            .field("next_chunk", &self.next_chunk)
            .finish_non_exhaustive()
    }
}

impl Decryptor {
    /// A decryptor for a package sealed with `key`.
    pub fn new(key: &[u8]) -> Result<Decryptor, PackageError> {
        Ok(Decryptor {
            cipher: cipher(key)?,
            header: None,
            head: [0; HEADER_LEN],
            pending: Vec::new(),
            received: 0,
            next_chunk: 0,
            plain: Vec::new(),
        })
    }

    /// The header, once its bytes have arrived.
    pub fn header(&self) -> Option<Header> {
        self.header
    }

    /// (package bytes received, package length once the header is known).
    pub fn progress(&self) -> (u64, Option<u64>) {
        (self.received, self.header.map(|h| h.package_len()))
    }

    /// Feeds the next bytes; every complete chunk is authenticated and decrypted now.
    pub fn push(&mut self, mut bytes: &[u8]) -> Result<(), PackageError> {
        self.received += bytes.len() as u64;
        if self.header.is_none() {
            let need = HEADER_LEN - self.pending.len();
            let take = need.min(bytes.len());
            self.pending.extend_from_slice(&bytes[..take]);
            bytes = &bytes[take..];
            if self.pending.len() < HEADER_LEN {
                return Ok(());
            }
            self.head.copy_from_slice(&self.pending);
            self.pending.clear();
            let h = Header::parse(&self.head)?;
            self.plain.reserve_exact(h.plain_len as usize);
            self.header = Some(h);
        }
        let Some(h) = self.header else {
            return Ok(());
        };
        self.pending.extend_from_slice(bytes);
        let mut used = 0;
        while self.next_chunk < h.chunks {
            let need = h.plain_chunk_len(self.next_chunk) + TAG_LEN;
            if self.pending.len() - used < need {
                break;
            }
            let i = self.next_chunk;
            let plain = self
                .cipher
                .decrypt(
                    &nonce(i, i + 1 == h.chunks),
                    Payload {
                        msg: &self.pending[used..used + need],
                        aad: &self.head,
                    },
                )
                .map_err(|_| PackageError::Authentication { chunk: i })?;
            self.plain.extend_from_slice(&plain);
            used += need;
            self.next_chunk += 1;
        }
        self.pending.drain(..used);
        if self.next_chunk == h.chunks && !self.pending.is_empty() {
            return Err(PackageError::TrailingData);
        }
        Ok(())
    }

    /// The decrypted song file, or why the package is incomplete.
    pub fn finish(self) -> Result<Vec<u8>, PackageError> {
        match self.header {
            Some(h) if self.next_chunk == h.chunks => Ok(self.plain),
            Some(h) => Err(PackageError::Truncated {
                have: self.received,
                need: h.package_len(),
            }),
            None => Err(PackageError::Truncated {
                have: self.received,
                need: HEADER_LEN as u64,
            }),
        }
    }
}

/// Decrypts a whole package at once.
pub fn decrypt(key: &[u8], package: &[u8]) -> Result<Vec<u8>, PackageError> {
    let mut d = Decryptor::new(key)?;
    d.push(package)?;
    d.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn song(n: usize) -> Vec<u8> {
        (0..n).map(|i| (i * 7 + i / 251) as u8).collect()
    }

    #[test]
    fn round_trips_at_many_sizes_and_feed_patterns() {
        let key = new_key();
        for n in [1, 99, 100, 101, 1000, 4096] {
            let plain = song(n);
            let pkg = encrypt_chunked(&key, &plain, 100).unwrap();
            assert_eq!(
                pkg.len() as u64,
                Header::parse(pkg[..32].try_into().unwrap())
                    .unwrap()
                    .package_len()
            );
            assert_eq!(decrypt(&key, &pkg).unwrap(), plain);
            for step in [1, 7, 33, 116] {
                let mut d = Decryptor::new(&key).unwrap();
                for part in pkg.chunks(step) {
                    d.push(part).unwrap();
                }
                assert_eq!(d.finish().unwrap(), plain, "n {n} step {step}");
            }
        }
    }

    #[test]
    fn any_altered_cut_or_extended_package_is_refused() {
        let key = new_key();
        let plain = song(1000);
        let pkg = encrypt_chunked(&key, &plain, 100).unwrap();
        for at in (0..pkg.len()).step_by(13) {
            let mut bad = pkg.clone();
            bad[at] ^= 0x20;
            assert!(decrypt(&key, &bad).is_err(), "flip at {at} accepted");
        }
        for cut in [0, 10, 32, 100, 116, pkg.len() - 1] {
            assert!(
                matches!(
                    decrypt(&key, &pkg[..cut]),
                    Err(PackageError::Truncated { .. })
                ),
                "cut {cut}"
            );
        }
        // Dropping the last chunk and fixing the header: the new last chunk lacks the flag.
        let mut short = Header::parse(pkg[..32].try_into().unwrap()).unwrap();
        short.plain_len = 900;
        short.chunks = 9;
        let mut forged = short.to_bytes().to_vec();
        forged.extend_from_slice(&pkg[32..32 + 9 * 116]);
        assert!(matches!(
            decrypt(&key, &forged),
            Err(PackageError::Authentication { .. })
        ));
        let mut long = pkg.clone();
        long.push(0);
        assert_eq!(decrypt(&key, &long), Err(PackageError::TrailingData));
        assert_eq!(
            decrypt(&new_key(), &pkg),
            Err(PackageError::Authentication { chunk: 0 })
        );
        assert_eq!(decrypt(&key[..5], &pkg), Err(PackageError::BadKey(5)));
        assert_eq!(
            decrypt(&key, b"ID3 not a package at all, just mp3 bytes"),
            Err(PackageError::NotAPackage)
        );
        assert!(encrypt(&key, &[]).is_err());
    }
}
