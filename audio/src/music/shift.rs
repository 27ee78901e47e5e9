//! Key shift (±12 semitones, tempo unchanged) with `signalsmith-stretch`, on the decode thread,
//! on 48 kHz stereo. The stretcher's latency is removed, so the output stays aligned with the
//! input frame for frame and a song keeps its exact length.

use signalsmith_stretch::Stretch;

use super::RATE;
use crate::units::BLOCK_FRAMES;

pub(crate) struct KeyShift {
    st: Stretch,
    latency: usize,
    skip: usize,
    fed: u64,
    emitted: u64,
    tmp: Vec<f32>,
}

impl KeyShift {
    pub(crate) fn new(semitones: i32) -> KeyShift {
        let mut st = Stretch::preset_default(2, RATE);
        st.set_transpose_factor_semitones(semitones.clamp(-12, 12) as f32, None);
        let latency = st.input_latency() + st.output_latency();
        KeyShift {
            st,
            latency,
            skip: latency,
            fed: 0,
            emitted: 0,
            tmp: vec![0.0; BLOCK_FRAMES * 2],
        }
    }

    pub(crate) fn set_semitones(&mut self, semitones: i32) {
        self.st
            .set_transpose_factor_semitones(semitones.clamp(-12, 12) as f32, None);
    }

    /// Forgets the stream (a seek or a new cycle).
    pub(crate) fn reset(&mut self) {
        self.st.reset();
        self.skip = self.latency;
        self.fed = 0;
        self.emitted = 0;
    }

    /// Shifts interleaved stereo `input`, appending the (delay-compensated) result to `out`.
    pub(crate) fn process(&mut self, input: &[f32], out: &mut Vec<f32>) {
        for piece in input.chunks(BLOCK_FRAMES * 2) {
            let n = piece.len() / 2;
            self.fed += n as u64;
            self.st.process(piece, &mut self.tmp[..n * 2]);
            self.emit(n, out, None);
        }
    }

    /// Pushes zeros through until every input frame has come out.
    pub(crate) fn flush(&mut self, out: &mut Vec<f32>) {
        let zeros = [0.0f32; BLOCK_FRAMES * 2];
        let mut guard = 0;
        while self.emitted < self.fed && guard < 1000 {
            self.st.process(zeros, &mut self.tmp[..]);
            self.emit(BLOCK_FRAMES, out, Some(self.fed));
            guard += 1;
        }
    }

    fn emit(&mut self, n: usize, out: &mut Vec<f32>, limit: Option<u64>) {
        let start = self.skip.min(n);
        self.skip -= start;
        let mut end = n;
        if let Some(l) = limit {
            end = end.min(start + l.saturating_sub(self.emitted) as usize);
        }
        out.extend_from_slice(&self.tmp[start * 2..end * 2]);
        self.emitted += (end - start) as u64;
    }
}
