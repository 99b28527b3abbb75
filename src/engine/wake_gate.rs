//! The wake gate on the microphone: while it is closed, the spotter hears each frame
//! (after the echo canceller, so the assistant's own voice does not wake it) and the
//! model hears silence, or, for a model that listens for wake words itself (the
//! cascade's recogniser, `DuplexModel::wake_listen`), the frame, which it uses for
//! nothing but spotting. A wake phrase, from either, opens it for one exchange; quiet
//! on both sides for `quiet` closes it again.

use crate::audio::wake::{Detection, Spotter};
use crate::bus::Happening;

/// Above this level (RMS) the microphone counts as someone talking (about -40 dBFS).
const MIC_ACTIVE_RMS: f32 = 0.01;
/// Above this level the assistant counts as talking.
const OUT_ACTIVE_RMS: f32 = 0.001;

pub struct WakeOptions {
    pub spotter: Spotter,
    /// Every persona's phrases, for the recogniser's words (the spotter knows only
    /// those with takes).
    pub phrases: Vec<String>,
    /// Start in wake mode (`--wake`); `w` toggles it.
    pub enabled: bool,
    /// Seconds of quiet on both sides that end an exchange.
    pub quiet_s: f64,
}

pub struct WakeGate {
    spotter: Spotter,
    phrases: Vec<String>,
    enabled: bool,
    open: bool,
    quiet_frames: u32,
    quiet_left: u32,
    found: Vec<Detection>,
}

/// What a frame did to the gate, for the engine to tell the user.
#[derive(Debug, PartialEq)]
pub enum Change {
    None,
    Opened(Happening),
    Closed(Happening),
}

impl WakeGate {
    pub fn new(o: WakeOptions, frame_s: f64) -> Self {
        let quiet_frames = (o.quiet_s / frame_s).ceil().max(1.0) as u32;
        Self {
            spotter: o.spotter,
            phrases: o.phrases,
            enabled: o.enabled,
            open: false,
            quiet_frames,
            quiet_left: quiet_frames,
            found: Vec::new(),
        }
    }

    pub fn waiting(&self) -> Happening {
        let names = self.spotter.names();
        Happening::WakeWaiting {
            phrases: if names.is_empty() {
                self.phrases.clone()
            } else {
                names
            },
        }
    }

    /// The active persona's phrases: another persona's name needs a higher score to
    /// switch to it than the active one's needs to wake it.
    pub fn set_active(&mut self, phrases: Vec<String>) {
        self.spotter.active = phrases;
    }

    /// The recogniser's words while the gate waits: a phrase among them opens it.
    /// Returns what to tell the user and the words said after the phrase.
    pub fn heard_words(&mut self, text: &str) -> Option<(Happening, String)> {
        if !self.enabled || self.open {
            return None;
        }
        let (phrase, rest) = find_phrase(&self.phrases, text)?;
        self.open = true;
        self.quiet_left = self.quiet_frames;
        self.spotter.reset();
        Some((
            Happening::WakeHeard {
                phrase,
                score: None,
            },
            rest,
        ))
    }

    /// Switch wake mode; returns what to tell the user.
    pub fn set_enabled(&mut self, on: bool) -> Happening {
        self.enabled = on;
        self.open = false;
        self.spotter.reset();
        if on {
            self.waiting()
        } else {
            Happening::WakeOff
        }
    }

    pub fn set_threshold(&mut self, t: f32) {
        self.spotter.threshold = t.clamp(0.0, 1.0);
    }

    pub fn enabled(&self) -> bool {
        self.enabled
    }

    pub fn is_open(&self) -> bool {
        self.open
    }

    /// One fresh microphone frame (24 kHz, after the echo canceller): silenced unless
    /// the gate is open, or `listening` (the model spots wake words in it and uses it
    /// for nothing else). `busy`: the model is mid-exchange (thinking or speaking);
    /// `out_rms`: what the last step played.
    pub fn frame(
        &mut self,
        frame: &mut [f32],
        mic_rms: f32,
        out_rms: f32,
        busy: bool,
        listening: bool,
    ) -> Change {
        if !self.enabled {
            return Change::None;
        }
        if self.open {
            if mic_rms > MIC_ACTIVE_RMS || out_rms > OUT_ACTIVE_RMS || busy {
                self.quiet_left = self.quiet_frames;
            } else {
                self.quiet_left = self.quiet_left.saturating_sub(1);
            }
            if self.quiet_left > 0 {
                return Change::None;
            }
            self.open = false;
            self.spotter.reset();
            if !listening {
                frame.fill(0.0);
            }
            return Change::Closed(self.waiting());
        }
        self.found.clear();
        self.spotter.push(frame, &mut self.found);
        // Nothing heard before the phrase reaches a model's turn (or the journal).
        if !listening {
            frame.fill(0.0);
        }
        match self.found.pop() {
            Some(d) => {
                self.open = true;
                self.quiet_left = self.quiet_frames;
                Change::Opened(Happening::WakeHeard {
                    phrase: d.name,
                    score: Some(d.score),
                })
            }
            None => Change::None,
        }
    }
}

/// Lower-case letters and digits of a word ("Jarvis," → "jarvis").
fn plain(word: &str) -> String {
    word.chars()
        .filter(|c| c.is_alphanumeric())
        .flat_map(char::to_lowercase)
        .collect()
}

/// The first of `phrases` said in `text` (word for word, ignoring case and
/// punctuation; the longer phrase where two start at the same word), and the words
/// after it.
pub fn find_phrase(phrases: &[String], text: &str) -> Option<(String, String)> {
    let words: Vec<&str> = text.split_whitespace().collect();
    let said: Vec<String> = words.iter().map(|w| plain(w)).collect();
    let mut best: Option<(usize, usize, &String)> = None;
    for p in phrases {
        let want: Vec<String> = p
            .split_whitespace()
            .map(plain)
            .filter(|w| !w.is_empty())
            .collect();
        if want.is_empty() || want.len() > said.len() {
            continue;
        }
        if let Some(at) =
            (0..=said.len() - want.len()).find(|&i| said[i..i + want.len()] == want[..])
        {
            let better =
                best.is_none_or(|(b_at, b_len, _)| at < b_at || (at == b_at && want.len() > b_len));
            if better {
                best = Some((at, want.len(), p));
            }
        }
    }
    let (at, len, p) = best?;
    Some((p.clone(), words[at + len..].join(" ")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_phrase_is_found_in_the_recognisers_words_whatever_the_case_and_punctuation() {
        let p = vec![
            "jarvis".to_string(),
            "hey jarvis".to_string(),
            "hal".to_string(),
        ];
        assert_eq!(
            find_phrase(&p, " Hey, Jarvis. What time is it?"),
            Some(("hey jarvis".into(), "What time is it?".into()))
        );
        assert_eq!(
            find_phrase(&p, "so Jarvis"),
            Some(("jarvis".into(), String::new()))
        );
        // A word that holds a name is not the name.
        assert_eq!(find_phrase(&p, "the hallway and the halls"), None);
        assert_eq!(find_phrase(&p, ""), None);
    }
}
