//! A thin wrapper around one `sonora` (pure-Rust WebRTC APM) instance, shared by the AEC, NS and
//! AGC stages. Each stage owns its own instance configured for its one job, so each toggle is
//! independent and switching one does not disturb the others' adaptation.

use sonora::{AudioProcessing, Config, StreamConfig};

use crate::block::Block;
use crate::processor::{PrepareError, StreamSpec};
use crate::units::BLOCK_FRAMES;

/// One configured APM instance plus the scratch it needs to run in place.
pub(crate) struct Apm {
    config: Config,
    apm: Option<AudioProcessing>,
    channels: usize,
    src: [[f32; BLOCK_FRAMES]; 2],
    render_out: [[f32; BLOCK_FRAMES]; 2],
}

impl std::fmt::Debug for Apm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Apm")
            .field("channels", &self.channels)
            .finish()
    }
}

impl Apm {
    pub(crate) fn new(config: Config) -> Apm {
        Apm {
            config,
            apm: None,
            channels: 1,
            src: [[0.0; BLOCK_FRAMES]; 2],
            render_out: [[0.0; BLOCK_FRAMES]; 2],
        }
    }

    pub(crate) fn prepare(
        &mut self,
        spec: StreamSpec,
        stage: &'static str,
    ) -> Result<(), PrepareError> {
        if spec.rate.hz() != 48_000 || !(1..=2).contains(&spec.channels) {
            return Err(PrepareError::Unsupported {
                rate: spec.rate.hz(),
                channels: spec.channels,
            });
        }
        let _ = stage;
        self.channels = spec.channels;
        let ch = spec.channels as u16;
        self.apm = Some(
            AudioProcessing::builder()
                .config(self.config.clone())
                .capture_config(StreamConfig::new(48_000, ch))
                .render_config(StreamConfig::new(48_000, 2))
                .build(),
        );
        Ok(())
    }

    /// Feeds the far-end reference (what the output device plays).
    pub(crate) fn analyze_render(&mut self, far: &Block) {
        let Some(apm) = self.apm.as_mut() else { return };
        let (a, b) = (
            far.channel(0),
            if far.channels() == 2 {
                far.channel(1)
            } else {
                far.channel(0)
            },
        );
        let [o0, o1] = &mut self.render_out;
        // Render processing output is unused (we never modify the far end).
        let _ = apm.process_render_f32(&[&a[..], &b[..]], &mut [&mut o0[..], &mut o1[..]]);
    }

    pub(crate) fn set_stream_delay_ms(&mut self, ms: i32) {
        if let Some(apm) = self.apm.as_mut() {
            let _ = apm.set_stream_delay_ms(ms);
        }
    }

    pub(crate) fn process(&mut self, block: &mut Block) {
        let Some(apm) = self.apm.as_mut() else { return };
        if self.channels == 2 && block.channels() == 2 {
            self.src[0].copy_from_slice(block.channel(0));
            self.src[1].copy_from_slice(block.channel(1));
            let (l, r) = block.pair_mut();
            let [s0, s1] = &self.src;
            let _ = apm.process_capture_f32(&[&s0[..], &s1[..]], &mut [&mut l[..], &mut r[..]]);
        } else {
            self.src[0].copy_from_slice(block.channel(0));
            let stereo_block = block.channels() == 2;
            let (l, r) = block.pair_mut();
            let _ = apm.process_capture_f32(&[&self.src[0][..]], &mut [&mut l[..]]);
            if stereo_block {
                r.copy_from_slice(l);
            }
        }
    }

    /// Rebuilds state; called from `reset`, which may allocate only because sonora offers no
    /// in-place reset — the engine never calls `reset` on the DSP thread.
    pub(crate) fn reinit(&mut self) {
        if let Some(apm) = self.apm.as_mut() {
            apm.apply_config(self.config.clone());
        }
    }
}
