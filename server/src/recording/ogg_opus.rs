//! An Ogg Opus stream writer (RFC 7845) on the `ogg` crate's page writer: `OpusHead` (with the
//! encoder's pre-skip) and `OpusTags` on their own pages, then audio packets with granule
//! positions counted in 48 kHz samples. A page is closed every [`PACKETS_PER_PAGE`] packets and
//! flushed to the file, so a crash loses at most that much audio and leaves a readable file;
//! [`OggOpusWriter::finish`] ends the stream with end trimming to the exact duration.

use std::io::{self, Write};

use ogg::writing::{PacketWriteEndInfo, PacketWriter};

/// Audio packets per Ogg page (50 × 20 ms = 1 s).
pub const PACKETS_PER_PAGE: u32 = 50;

/// Writes one Opus logical stream into `W`.
pub struct OggOpusWriter<W: Write> {
    pages: PacketWriter<'static, W>,
    serial: u32,
    pre_skip: u64,
    /// Samples (per channel, 48 kHz) of the audio packets written, pre-skip excluded.
    samples: u64,
    in_page: u32,
}

impl<W: Write> std::fmt::Debug for OggOpusWriter<W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OggOpusWriter")
            .field("serial", &self.serial)
            .field("pre_skip", &self.pre_skip)
            .field("samples", &self.samples)
            .finish_non_exhaustive()
    }
}

/// The `OpusHead` identification header (RFC 7845 §5.1), channel mapping family 0.
pub fn opus_head(channels: u8, pre_skip: u16, input_rate: u32) -> Vec<u8> {
    let mut h = Vec::with_capacity(19);
    h.extend_from_slice(b"OpusHead");
    h.push(1); // version
    h.push(channels);
    h.extend_from_slice(&pre_skip.to_le_bytes());
    h.extend_from_slice(&input_rate.to_le_bytes());
    h.extend_from_slice(&0i16.to_le_bytes()); // output gain
    h.push(0); // mapping family 0: mono or stereo
    h
}

/// The `OpusTags` comment header (RFC 7845 §5.2) with a vendor string and `comments`.
pub fn opus_tags(vendor: &str, comments: &[String]) -> Vec<u8> {
    let mut t = Vec::new();
    t.extend_from_slice(b"OpusTags");
    t.extend_from_slice(&u32::try_from(vendor.len()).unwrap_or(0).to_le_bytes());
    t.extend_from_slice(vendor.as_bytes());
    t.extend_from_slice(&u32::try_from(comments.len()).unwrap_or(0).to_le_bytes());
    for c in comments {
        t.extend_from_slice(&u32::try_from(c.len()).unwrap_or(0).to_le_bytes());
        t.extend_from_slice(c.as_bytes());
    }
    t
}

impl<W: Write> OggOpusWriter<W> {
    /// Starts a stream: writes both header pages. `pre_skip` is the encoder's lookahead.
    pub fn new(
        out: W,
        serial: u32,
        channels: u8,
        pre_skip: u16,
        comments: &[String],
    ) -> io::Result<Self> {
        let mut pages = PacketWriter::new(out);
        pages.write_packet(
            opus_head(channels, pre_skip, 48_000),
            serial,
            PacketWriteEndInfo::EndPage,
            0,
        )?;
        let vendor = concat!("onmic-server ", env!("CARGO_PKG_VERSION"));
        pages.write_packet(
            opus_tags(vendor, comments),
            serial,
            PacketWriteEndInfo::EndPage,
            0,
        )?;
        pages.inner_mut().flush()?;
        Ok(OggOpusWriter {
            pages,
            serial,
            pre_skip: u64::from(pre_skip),
            samples: 0,
            in_page: 0,
        })
    }

    /// Samples (per channel) written so far, pre-skip excluded.
    pub fn samples(&self) -> u64 {
        self.samples
    }

    /// Appends one Opus packet that decodes to `samples` samples per channel.
    pub fn write_audio(&mut self, packet: &[u8], samples: u64) -> io::Result<()> {
        self.samples += samples;
        self.in_page += 1;
        let end = if self.in_page >= PACKETS_PER_PAGE {
            self.in_page = 0;
            PacketWriteEndInfo::EndPage
        } else {
            PacketWriteEndInfo::NormalPacket
        };
        self.pages.write_packet(
            packet.to_vec(),
            self.serial,
            end,
            self.pre_skip + self.samples,
        )?;
        if end == PacketWriteEndInfo::EndPage {
            self.pages.inner_mut().flush()?;
        }
        Ok(())
    }

    /// Ends the stream with its last packet; the final granule position says the stream holds
    /// exactly `total` samples (per channel), trimming the end of the last packet (RFC 7845
    /// §4.4). `total` is clamped to what was written.
    pub fn finish(mut self, last: &[u8], samples: u64, total: u64) -> io::Result<W> {
        self.samples += samples;
        let total = total.min(self.samples);
        self.pages.write_packet(
            last.to_vec(),
            self.serial,
            PacketWriteEndInfo::EndStream,
            self.pre_skip + total,
        )?;
        let mut out = self.pages.into_inner();
        out.flush()?;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_follow_rfc_7845() {
        let h = opus_head(2, 312, 48_000);
        assert_eq!(&h[..8], b"OpusHead");
        assert_eq!(h.len(), 19);
        assert_eq!(h[8], 1, "version");
        assert_eq!(h[9], 2, "channels");
        assert_eq!(u16::from_le_bytes([h[10], h[11]]), 312, "pre-skip");
        assert_eq!(u32::from_le_bytes([h[12], h[13], h[14], h[15]]), 48_000);
        assert_eq!(h[18], 0, "mapping family");
        let t = opus_tags("v", &["TITLE=x".into()]);
        assert_eq!(&t[..8], b"OpusTags");
        assert_eq!(&t[8..13], &[1, 0, 0, 0, b'v']);
        assert_eq!(&t[13..17], &[1, 0, 0, 0]);
        assert_eq!(&t[21..], b"TITLE=x");
    }

    #[test]
    fn pages_carry_granules_and_the_end_is_trimmed() {
        let mut w = OggOpusWriter::new(Vec::new(), 7, 2, 312, &[]).expect("headers");
        for _ in 0..60 {
            w.write_audio(&[0xfc, 0xff, 0xfe], 960).expect("packet");
        }
        let bytes = w
            .finish(&[0xfc, 0xff, 0xfe], 960, 61 * 960 - 100)
            .expect("end");
        let mut r = ogg::reading::PacketReader::new(std::io::Cursor::new(bytes));
        let mut packets = Vec::new();
        while let Some(p) = r.read_packet().expect("readable") {
            packets.push(p);
        }
        assert_eq!(packets.len(), 2 + 61);
        assert_eq!(&packets[0].data[..8], b"OpusHead");
        assert_eq!(&packets[1].data[..8], b"OpusTags");
        let last = packets.last().expect("last");
        assert!(last.last_in_stream());
        assert_eq!(last.absgp_page(), 312 + 61 * 960 - 100);
        // The page closed after 50 audio packets carries the granule at its end.
        assert_eq!(packets[2 + 49].absgp_page(), 312 + 50 * 960);
    }
}
