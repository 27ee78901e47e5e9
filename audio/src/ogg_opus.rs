//! Ogg Opus file output (RFC 7845): identification header, comment header, then one Opus packet
//! per page-segment with granule positions at 48 kHz, so ffprobe, ffmpeg and browsers read it.

use std::io::Write;

use ogg::writing::{PacketWriteEndInfo, PacketWriter};

/// Writes an Ogg Opus stream.
pub struct OggOpusWriter<W: Write> {
    writer: PacketWriter<'static, W>,
    serial: u32,
    pre_skip: u16,
    granule: u64,
    packets_in_page: u32,
}

impl<W: Write> std::fmt::Debug for OggOpusWriter<W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OggOpusWriter")
            .field("granule", &self.granule)
            .finish()
    }
}

impl<W: Write> OggOpusWriter<W> {
    /// Starts a stream: writes the OpusHead and OpusTags pages.
    pub fn new(out: W, channels: u8, pre_skip: u16, input_rate: u32) -> std::io::Result<Self> {
        let mut writer = PacketWriter::new(out);
        let serial = 0x4f4e_4d43; // "ONMC"
        let mut head = Vec::with_capacity(19);
        head.extend_from_slice(b"OpusHead");
        head.push(1); // version
        head.push(channels);
        head.extend_from_slice(&pre_skip.to_le_bytes());
        head.extend_from_slice(&input_rate.to_le_bytes());
        head.extend_from_slice(&0i16.to_le_bytes()); // output gain
        head.push(0); // channel mapping family 0 (mono/stereo)
        writer.write_packet(head, serial, PacketWriteEndInfo::EndPage, 0)?;
        let vendor = b"onmic-audio";
        let mut tags = Vec::new();
        tags.extend_from_slice(b"OpusTags");
        tags.extend_from_slice(&(vendor.len() as u32).to_le_bytes());
        tags.extend_from_slice(vendor);
        tags.extend_from_slice(&0u32.to_le_bytes()); // no user comments
        writer.write_packet(tags, serial, PacketWriteEndInfo::EndPage, 0)?;
        Ok(OggOpusWriter {
            writer,
            serial,
            pre_skip,
            granule: u64::from(pre_skip),
            packets_in_page: 0,
        })
    }

    /// Appends one packet. `granule` is the 48 kHz sample position at the packet's end counted
    /// from the stream start including the pre-skip; on the `last` packet it may fall inside the
    /// packet, which tells readers to trim the padding.
    pub fn write_packet(
        &mut self,
        payload: &[u8],
        granule: u64,
        last: bool,
    ) -> std::io::Result<()> {
        self.granule = granule.max(self.granule);
        self.packets_in_page += 1;
        let info = if last {
            PacketWriteEndInfo::EndStream
        } else if self.packets_in_page >= 50 {
            // About one second per page: bounded latency for streaming readers.
            self.packets_in_page = 0;
            PacketWriteEndInfo::EndPage
        } else {
            PacketWriteEndInfo::NormalPacket
        };
        self.writer
            .write_packet(payload.to_vec(), self.serial, info, self.granule)
    }

    /// The pre-skip written in the header.
    pub fn pre_skip(&self) -> u16 {
        self.pre_skip
    }

    /// Flushes and returns the inner writer.
    pub fn finish(self) -> std::io::Result<W> {
        let mut w = self.writer.into_inner();
        w.flush()?;
        Ok(w)
    }
}
