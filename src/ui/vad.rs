//! A simple voice-activity rule on per-frame RMS levels: a level above `on` for
//! `attack` frames starts speech; below `off` for `hangover` frames ends it. The
//! gap between `on` and `off` and the hangover keep short pauses inside one turn.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    Started,
    Ended,
}

#[derive(Debug, Clone)]
pub struct Vad {
    on: f32,
    off: f32,
    attack: u8,
    hangover: u8,
    active: bool,
    run: u8,
}

impl Vad {
    pub fn new(on: f32, off: f32, attack: u8, hangover: u8) -> Self {
        Self {
            on,
            off,
            attack,
            hangover,
            active: false,
            run: 0,
        }
    }

    /// The user at the microphone: about -34 dBFS to start, after 160 ms;
    /// ends after 560 ms below -40 dBFS (at 80 ms frames).
    pub fn microphone() -> Self {
        Self::new(
            0.02,
            0.01,
            Self::MICROPHONE_ATTACK,
            Self::MICROPHONE_HANGOVER,
        )
    }

    /// Frames of voice that start the user's speech.
    pub const MICROPHONE_ATTACK: u8 = 2;

    /// Frames of quiet that end the user's speech.
    pub const MICROPHONE_HANGOVER: u8 = 7;

    /// The assistant's own output: any real signal counts at once; ends after 640 ms of quiet.
    pub fn assistant() -> Self {
        Self::new(0.01, 0.005, 1, 8)
    }

    pub fn is_active(&self) -> bool {
        self.active
    }

    /// Whether `level` alone would count as voice (for colouring level bars).
    pub fn is_voice(&self, level: f32) -> bool {
        level >= self.on
    }

    pub fn update(&mut self, rms: f32) -> Option<Transition> {
        if self.active {
            if rms < self.off {
                self.run += 1;
                if self.run >= self.hangover {
                    self.active = false;
                    self.run = 0;
                    return Some(Transition::Ended);
                }
            } else {
                self.run = 0;
            }
        } else if rms >= self.on {
            self.run += 1;
            if self.run >= self.attack {
                self.active = true;
                self.run = 0;
                return Some(Transition::Started);
            }
        } else {
            self.run = 0;
        }
        None
    }

    pub fn reset(&mut self) {
        self.active = false;
        self.run = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn needs_attack_frames_and_ends_after_hangover() {
        let mut v = Vad::new(0.1, 0.05, 2, 3);
        assert_eq!(v.update(0.2), None);
        assert_eq!(v.update(0.0), None, "one loud frame is a click, not speech");
        assert_eq!(v.update(0.2), None);
        assert_eq!(v.update(0.2), Some(Transition::Started));
        assert_eq!(
            v.update(0.07),
            None,
            "between off and on keeps speech going"
        );
        assert_eq!(v.update(0.0), None);
        assert_eq!(v.update(0.0), None);
        assert_eq!(v.update(0.2), None, "a short pause stays inside the turn");
        assert_eq!(v.update(0.0), None);
        assert_eq!(v.update(0.0), None);
        assert_eq!(v.update(0.0), Some(Transition::Ended));
        assert!(!v.is_active());
    }
}
