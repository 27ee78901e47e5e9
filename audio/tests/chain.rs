//! The chain as a whole: acceptance item 5 (sound-card transparency), click-free toggles and mode
//! switches, and the publish-bus mute semantics.

use onmic_audio::chain::{Chain, ChainConfig, Mode, Toggles, crossfade};
use onmic_audio::limiter::DEFAULT_CEILING;
use onmic_audio::test_signals::{Noise, goertzel_power, sine_block};
use onmic_audio::{BLOCK_FRAMES, Block};

fn noise_block(n: &mut Noise, amp: f32) -> Block {
    let mut b = Block::silent(2);
    for ch in 0..2 {
        for s in b.channel_mut(ch).iter_mut() {
            *s = n.next_sample() * amp;
        }
    }
    b
}

/// Item 5: every toggle off, the sound-card path is bit-transparent before the encoder while the
/// signal stays below the limiter's −1 dBFS ceiling; above it, the bus never exceeds the ceiling.
#[test]
fn soundcard_chain_is_bit_transparent_below_ceiling() {
    let mut chain = Chain::new(ChainConfig::for_mode(Mode::Soundcard)).expect("chain");
    assert_eq!(chain.toggles(), Toggles::default());
    let far = Block::silent(2);
    let mut n = Noise::new(42);
    let ceiling = DEFAULT_CEILING.amplitude();
    for i in 0..500 {
        let input = noise_block(&mut n, ceiling * 0.999);
        let mut b = input.clone();
        chain.process(&mut b, &far, None);
        assert_eq!(b.channels(), 2);
        for ch in 0..2 {
            for (o, x) in b.channel(ch).iter().zip(input.channel(ch)) {
                assert_eq!(o.to_bits(), x.to_bits(), "block {i} differs");
            }
        }
    }
    assert_eq!(chain.latency().get(), 0);
    for _ in 0..50 {
        let mut b = noise_block(&mut n, 2.0);
        chain.process(&mut b, &far, None);
        assert!(b.peak() <= ceiling + 1e-6, "peak {}", b.peak());
    }
}

fn max_step(x: &[f32]) -> f32 {
    x.windows(2)
        .map(|w| (w[1] - w[0]).abs())
        .fold(0.0, f32::max)
}

/// Flipping every toggle live in voice mode leaves no discontinuity: the largest sample-to-sample
/// step stays within what a 200 Hz tone at the chain's output level can do.
#[test]
fn live_toggles_make_no_click() {
    let mut chain = Chain::new(ChainConfig::for_mode(Mode::Voice)).expect("chain");
    let far = Block::silent(2);
    let mut out = Vec::new();
    let combos = [
        Toggles {
            aec: true,
            ns: true,
            ai_ns: true,
            agc: true,
        },
        Toggles {
            aec: false,
            ns: true,
            ai_ns: false,
            agc: true,
        },
        Toggles {
            aec: true,
            ns: false,
            ai_ns: true,
            agc: false,
        },
        Toggles::default(),
        Toggles {
            aec: true,
            ns: true,
            ai_ns: true,
            agc: true,
        },
    ];
    for n in 0..500u64 {
        if n % 100 == 50 {
            chain.set_toggles(combos[(n / 100) as usize % combos.len()]);
        }
        // Speech-like: a 200 Hz tone gated on and off with 20 ms fades.
        let mut b = sine_block(200.0, 0.25, n, 1);
        let phase = n % 40;
        let env = |i: usize| -> f32 {
            let t = (phase as usize * BLOCK_FRAMES + i) as f32 / 960.0; // in 20 ms units
            if phase < 25 {
                (t).min(1.0).min((25.0 * 0.5 - t * 0.5).max(0.0) * 2.0)
            } else {
                0.0
            }
        };
        for (i, s) in b.channel_mut(0).iter_mut().enumerate() {
            *s *= env(i);
        }
        chain.process(&mut b, &far, None);
        out.extend_from_slice(b.channel(0));
    }
    let peak = out.iter().fold(0.0f32, |m, s| m.max(s.abs()));
    let limit = 1.5 * peak * 2.0 * std::f32::consts::PI * 200.0 / 48_000.0 + 0.004;
    let step = max_step(&out[4800..]);
    println!("max step {step:.4}, limit {limit:.4}, peak {peak:.3}");
    assert!(step <= limit, "click: step {step:.4} > {limit:.4}");
}

/// A mode change (sound card → voice) crossfades from the old chain to the new one.
#[test]
fn mode_switch_crossfade_makes_no_click() {
    let mut old = Chain::new(ChainConfig::for_mode(Mode::Soundcard)).expect("chain");
    let mut new = Chain::new(ChainConfig {
        toggles: Toggles::default(),
        ..ChainConfig::for_mode(Mode::Voice)
    })
    .expect("chain");
    let far = Block::silent(2);
    let mut scratch = Block::silent(2);
    let mut out = Vec::new();
    for n in 0..20u64 {
        let input = sine_block(200.0, 0.5, n, 2);
        let mut b = input.clone();
        if n < 10 {
            old.process(&mut b, &far, None);
        } else if n == 10 {
            crossfade(&mut old, &mut new, &input, &far, None, &mut scratch, &mut b);
        } else {
            new.process(&mut b, &far, None);
        }
        out.extend_from_slice(b.channel(0));
    }
    let slope = 0.5 * 2.0 * std::f32::consts::PI * 200.0 / 48_000.0;
    assert!(max_step(&out) <= slope * 1.05, "step {}", max_step(&out));
}

/// The music mixed into the published stream plays on through a mode change, in both directions:
/// the crossfade block once processed both chains without it, a 10 ms hole in the music (and a
/// click at each end of it) every time the host switched modes.
#[test]
fn the_music_plays_on_through_a_mode_change() {
    for (from, to) in [
        (Mode::Soundcard, Mode::Voice),
        (Mode::Voice, Mode::Soundcard),
    ] {
        let mut old = Chain::new(ChainConfig::for_mode(from)).expect("chain");
        let mut new = Chain::new(ChainConfig::for_mode(to)).expect("chain");
        let far = Block::silent(2);
        let mut scratch = Block::silent(2);
        let mut out = Vec::new();
        let mut peaks = Vec::new();
        for n in 0..20u64 {
            // A silent microphone: what is published is the music alone.
            let input = Block::silent(2);
            let music = sine_block(660.0, 0.2, n, 2);
            let mut b = input.clone();
            if n < 10 {
                old.process(&mut b, &far, Some(&music));
            } else if n == 10 {
                crossfade(
                    &mut old,
                    &mut new,
                    &input,
                    &far,
                    Some(&music),
                    &mut scratch,
                    &mut b,
                );
            } else {
                new.process(&mut b, &far, Some(&music));
            }
            peaks.push(b.channel(0).iter().fold(0.0f32, |m, s| m.max(s.abs())));
            out.extend_from_slice(b.channel(0));
        }
        assert!(
            peaks.iter().all(|p| (p - 0.2).abs() < 0.005),
            "{from:?} -> {to:?}: the music's peak per block {peaks:.3?}"
        );
        let slope = 0.2 * 2.0 * std::f32::consts::PI * 660.0 / 48_000.0;
        assert!(
            max_step(&out) <= slope * 1.05,
            "{from:?} -> {to:?}: step {}",
            max_step(&out)
        );
    }
}

/// Mute semantics: muting the voice keeps the music; muting the send silences both.
#[test]
fn mute_voice_keeps_music_and_mute_send_silences_all() {
    let mut chain = Chain::new(ChainConfig::for_mode(Mode::Soundcard)).expect("chain");
    let far = Block::silent(2);
    let run = |chain: &mut Chain, from: u64| -> Vec<f32> {
        let mut out = Vec::new();
        for n in from..from + 50 {
            let mut voice = sine_block(440.0, 0.2, n, 2);
            let music = sine_block(660.0, 0.2, n, 2);
            chain.process(&mut voice, &far, Some(&music));
            out.extend_from_slice(voice.channel(0));
        }
        out[BLOCK_FRAMES..].to_vec()
    };
    let both = run(&mut chain, 0);
    assert!(goertzel_power(&both, 440.0) > 1e3 && goertzel_power(&both, 660.0) > 1e3);
    chain.set_voice_muted(true);
    let music_only = run(&mut chain, 50);
    let ratio = goertzel_power(&music_only, 440.0) / goertzel_power(&music_only, 660.0);
    // Only the 660 Hz tone's spectral leakage is left at 440 Hz (rectangular Goertzel window).
    assert!(ratio < 1e-4, "voice leaks: {ratio}");
    chain.set_send_muted(true);
    let silent = run(&mut chain, 100);
    assert!(silent.iter().all(|s| *s == 0.0));
    chain.set_send_muted(false);
    chain.set_voice_muted(false);
    let back = run(&mut chain, 150);
    assert!(goertzel_power(&back, 440.0) > 1e3);
}

/// Channel mapping "voice on input 1, instrument on input 2": the voice goes through the voice
/// chain, the instrument bypasses it (a steady tone that NS would treat as noise keeps its level)
/// and both reach the centre of a stereo bus.
#[test]
fn voice_and_instrument_mapping_leaves_the_instrument_unprocessed() {
    use onmic_audio::chain::ChannelMap;
    let mut chain = Chain::new(ChainConfig {
        channel_map: ChannelMap::VoiceAndInstrument { voice: 0 },
        ..ChainConfig::for_mode(Mode::Voice)
    })
    .expect("chain");
    let far = Block::silent(2);
    let mut left = Vec::new();
    let mut right = Vec::new();
    for n in 0..400u64 {
        let voice = sine_block(300.0, 0.1, n, 1);
        let instrument = sine_block(660.0, 0.1, n, 1);
        let mut b = Block::silent(2);
        b.channel_mut(0).copy_from_slice(voice.channel(0));
        b.channel_mut(1).copy_from_slice(instrument.channel(0));
        chain.process(&mut b, &far, None);
        assert_eq!(b.channels(), 2);
        left.extend_from_slice(b.channel(0));
        right.extend_from_slice(b.channel(1));
    }
    assert_eq!(left, right, "not centred");
    let tail = &left[left.len() - 48_000..];
    // The instrument tone comes through at its input level (amplitude 0.1 → Goertzel power
    // (0.1 · N / 2)² for N samples).
    let expected = (0.1f64 * tail.len() as f64 / 2.0).powi(2);
    let got = goertzel_power(tail, 660.0);
    let db = 10.0 * (got / expected).log10();
    assert!(db.abs() < 0.5, "instrument level changed by {db:.2} dB");
    // The voice went through the chain: its level is no longer the input's.
    let voice_db = 10.0 * (goertzel_power(tail, 300.0) / expected).log10();
    println!("instrument {db:+.2} dB, voice {voice_db:+.2} dB after the chain");
    assert!(voice_db.abs() > 0.5, "the voice was not processed");
}

/// Runs the voice chain with its near-end split on over `far` and a microphone of `echo` +
/// `near` (mono); returns per sample the chain's output and the near end's part of it.
fn split_run(far: &[f32], echo: &[f32], near: &[f32]) -> (Vec<f32>, Vec<f32>) {
    let mut chain = Chain::new(ChainConfig::for_mode(Mode::Voice)).expect("chain");
    assert!(
        chain.enable_components(),
        "the voice chain's defaults are split end to end"
    );
    let (mut out, mut near_out) = (Vec::new(), Vec::new());
    let mut fb = Block::silent(1);
    let mut mb = Block::silent(1);
    for b in 0..near.len() / BLOCK_FRAMES {
        let r = b * BLOCK_FRAMES..(b + 1) * BLOCK_FRAMES;
        fb.set_channels(1);
        fb.channel_mut(0).copy_from_slice(&far[r.clone()]);
        mb.set_channels(1);
        for ((m, e), n) in mb
            .channel_mut(0)
            .iter_mut()
            .zip(&echo[r.clone()])
            .zip(&near[r.clone()])
        {
            *m = e + n;
        }
        chain.set_near_component(&near[r]);
        chain.process(&mut mb, &fb, None);
        let parts = chain.components().expect("split on");
        let (o, n) = parts.output.expect("split past the AEC");
        assert_eq!(o, mb.channel(0), "the split's output is the chain's");
        out.extend_from_slice(o);
        near_out.extend_from_slice(n);
    }
    (out, near_out)
}

/// A talker: noise in 200 ms syllables with 100 ms gaps, some syllables 12 dB louder (they
/// drive the limiter once the AGC has raised the level).
fn talker(secs: usize, seed: u64) -> Vec<f32> {
    let mut n = Noise::new(seed);
    (0..secs * 48_000)
        .map(|i| {
            let syl = i / 14_400;
            let pos = i % 14_400;
            let amp = if pos >= 9_600 {
                0.0
            } else if syl % 5 == 3 {
                0.4
            } else {
                0.1
            };
            n.next_sample() * amp
        })
        .collect()
}

/// The split through the whole voice chain (docs/voice-chain.md, "The split"): with no far end
/// there is no echo, so from the third block on the near end's part is the whole output —
/// through the AEC's gains, the AI-NS's alignment, the classic NS's gains, the AGC's ramp and
/// the limiter's gains (which this talker drives).
#[test]
fn the_split_gives_the_whole_output_to_the_near_end_without_an_echo() {
    let near = talker(6, 5);
    let silent = vec![0.0; near.len()];
    let (out, near_out) = split_run(&silent, &silent, &near);
    let ceiling = DEFAULT_CEILING.amplitude();
    let limited = out.iter().filter(|v| v.abs() >= 0.999 * ceiling).count();
    assert!(
        limited > 0,
        "the limiter never engaged: the test would miss its gains"
    );
    let worst = out[2 * BLOCK_FRAMES..]
        .iter()
        .zip(&near_out[2 * BLOCK_FRAMES..])
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    assert!(worst < 1e-4, "output − near part up to {worst}");
    let power: f32 = out.iter().map(|v| v * v).sum::<f32>() / out.len() as f32;
    assert!(power > 1e-3, "the talker came through ({power})");
}
