//! Speech onset from the (echo-cancelled) microphone, one 80 ms frame at a time: what
//! barge-in and the end of the user's turn listen to. The recogniser's words come
//! half a second late; its loudness does not.

/// dBFS below which nothing counts as speech, however quiet the room.
const FLOOR_DBFS: f32 = -50.0;
/// How far above the room's noise floor a frame must be to be speech.
const ABOVE_FLOOR_DB: f32 = 12.0;
/// A frame this far above the floor is speech on its own; otherwise two in a row.
const LOUD_DB: f32 = 20.0;
/// The floor is the quietest frame of the last 10 s (125 frames): steady noise
/// becomes the floor within a frame, and speech, which dips between words, does not.
const FLOOR_WINDOW: usize = 125;

#[derive(Debug, Clone, Default)]
pub struct Onset {
    /// Levels (dBFS) of the previous frames, oldest first.
    levels: std::collections::VecDeque<f32>,
    /// Consecutive frames above the speech threshold.
    above: u32,
    speaking: bool,
}

/// What one frame showed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Heard {
    /// The user is speaking in this frame.
    pub speech: bool,
    /// Speech began in this frame (it was quiet before).
    pub onset: bool,
}

impl Onset {
    pub fn frame(&mut self, pcm: &[f32]) -> Heard {
        let energy = pcm.iter().map(|x| x * x).sum::<f32>() / pcm.len().max(1) as f32;
        let db = 10.0 * energy.max(1e-12).log10();
        let floor = self
            .levels
            .iter()
            .copied()
            .reduce(f32::min)
            .unwrap_or(-120.0);
        let above = db - floor;
        let loud = db > FLOOR_DBFS && above >= ABOVE_FLOOR_DB;
        self.above = if loud { self.above + 1 } else { 0 };
        let speech = loud && (above >= LOUD_DB || self.above >= 2);
        if self.levels.len() == FLOOR_WINDOW {
            self.levels.pop_front();
        }
        self.levels.push_back(db);
        let onset = speech && !self.speaking;
        self.speaking = speech;
        Heard { speech, onset }
    }

    pub fn reset(&mut self) {
        *self = Self::default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tone(amp: f32, n: usize) -> Vec<f32> {
        (0..n)
            .map(|i| amp * (i as f32 * 2.0 * std::f32::consts::PI * 220.0 / 24_000.0).sin())
            .collect()
    }

    #[test]
    fn a_loud_voice_after_quiet_is_an_onset_at_once() {
        let mut o = Onset::default();
        for _ in 0..10 {
            assert!(!o.frame(&tone(0.001, 1920)).speech);
        }
        let h = o.frame(&tone(0.3, 1920));
        assert!(h.speech && h.onset);
        let h = o.frame(&tone(0.3, 1920));
        assert!(h.speech && !h.onset, "one onset per stretch of speech");
        assert!(!o.frame(&tone(0.001, 1920)).speech);
    }

    #[test]
    fn steady_noise_becomes_the_floor_and_a_click_is_not_speech() {
        let mut o = Onset::default();
        let mut onsets = 0;
        // Noise at -30 dBFS for 20 s: at most the first frames count.
        for _ in 0..250 {
            onsets += o.frame(&tone(0.045, 1920)).onset as u32;
        }
        assert!(onsets <= 1, "{onsets} onsets on steady noise");
        assert!(!o.frame(&tone(0.045, 1920)).speech);
        // A moderate rise for a single frame is not enough; two frames are.
        assert!(!o.frame(&tone(0.2, 1920)).speech);
        assert!(!o.frame(&tone(0.045, 1920)).speech);
        assert!(!o.frame(&tone(0.2, 1920)).speech);
        assert!(o.frame(&tone(0.2, 1920)).onset);
    }

    #[test]
    fn digital_silence_is_never_speech() {
        let mut o = Onset::default();
        for _ in 0..50 {
            assert!(!o.frame(&[0.0; 1920]).speech);
        }
        assert!(
            !o.frame(&tone(0.002, 1920)).speech,
            "-57 dBFS is below the floor"
        );
    }
}
