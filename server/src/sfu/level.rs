//! Server-side volume indication from the RFC 6464 client-to-mixer audio level header extension:
//! the level (0 = 0 dBov, the loudest, to 127 = -127 dBov, silence) each publisher writes into its
//! packets, turned into the product's 0–255 volume and a speaking flag (a seat "ripples" above 20).

use onmic_room::Uid;

/// Volume above which a speaker counts as speaking (the seat ripples).
pub const SPEAKING_THRESHOLD: u8 = 20;

/// One speaker's volume over the last interval.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct VolumeReport {
    /// The speaker.
    pub uid: Uid,
    /// Loudest level heard in the interval, 0–255 (linear in amplitude).
    pub volume: u8,
    /// `volume` is above [`SPEAKING_THRESHOLD`].
    pub speaking: bool,
}

/// The 0–255 volume of an RFC 6464 level (`-dBov`, clamped to 0..=127).
pub fn volume_of_level(level: u8) -> u8 {
    let dbov = -f32::from(level.min(127));
    let amplitude = 10f32.powf(dbov / 20.0);
    // In 0..=255 by construction (amplitude is in 0..=1).
    (amplitude * 255.0).round().clamp(0.0, 255.0) as u8
}

/// The loudest level heard since the last report.
#[derive(Debug, Default, Clone)]
pub struct LevelMeter {
    loudest: Option<u8>,
}

impl LevelMeter {
    /// One packet's level (`-dBov`).
    pub fn observe(&mut self, level: u8) {
        let level = level.min(127);
        self.loudest = Some(self.loudest.map_or(level, |l| l.min(level)));
    }

    /// Forgets what was heard.
    pub fn reset(&mut self) {
        self.loudest = None;
    }

    /// The report for the interval that ends now, if anything was heard; starts a new interval.
    pub fn take(&mut self, uid: &Uid) -> Option<VolumeReport> {
        let level = self.loudest.take()?;
        let volume = volume_of_level(level);
        Some(VolumeReport {
            uid: uid.clone(),
            volume,
            speaking: volume > SPEAKING_THRESHOLD,
        })
    }
}

/// Decides which volume reports go out to the room's members (`volume_indication`): every
/// interval in which someone speaks, plus one when the set of speakers changes (so clients stop a
/// ripple), and nothing while the room stays silent — a quiet room of thousands of listeners costs
/// no messages.
#[derive(Debug, Default, Clone)]
pub struct VolumeGate {
    /// The speaking uids of the last report sent, sorted.
    last_speaking: Vec<Uid>,
}

impl VolumeGate {
    /// The reports of one interval, if they should be pushed.
    pub fn filter(&mut self, reports: Vec<VolumeReport>) -> Option<Vec<VolumeReport>> {
        let mut speaking: Vec<Uid> = reports
            .iter()
            .filter(|r| r.speaking)
            .map(|r| r.uid.clone())
            .collect();
        speaking.sort();
        if speaking.is_empty() && self.last_speaking.is_empty() {
            return None;
        }
        self.last_speaking = speaking;
        Some(reports)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_map_to_volumes() {
        assert_eq!(volume_of_level(0), 255);
        assert_eq!(volume_of_level(6), 128);
        assert_eq!(volume_of_level(20), 26);
        assert_eq!(volume_of_level(127), 0);
        assert_eq!(volume_of_level(255), 0, "out-of-range levels clamp");
        assert!(volume_of_level(22) <= SPEAKING_THRESHOLD);
        assert!(volume_of_level(21) > SPEAKING_THRESHOLD);
    }

    #[test]
    fn the_loudest_packet_of_the_interval_wins() {
        let mut m = LevelMeter::default();
        let uid = Uid::from("u");
        assert_eq!(m.take(&uid), None);
        for l in [90, 12, 60] {
            m.observe(l);
        }
        let r = m.take(&uid).expect("heard");
        assert_eq!(r.volume, volume_of_level(12));
        assert!(r.speaking);
        assert_eq!(m.take(&uid), None, "a new interval starts empty");
    }

    #[test]
    fn the_gate_pushes_while_someone_speaks_and_once_when_all_fall_silent() {
        let report = |uid: &str, volume: u8| VolumeReport {
            uid: Uid::from(uid),
            volume,
            speaking: volume > SPEAKING_THRESHOLD,
        };
        let mut g = VolumeGate::default();
        assert_eq!(g.filter(vec![]), None, "a silent room sends nothing");
        assert_eq!(
            g.filter(vec![report("a", 3)]),
            None,
            "nor a quiet publisher"
        );
        let loud = vec![report("a", 200), report("b", 2)];
        assert_eq!(g.filter(loud.clone()), Some(loud.clone()));
        assert_eq!(
            g.filter(loud.clone()),
            Some(loud),
            "every interval while speaking"
        );
        let quiet = vec![report("a", 4)];
        assert_eq!(
            g.filter(quiet.clone()),
            Some(quiet),
            "the end of speech is told once"
        );
        assert_eq!(g.filter(vec![report("a", 4)]), None);
        assert_eq!(g.filter(vec![]), None);
    }
}
