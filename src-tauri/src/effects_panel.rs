//! The Studio's effects panel: what the host picks (a room-acoustics preset, a voice changer, a
//! beautifier, a pitch shift, the 10-band EQ, noise gate, compressor, de-esser and a custom
//! reverb), persisted with the settings, with named user presets. [`EffectsPanel::to_engine`]
//! turns it into the engine's [`EffectSettings`] (chain order below); the session builds the
//! rack off the DSP thread and the engine crossfades it in (`docs/effects.md`).
//!
//! Chain order inside the rack: gate → voice changer → beautifier → pitch → EQ → compressor →
//! de-esser → room preset → custom reverb. The gate first (it must see the noise floor, not a
//! reverb tail), the voice reshaped before it is equalised and levelled, the space last.

use onmic_audio::effects::dynamics::{CompressorSettings, DeEsserSettings, GateSettings};
use onmic_audio::effects::eq::{EqSettings, GraphicEq};
use onmic_audio::effects::reverb::ReverbSettings;
use onmic_audio::effects::spatial::Rotate3dSettings;
use onmic_audio::effects::{
    BeautifierPreset, ChangerPreset, Effect, EffectRack, EffectSettings, RoomPreset,
};
use serde::{Deserialize, Serialize};
use specta::Type;

use crate::error::{AppError, AppErrorKind};

/// Most user presets kept.
pub const MAX_USER_PRESETS: usize = 32;

/// The 10-band EQ.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Type)]
#[serde(default, rename_all = "camelCase")]
pub struct EqPanel {
    /// On or off.
    pub enabled: bool,
    /// Gain of each band, dB (−15…+15), 31 Hz to 16 kHz.
    pub bands_db: Vec<f32>,
    /// Gain before the bands, dB (−12…+12).
    pub preamp_db: f32,
}

impl Default for EqPanel {
    fn default() -> Self {
        Self {
            enabled: false,
            bands_db: vec![0.0; 10],
            preamp_db: 0.0,
        }
    }
}

/// The noise gate (OBS's parameters and defaults).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Type)]
#[serde(default, rename_all = "camelCase")]
pub struct GatePanel {
    /// On or off.
    pub enabled: bool,
    /// Closes below this, dBFS.
    pub close_threshold_db: f32,
    /// Opens above this, dBFS.
    pub open_threshold_db: f32,
    /// Opening time, ms.
    pub attack_ms: f32,
    /// Stays open this long after the level drops, ms.
    pub hold_ms: f32,
    /// Closing time, ms.
    pub release_ms: f32,
}

impl Default for GatePanel {
    fn default() -> Self {
        let d = GateSettings::default();
        Self {
            enabled: false,
            close_threshold_db: d.close_threshold_db,
            open_threshold_db: d.open_threshold_db,
            attack_ms: d.attack_ms,
            hold_ms: d.hold_ms,
            release_ms: d.release_ms,
        }
    }
}

/// The compressor (OBS's parameters and defaults).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Type)]
#[serde(default, rename_all = "camelCase")]
pub struct CompressorPanel {
    /// On or off.
    pub enabled: bool,
    /// Ratio, 1…32.
    pub ratio: f32,
    /// Threshold, dBFS.
    pub threshold_db: f32,
    /// Attack, ms.
    pub attack_ms: f32,
    /// Release, ms.
    pub release_ms: f32,
    /// Make-up gain, dB.
    pub output_gain_db: f32,
}

impl Default for CompressorPanel {
    fn default() -> Self {
        let d = CompressorSettings::default();
        Self {
            enabled: false,
            ratio: d.ratio,
            threshold_db: d.threshold_db,
            attack_ms: d.attack_ms,
            release_ms: d.release_ms,
            output_gain_db: d.output_gain_db,
        }
    }
}

/// The de-esser.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Type)]
#[serde(default, rename_all = "camelCase")]
pub struct DeEsserPanel {
    /// On or off.
    pub enabled: bool,
    /// Where the sibilance band starts, Hz.
    pub frequency_hz: f32,
    /// Threshold of the band, dBFS.
    pub threshold_db: f32,
    /// Ratio.
    pub ratio: f32,
    /// Most reduction, dB.
    pub max_reduction_db: f32,
}

impl Default for DeEsserPanel {
    fn default() -> Self {
        let d = DeEsserSettings::default();
        Self {
            enabled: false,
            frequency_hz: d.frequency_hz,
            threshold_db: d.threshold_db,
            ratio: d.ratio,
            max_reduction_db: d.max_reduction_db,
        }
    }
}

/// The custom reverb.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Type)]
#[serde(default, rename_all = "camelCase")]
pub struct ReverbPanel {
    /// On or off.
    pub enabled: bool,
    /// Room size 0…1 (longer decay).
    pub room_size: f32,
    /// High-frequency damping 0…1.
    pub damping: f32,
    /// Wet level 0…1.
    pub wet: f32,
    /// Dry level 0…1.
    pub dry: f32,
    /// Pre-delay, ms (0…200).
    pub pre_delay_ms: f32,
    /// Stereo width 0…1.
    pub width: f32,
}

impl Default for ReverbPanel {
    fn default() -> Self {
        let d = ReverbSettings::default();
        Self {
            enabled: false,
            room_size: d.room_size,
            damping: d.damping,
            wet: d.wet,
            dry: d.dry,
            pre_delay_ms: d.pre_delay_ms,
            width: d.width,
        }
    }
}

/// Everything the effects panel sets (one user preset is one of these).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Type)]
#[serde(default, rename_all = "camelCase")]
pub struct EffectsChoice {
    /// Master bypass: `false` sends the voice through no effect at all (bit-transparent).
    pub enabled: bool,
    /// A room-acoustics preset by name (`ktv`, `vocal_concert`, `studio`, `phonograph`,
    /// `virtual_stereo`, `spacious`, `ethereal`, `3d_voice`), or none.
    pub room: Option<String>,
    /// 3D voice: seconds per turn around the listener (1…60).
    pub rotate_period_s: f32,
    /// A voice changer by name (`uncle`, `old_man`, `boy`, `sister`, `girl`, `pig_king`,
    /// `hulk`), or none.
    pub changer: Option<String>,
    /// A beautifier by name (`magnetic`, `fresh`, `vital`), or none.
    pub beautifier: Option<String>,
    /// Pitch shift, semitones (−12…+12; 0 = off), tempo kept.
    pub pitch_semitones: f32,
    /// The 10-band EQ.
    pub eq: EqPanel,
    /// The noise gate.
    pub gate: GatePanel,
    /// The compressor.
    pub compressor: CompressorPanel,
    /// The de-esser.
    pub de_esser: DeEsserPanel,
    /// The custom reverb.
    pub reverb: ReverbPanel,
}

impl Default for EffectsChoice {
    fn default() -> Self {
        Self {
            enabled: true,
            room: None,
            rotate_period_s: Rotate3dSettings::default().period_s,
            changer: None,
            beautifier: None,
            pitch_semitones: 0.0,
            eq: EqPanel::default(),
            gate: GatePanel::default(),
            compressor: CompressorPanel::default(),
            de_esser: DeEsserPanel::default(),
            reverb: ReverbPanel::default(),
        }
    }
}

/// A preset the host saved and named.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Type)]
#[serde(rename_all = "camelCase")]
pub struct UserPreset {
    /// Its name (1–40 characters, unique).
    pub name: String,
    /// What it sets.
    pub choice: EffectsChoice,
}

/// The effects panel as persisted: the current choice and the host's presets.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, Type)]
#[serde(default, rename_all = "camelCase")]
pub struct EffectsPanel {
    /// What is on now.
    pub current: EffectsChoice,
    /// Saved presets, in the order saved.
    pub presets: Vec<UserPreset>,
}

/// The names the panel offers, with the engine's labels.
#[derive(Clone, Debug, PartialEq, Serialize, Type)]
#[serde(rename_all = "camelCase")]
pub struct EffectCatalog {
    /// Room-acoustics presets.
    pub rooms: Vec<String>,
    /// Voice changers.
    pub changers: Vec<String>,
    /// Beautifiers.
    pub beautifiers: Vec<String>,
    /// The EQ's band centres, Hz.
    pub eq_bands_hz: Vec<f32>,
}

/// The preset names the engine knows, for the panel's pickers.
pub fn catalog() -> EffectCatalog {
    EffectCatalog {
        rooms: RoomPreset::ALL.iter().map(|p| p.name().into()).collect(),
        changers: ChangerPreset::ALL.iter().map(|p| p.name().into()).collect(),
        beautifiers: BeautifierPreset::ALL
            .iter()
            .map(|p| p.name().into())
            .collect(),
        eq_bands_hz: onmic_audio::effects::eq::EQ_BANDS
            .iter()
            .map(|f| *f as f32)
            .collect(),
    }
}

fn invalid(message: String) -> AppError {
    AppError::new(AppErrorKind::InvalidInput, message)
}

fn clamp(v: f32, lo: f32, hi: f32, default: f32) -> f32 {
    if v.is_finite() {
        v.clamp(lo, hi)
    } else {
        default
    }
}

impl EffectsChoice {
    /// Numbers within their ranges (non-finite ones back to their defaults); the EQ always has
    /// ten bands.
    pub fn clamped(mut self) -> Self {
        let d = EffectsChoice::default();
        self.rotate_period_s = clamp(self.rotate_period_s, 1.0, 60.0, d.rotate_period_s);
        self.pitch_semitones = clamp(self.pitch_semitones, -12.0, 12.0, 0.0);
        self.eq.bands_db.resize(10, 0.0);
        for b in &mut self.eq.bands_db {
            *b = clamp(*b, -15.0, 15.0, 0.0);
        }
        self.eq.preamp_db = clamp(self.eq.preamp_db, -12.0, 12.0, 0.0);
        let g = &mut self.gate;
        g.close_threshold_db = clamp(g.close_threshold_db, -96.0, 0.0, d.gate.close_threshold_db);
        g.open_threshold_db = clamp(g.open_threshold_db, -96.0, 0.0, d.gate.open_threshold_db);
        g.attack_ms = clamp(g.attack_ms, 0.0, 500.0, d.gate.attack_ms);
        g.hold_ms = clamp(g.hold_ms, 0.0, 2000.0, d.gate.hold_ms);
        g.release_ms = clamp(g.release_ms, 0.0, 2000.0, d.gate.release_ms);
        let c = &mut self.compressor;
        c.ratio = clamp(c.ratio, 1.0, 32.0, d.compressor.ratio);
        c.threshold_db = clamp(c.threshold_db, -60.0, 0.0, d.compressor.threshold_db);
        c.attack_ms = clamp(c.attack_ms, 0.0, 500.0, d.compressor.attack_ms);
        c.release_ms = clamp(c.release_ms, 0.0, 2000.0, d.compressor.release_ms);
        c.output_gain_db = clamp(c.output_gain_db, -32.0, 32.0, 0.0);
        let s = &mut self.de_esser;
        s.frequency_hz = clamp(s.frequency_hz, 2000.0, 12000.0, d.de_esser.frequency_hz);
        s.threshold_db = clamp(s.threshold_db, -60.0, 0.0, d.de_esser.threshold_db);
        s.ratio = clamp(s.ratio, 1.0, 20.0, d.de_esser.ratio);
        s.max_reduction_db = clamp(s.max_reduction_db, 0.0, 24.0, d.de_esser.max_reduction_db);
        let r = &mut self.reverb;
        r.room_size = clamp(r.room_size, 0.0, 1.0, d.reverb.room_size);
        r.damping = clamp(r.damping, 0.0, 1.0, d.reverb.damping);
        r.wet = clamp(r.wet, 0.0, 1.0, d.reverb.wet);
        r.dry = clamp(r.dry, 0.0, 1.0, d.reverb.dry);
        r.pre_delay_ms = clamp(r.pre_delay_ms, 0.0, 200.0, d.reverb.pre_delay_ms);
        r.width = clamp(r.width, 0.0, 1.0, d.reverb.width);
        self
    }

    /// The engine's effect list, in the panel's chain order (empty when bypassed or nothing is
    /// on). An unknown preset name is an `invalid_input` error naming it.
    pub fn to_engine(&self) -> Result<EffectSettings, AppError> {
        let mut effects = Vec::new();
        if !self.enabled {
            return Ok(EffectSettings { effects });
        }
        let c = self.clone().clamped();
        if c.gate.enabled {
            effects.push(Effect::Gate(GateSettings {
                close_threshold_db: c.gate.close_threshold_db,
                open_threshold_db: c.gate.open_threshold_db,
                attack_ms: c.gate.attack_ms,
                hold_ms: c.gate.hold_ms,
                release_ms: c.gate.release_ms,
            }));
        }
        if let Some(name) = &c.changer {
            let preset = ChangerPreset::ALL
                .iter()
                .find(|p| p.name() == name)
                .ok_or_else(|| invalid(format!("There is no voice changer called {name:?}.")))?;
            effects.push(Effect::VoiceChanger { preset: *preset });
        }
        if let Some(name) = &c.beautifier {
            let preset = BeautifierPreset::ALL
                .iter()
                .find(|p| p.name() == name)
                .ok_or_else(|| invalid(format!("There is no beautifier called {name:?}.")))?;
            effects.push(Effect::Beautifier { preset: *preset });
        }
        if c.pitch_semitones != 0.0 {
            effects.push(Effect::Pitch {
                semitones: c.pitch_semitones,
                formant_factor: 1.0,
            });
        }
        if c.eq.enabled {
            effects.push(Effect::Eq(c.eq_settings()));
        }
        if c.compressor.enabled {
            effects.push(Effect::Compressor(CompressorSettings {
                ratio: c.compressor.ratio,
                threshold_db: c.compressor.threshold_db,
                attack_ms: c.compressor.attack_ms,
                release_ms: c.compressor.release_ms,
                output_gain_db: c.compressor.output_gain_db,
            }));
        }
        if c.de_esser.enabled {
            effects.push(Effect::DeEsser(DeEsserSettings {
                frequency_hz: c.de_esser.frequency_hz,
                threshold_db: c.de_esser.threshold_db,
                ratio: c.de_esser.ratio,
                max_reduction_db: c.de_esser.max_reduction_db,
                ..DeEsserSettings::default()
            }));
        }
        if let Some(name) = &c.room {
            let preset = RoomPreset::ALL
                .iter()
                .find(|p| p.name() == name)
                .ok_or_else(|| invalid(format!("There is no room preset called {name:?}.")))?;
            effects.push(Effect::Room {
                preset: *preset,
                rotate: Rotate3dSettings {
                    period_s: c.rotate_period_s,
                    ..Rotate3dSettings::default()
                },
            });
        }
        if c.reverb.enabled {
            effects.push(Effect::Reverb(ReverbSettings {
                room_size: c.reverb.room_size,
                damping: c.reverb.damping,
                wet: c.reverb.wet,
                dry: c.reverb.dry,
                pre_delay_ms: c.reverb.pre_delay_ms,
                width: c.reverb.width,
                ..ReverbSettings::default()
            }));
        }
        Ok(EffectSettings { effects })
    }

    fn eq_settings(&self) -> EqSettings {
        let mut bands_db = [0.0; 10];
        for (b, v) in bands_db.iter_mut().zip(&self.eq.bands_db) {
            *b = *v;
        }
        EqSettings {
            bands_db,
            preamp_db: self.eq.preamp_db,
        }
    }

    /// Builds the engine's rack (allocates: call off the DSP thread).
    pub fn build_rack(&self) -> Result<Box<EffectRack>, AppError> {
        let settings = self.to_engine()?;
        EffectRack::new(&settings)
            .map(Box::new)
            .map_err(|e| invalid(e.to_string()))
    }

    /// The EQ's designed response at `freqs` (Hz), dB, for the panel's curve (0 dB everywhere
    /// when the EQ is off).
    pub fn eq_response_db(&self, freqs: &[f32]) -> Vec<f32> {
        if !self.eq.enabled {
            return vec![0.0; freqs.len()];
        }
        let eq = GraphicEq::new(self.clone().clamped().eq_settings());
        freqs
            .iter()
            .map(|f| eq.response_db(f64::from(*f)) as f32)
            .collect()
    }
}

impl EffectsPanel {
    /// Every choice clamped; presets deduplicated by name (the last wins) and capped.
    pub fn clamped(mut self) -> Self {
        self.current = self.current.clamped();
        let mut seen = std::collections::HashSet::new();
        let mut presets: Vec<UserPreset> = self
            .presets
            .into_iter()
            .rev()
            .filter(|p| seen.insert(p.name.clone()))
            .map(|p| UserPreset {
                name: p.name,
                choice: p.choice.clamped(),
            })
            .collect();
        presets.reverse();
        presets.truncate(MAX_USER_PRESETS);
        self.presets = presets;
        self
    }

    /// Saves the current choice as `name` (replacing a preset of that name).
    pub fn save_preset(&mut self, name: &str) -> Result<(), AppError> {
        let name = name.trim();
        if name.is_empty() || name.chars().count() > 40 {
            return Err(invalid(
                "Name the preset (1 to 40 characters) before saving it.".into(),
            ));
        }
        if let Some(p) = self.presets.iter_mut().find(|p| p.name == name) {
            p.choice = self.current.clone();
            return Ok(());
        }
        if self.presets.len() >= MAX_USER_PRESETS {
            return Err(invalid(format!(
                "At most {MAX_USER_PRESETS} presets are kept; delete one first."
            )));
        }
        self.presets.push(UserPreset {
            name: name.to_owned(),
            choice: self.current.clone(),
        });
        Ok(())
    }

    /// Makes the preset `name` current.
    pub fn load_preset(&mut self, name: &str) -> Result<(), AppError> {
        let p = self
            .presets
            .iter()
            .find(|p| p.name == name)
            .ok_or_else(|| invalid(format!("There is no preset called {name:?}.")))?;
        self.current = p.choice.clone();
        Ok(())
    }

    /// Forgets the preset `name` (no error if it is not there).
    pub fn delete_preset(&mut self, name: &str) {
        self.presets.retain(|p| p.name != name);
    }
}

/// What to do with a user preset.
#[derive(Clone, Debug, Deserialize, Type)]
#[serde(tag = "op", rename_all = "camelCase")]
pub enum PresetAction {
    /// Save the current choice under `name` (replacing one of that name).
    Save {
        /// The name.
        name: String,
    },
    /// Make the preset `name` current (applied live).
    Load {
        /// The name.
        name: String,
    },
    /// Forget the preset `name`.
    Delete {
        /// The name.
        name: String,
    },
}

/// Sends the current effects to the live engine (no-op when not live). The rack is built here,
/// off the DSP thread.
pub async fn apply_live(studio: &crate::Studio, choice: &EffectsChoice) -> Result<(), AppError> {
    let rack = choice.build_rack()?;
    if let Some(engine) = studio.session.control_sender().await {
        engine.send(vec![onmic_audio::engine::Control::SetEffects(rack)]);
    }
    Ok(())
}

/// The preset names and EQ bands the panel offers.
#[tauri::command]
#[specta::specta]
pub fn effects_catalog() -> EffectCatalog {
    catalog()
}

/// Sets the effects (any control of the panel): checked, saved, and crossfaded in live.
#[tauri::command]
#[specta::specta]
pub async fn set_effects(
    studio: tauri::State<'_, crate::Studio>,
    choice: EffectsChoice,
) -> Result<EffectsPanel, AppError> {
    let choice = choice.clamped();
    // Refuse an unknown preset before saving it.
    choice.to_engine()?;
    let settings = studio
        .settings
        .update(|s| s.effects.current = choice.clone())?;
    apply_live(&studio, &settings.effects.current).await?;
    Ok(settings.effects)
}

/// Saves, loads (and applies) or deletes a user preset.
#[tauri::command]
#[specta::specta]
pub async fn effects_preset(
    studio: tauri::State<'_, crate::Studio>,
    action: PresetAction,
) -> Result<EffectsPanel, AppError> {
    let mut panel = studio.settings.get().effects;
    let load = matches!(action, PresetAction::Load { .. });
    match &action {
        PresetAction::Save { name } => panel.save_preset(name)?,
        PresetAction::Load { name } => panel.load_preset(name)?,
        PresetAction::Delete { name } => panel.delete_preset(name),
    }
    let settings = studio.settings.update(|s| s.effects = panel.clone())?;
    if load {
        apply_live(&studio, &settings.effects.current).await?;
    }
    Ok(settings.effects)
}

/// The EQ's designed response of `choice` at `freqs` (Hz), dB, for the curve.
#[tauri::command]
#[specta::specta]
pub fn eq_curve(choice: EffectsChoice, freqs: Vec<f32>) -> Result<Vec<f32>, AppError> {
    if freqs.len() > 2048 || freqs.iter().any(|f| !f.is_finite() || *f <= 0.0) {
        return Err(invalid(
            "The EQ curve takes up to 2048 positive frequencies.".into(),
        ));
    }
    Ok(choice.eq_response_db(&freqs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nothing_on_is_an_empty_rack_and_bypass_empties_any_choice() {
        assert!(
            EffectsChoice::default()
                .to_engine()
                .unwrap()
                .effects
                .is_empty()
        );
        let mut c = EffectsChoice {
            room: Some("ktv".into()),
            ..EffectsChoice::default()
        };
        c.gate.enabled = true;
        assert_eq!(c.to_engine().unwrap().effects.len(), 2);
        c.enabled = false;
        assert!(c.to_engine().unwrap().effects.is_empty());
    }

    #[test]
    fn the_chain_order_is_gate_voice_eq_dynamics_space() {
        let mut c = EffectsChoice {
            room: Some("3d_voice".into()),
            rotate_period_s: 4.0,
            changer: Some("uncle".into()),
            beautifier: Some("fresh".into()),
            pitch_semitones: 3.0,
            ..EffectsChoice::default()
        };
        c.eq.enabled = true;
        c.gate.enabled = true;
        c.compressor.enabled = true;
        c.de_esser.enabled = true;
        c.reverb.enabled = true;
        let kinds: Vec<String> = c
            .to_engine()
            .unwrap()
            .effects
            .iter()
            .map(|e| {
                serde_json::to_value(e).unwrap()["kind"]
                    .as_str()
                    .unwrap()
                    .to_owned()
            })
            .collect();
        assert_eq!(
            kinds,
            [
                "gate",
                "voice_changer",
                "beautifier",
                "pitch",
                "eq",
                "compressor",
                "de_esser",
                "room",
                "reverb"
            ]
        );
        match &c.to_engine().unwrap().effects[7] {
            Effect::Room { rotate, .. } => assert_eq!(rotate.period_s, 4.0),
            other => panic!("{other:?}"),
        }
        assert!(c.build_rack().is_ok());
    }

    #[test]
    fn unknown_names_and_wild_numbers_are_refused_or_clamped() {
        let c = EffectsChoice {
            room: Some("cathedral".into()),
            ..EffectsChoice::default()
        };
        let e = c.to_engine().unwrap_err();
        assert!(e.message.contains("cathedral"), "{}", e.message);
        let mut c = EffectsChoice {
            pitch_semitones: f32::NAN,
            rotate_period_s: 1e9,
            ..EffectsChoice::default()
        };
        c.eq.bands_db = vec![99.0; 3];
        c.reverb.wet = -4.0;
        let c = c.clamped();
        assert_eq!(c.pitch_semitones, 0.0);
        assert_eq!(c.rotate_period_s, 60.0);
        assert_eq!(
            c.eq.bands_db,
            [15.0, 15.0, 15.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]
        );
        assert_eq!(c.reverb.wet, 0.0);
    }

    #[test]
    fn the_eq_curve_follows_the_bands() {
        let mut c = EffectsChoice::default();
        c.eq.enabled = true;
        c.eq.bands_db[5] = 6.0;
        let r = c.eq_response_db(&[1000.0, 31.0]);
        assert!((r[0] - 6.0).abs() < 1.0, "{r:?}");
        assert!(r[1].abs() < 1.0, "{r:?}");
        c.eq.enabled = false;
        assert_eq!(c.eq_response_db(&[1000.0]), [0.0]);
    }

    #[test]
    fn presets_save_load_replace_and_delete() {
        let mut p = EffectsPanel::default();
        assert!(p.save_preset("  ").is_err());
        p.current.room = Some("ktv".into());
        p.save_preset("Karaoke").unwrap();
        p.current.room = Some("studio".into());
        p.save_preset("Karaoke").unwrap();
        assert_eq!(p.presets.len(), 1);
        p.current = EffectsChoice::default();
        p.load_preset("Karaoke").unwrap();
        assert_eq!(p.current.room.as_deref(), Some("studio"));
        assert!(p.load_preset("nope").is_err());
        p.delete_preset("Karaoke");
        assert!(p.presets.is_empty());
    }
}
