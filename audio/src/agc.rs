//! Automatic gain control (WebRTC AGC2 adaptive digital via `sonora`), tuned so speech from
//! −40 to −10 dBFS comes out near −18 dBFS active-speech RMS.

use sonora::Config;
use sonora::config::{AdaptiveDigital, FixedDigital, GainController2};

use crate::apm::Apm;
use crate::block::Block;
use crate::processor::{PrepareError, Processor, StreamSpec};

/// The AGC stage.
#[derive(Debug)]
pub struct Agc {
    apm: Apm,
}

impl Default for Agc {
    fn default() -> Self {
        Agc::new()
    }
}

impl Agc {
    /// AGC2 with the adaptive digital controller.
    pub fn new() -> Agc {
        Agc {
            apm: Apm::new(Config {
                gain_controller2: Some(GainController2 {
                    input_volume_controller: false,
                    adaptive_digital: Some(AdaptiveDigital {
                        max_gain_change_db_per_second: 12.0,
                        ..AdaptiveDigital::default()
                    }),
                    fixed_digital: FixedDigital { gain_db: 0.0 },
                }),
                ..Default::default()
            }),
        }
    }
}

impl Processor for Agc {
    fn prepare(&mut self, spec: StreamSpec) -> Result<(), PrepareError> {
        self.apm.prepare(spec, "agc")
    }

    fn process(&mut self, block: &mut Block) {
        self.apm.process(block);
    }

    fn reset(&mut self) {
        self.apm.reinit();
    }
}
