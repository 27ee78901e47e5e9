//! `onmic-audio`: run Onmic's audio chain on files.
//!
//! `onmic-audio process IN.wav --mode soundcard|voice [--aec-ref REF.wav] [--effect NAME]...
//! --out OUT.wav|OUT.opus [--format f32|s16] [--near-component NEAR.wav --aec-components
//! PARTS.wav]`; `onmic-audio effects` lists the effect presets and their parameters.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use clap::{Parser, Subcommand, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};
use onmic_audio::chain::{Mode, Toggles};
use onmic_audio::effects::{EffectSettings, catalogue};
use onmic_audio::ns::NsLevel;
use onmic_audio::offline::{AecComponents, OfflineJob, WavFormat, process};

#[derive(Parser, Debug)]
#[command(
    name = "onmic-audio",
    version,
    about = "Onmic's audio chain, file to file"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Process a WAV file with the live chain into WAV or Ogg Opus.
    Process {
        /// Input WAV (PCM or float, mono or stereo, any rate).
        input: PathBuf,
        /// Processing mode.
        #[arg(long, value_enum, default_value_t = CliMode::Voice)]
        mode: CliMode,
        /// Far-end reference WAV for echo cancellation.
        #[arg(long)]
        aec_ref: Option<PathBuf>,
        /// Output file: .wav (see --format) or .opus/.ogg (Ogg Opus).
        #[arg(long)]
        out: PathBuf,
        /// Classic noise suppression level (default: the mode's).
        #[arg(long, value_enum)]
        ns_level: Option<CliNsLevel>,
        /// Stages to switch off (comma-separated: aec, ns, ai-ns, agc).
        #[arg(long, value_enum, value_delimiter = ',')]
        off: Vec<Stage>,
        /// Sample format of a .wav output.
        #[arg(long, value_enum, default_value_t = CliFormat::F32)]
        format: CliFormat,
        /// Write raw / reference / processed WAVs into this directory.
        #[arg(long)]
        debug_tap: Option<PathBuf>,
        /// Never show a progress bar.
        #[arg(long)]
        quiet: bool,
        /// For studies of the echo canceller: the input's near-end part (the input less the
        /// echo that was added to it; a WAV as long). With it, --aec-components is written.
        #[arg(long, requires = "aec_components")]
        near_component: Option<PathBuf>,
        /// Where to write the split, a float WAV: the AEC stage's output (channel 0) and the
        /// near end's part of it (1), then the output (2) and its near end's part (3) where the
        /// split follows the whole chain; output less near part is what is left of the echo.
        #[arg(long, requires = "near_component")]
        aec_components: Option<PathBuf>,
        /// A voice effect, `NAME` or `NAME:key=value,...` (repeatable, applied in this order;
        /// `onmic-audio effects` lists them).
        #[arg(long = "effect", value_name = "NAME")]
        effects: Vec<String>,
    },
    /// List the voice-effect presets and parametric effects with their parameters.
    Effects,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Stage {
    /// Echo cancellation.
    Aec,
    /// Classic noise suppression.
    Ns,
    /// AI noise suppression (RNNoise).
    AiNs,
    /// Automatic gain control.
    Agc,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum CliNsLevel {
    /// About 8 dB.
    Low,
    /// About 14 dB.
    Moderate,
    /// About 20 dB.
    High,
    /// About 25 dB.
    VeryHigh,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum CliFormat {
    /// 32-bit float.
    F32,
    /// 16-bit PCM.
    S16,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum CliMode {
    /// Stereo, processing off, Opus 128 kbps stereo.
    Soundcard,
    /// AEC/NS/AGC on, mono Opus voice profile.
    Voice,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Process {
            input,
            mode,
            aec_ref,
            out,
            debug_tap,
            quiet,
            effects,
            format,
            off,
            ns_level,
            near_component,
            aec_components,
        } => {
            let effects = match EffectSettings::parse(&effects) {
                Ok(e) => e,
                Err(e) => {
                    eprintln!("onmic-audio: error: {e}");
                    return ExitCode::FAILURE;
                }
            };
            let job = OfflineJob {
                input,
                output: out,
                mode: match mode {
                    CliMode::Soundcard => Mode::Soundcard,
                    CliMode::Voice => Mode::Voice,
                },
                aec_ref,
                debug_tap,
                effects,
                wav_format: match format {
                    CliFormat::F32 => WavFormat::F32,
                    CliFormat::S16 => WavFormat::S16,
                },
                ns_level: ns_level.map(|l| match l {
                    CliNsLevel::Low => NsLevel::Low,
                    CliNsLevel::Moderate => NsLevel::Moderate,
                    CliNsLevel::High => NsLevel::High,
                    CliNsLevel::VeryHigh => NsLevel::VeryHigh,
                }),
                off: Toggles {
                    aec: off.contains(&Stage::Aec),
                    ns: off.contains(&Stage::Ns),
                    ai_ns: off.contains(&Stage::AiNs),
                    agc: off.contains(&Stage::Agc),
                },
                aec_components: near_component
                    .zip(aec_components)
                    .map(|(near, out)| AecComponents { near, out }),
            };
            let started = Instant::now();
            let mut bar: Option<ProgressBar> = None;
            let result = process(&job, |done, total| {
                // A bar only for long files (over 30 s of audio) and only on a terminal.
                if quiet || total < 30 * 48_000 {
                    return;
                }
                let b = bar.get_or_insert_with(|| {
                    let b = ProgressBar::new(total / 48_000);
                    b.set_style(
                        ProgressStyle::with_template(
                            "{bar:40} {pos}/{len} s of audio, {elapsed} elapsed, ETA {eta}",
                        )
                        .unwrap_or_else(|_| ProgressStyle::default_bar()),
                    );
                    b
                });
                b.set_position(done / 48_000);
            });
            if let Some(b) = bar {
                b.finish_and_clear();
            }
            match result {
                Ok(report) => {
                    let secs = report.frames as f64 / 48_000.0;
                    let took = started.elapsed().as_secs_f64();
                    eprintln!(
                        "processed {secs:.1} s of audio in {took:.2} s ({:.0}× real time) → {} ({} ch{})",
                        secs / took.max(1e-9),
                        job.output.display(),
                        report.channels,
                        if report.packets > 0 {
                            format!(", {} Opus packets", report.packets)
                        } else {
                            String::new()
                        }
                    );
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("onmic-audio: error: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Effects => {
            for (name, line) in catalogue() {
                println!("{name:<15} {line}");
            }
            ExitCode::SUCCESS
        }
    }
}
