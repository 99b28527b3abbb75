//! Whisper made streaming: a voice-activity segmenter cuts the 80 ms frames into
//! utterances; while one goes on, the audio so far is transcribed every few frames and
//! a word is given out once two transcriptions in a row agree on it (LocalAgreement-2,
//! as `whisper_streaming` does); when the speaker stops, one last transcription gives
//! the rest, and the end-of-speech probability comes with it (never before the
//! utterance's last words).

use crate::audio::onset::Onset;
use crate::audio::resample::StreamResampler;
use std::collections::VecDeque;

/// Transcribe the growing utterance every 4 frames (320 ms).
pub const HOP_FRAMES: u32 = 4;
/// Quiet frames that end an utterance (320 ms, the turn machine's own minimum).
pub const END_QUIET_FRAMES: u32 = 4;
/// Quiet frames after which the last transcription starts, on speculation: the frames
/// until the end are silence, which changes nothing, so its result is held and given
/// out at the end (or dropped if the speaker goes on). It hides the transcription
/// behind the wait for the end.
pub const SPECULATE_QUIET_FRAMES: u32 = 1;
/// Frames kept from before the onset, so the first word's start is not cut.
const PREROLL_FRAMES: usize = 3;
/// Speech frames an utterance needs (fewer is a click).
const MIN_SPEECH_FRAMES: u32 = 2;
/// No partial transcription of less than this: Whisper guesses wildly at a word or two.
const MIN_PARTIAL_S: f32 = 1.0;
/// An utterance this long is finished and a new one begun (Whisper reads 30 s at most).
const MAX_UTTERANCE_S: usize = 20;

/// Work for the transcriber.
#[derive(Debug, Clone, PartialEq)]
pub enum Job {
    /// The utterance so far (16 kHz): words two transcriptions agree on.
    Partial(Vec<f32>),
    /// The whole utterance: the rest of its words, and the end-of-speech verdict.
    Final(Vec<f32>),
    /// The utterance as it will end if the quiet goes on: transcribe it, hold the result.
    Tentative(Vec<f32>),
    /// The quiet went on: give out the held result as `Final` would.
    Confirm,
    /// The speaker went on: drop the held result.
    Withdraw,
}

/// Cuts 24 kHz frames into utterances at 16 kHz.
pub struct Segmenter {
    onset: Onset,
    resample: StreamResampler,
    frame16: Vec<f32>,
    preroll: VecDeque<Vec<f32>>,
    utterance: Vec<f32>,
    speaking: bool,
    quiet: u32,
    speech: u32,
    since_hop: u32,
    /// A `Tentative` job is out for this utterance.
    tentative: bool,
}

impl Segmenter {
    pub fn new() -> anyhow::Result<Self> {
        Ok(Self {
            onset: Onset::default(),
            resample: StreamResampler::new(24_000, 16_000, 240)?,
            frame16: Vec::with_capacity(1280),
            preroll: VecDeque::new(),
            utterance: Vec::new(),
            speaking: false,
            quiet: 0,
            speech: 0,
            since_hop: 0,
            tentative: false,
        })
    }

    /// Inside an utterance (speech, or the short quiet before it ends).
    pub fn in_utterance(&self) -> bool {
        self.speaking
    }

    pub fn reset(&mut self) {
        self.onset.reset();
        self.resample.reset();
        self.preroll.clear();
        self.utterance.clear();
        self.speaking = false;
        self.tentative = false;
        (self.quiet, self.speech, self.since_hop) = (0, 0, 0);
    }

    /// One 80 ms frame at 24 kHz; the job it calls for, if any.
    pub fn push(&mut self, pcm24: &[f32]) -> Option<Job> {
        self.resample.push(pcm24);
        self.frame16.resize(self.resample.available(), 0.0);
        let n = self.resample.pop(&mut self.frame16);
        self.frame16.truncate(n);
        let heard = self.onset.frame(pcm24);
        if !self.speaking {
            self.preroll.push_back(self.frame16.clone());
            if self.preroll.len() > PREROLL_FRAMES {
                self.preroll.pop_front();
            }
            if heard.speech {
                self.speaking = true;
                self.utterance = self.preroll.drain(..).flatten().collect();
                (self.quiet, self.speech, self.since_hop) = (0, 1, 0);
            }
            return None;
        }
        self.utterance.extend_from_slice(&self.frame16);
        if heard.speech {
            self.quiet = 0;
            self.speech += 1;
        } else {
            self.quiet += 1;
        }
        let enough = self.speech >= MIN_SPEECH_FRAMES;
        if self.quiet >= END_QUIET_FRAMES {
            self.speaking = false;
            let audio = std::mem::take(&mut self.utterance);
            if std::mem::take(&mut self.tentative) {
                return Some(Job::Confirm);
            }
            return enough.then_some(Job::Final(audio));
        }
        if self.tentative && heard.speech {
            self.tentative = false;
            return Some(Job::Withdraw);
        }
        if self.quiet == SPECULATE_QUIET_FRAMES && enough && !self.tentative {
            self.tentative = true;
            return Some(Job::Tentative(self.utterance.clone()));
        }
        if self.utterance.len() >= MAX_UTTERANCE_S * 16_000 {
            // Finish this stretch; the speech goes on in a new utterance.
            let audio = std::mem::take(&mut self.utterance);
            (self.speech, self.since_hop) = (1, 0);
            return Some(Job::Final(audio));
        }
        self.since_hop += 1;
        let long_enough = self.utterance.len() as f32 >= MIN_PARTIAL_S * 16_000.0;
        if enough && long_enough && !self.tentative && self.since_hop >= HOP_FRAMES {
            self.since_hop = 0;
            return Some(Job::Partial(self.utterance.clone()));
        }
        None
    }
}

/// Word-level LocalAgreement over the transcriptions of one utterance.
#[derive(Debug, Default)]
pub struct Agreement {
    committed: Vec<String>,
    previous: Vec<String>,
}

/// A word as compared: lower case, letters and digits only.
fn norm(w: &str) -> String {
    w.chars()
        .filter(|c| c.is_alphanumeric())
        .flat_map(char::to_lowercase)
        .collect()
}

fn same(a: &[String], b: &[String]) -> usize {
    a.iter()
        .zip(b)
        .take_while(|(x, y)| norm(x) == norm(y))
        .count()
}

impl Agreement {
    /// A transcription of the utterance so far: the words now agreed on, new ones only.
    pub fn partial(&mut self, words: Vec<String>) -> Vec<String> {
        let agreed = same(&self.previous, &words);
        let done = self.committed.len();
        let mut new = Vec::new();
        // Only when the transcription still starts with what was given out.
        if agreed > done && same(&self.committed, &words) == done {
            new = words[done..agreed].to_vec();
            self.committed.extend(new.iter().cloned());
        }
        self.previous = words;
        new
    }

    /// The last transcription of the utterance: every word not yet given out.
    pub fn finish(&mut self, words: Vec<String>) -> Vec<String> {
        let done = self.committed.len().min(words.len());
        let rest = words[done..].to_vec();
        *self = Self::default();
        rest
    }

    pub fn reset(&mut self) {
        *self = Self::default();
    }
}

/// How sure the end of an utterance is the end of the turn, from how its text ends:
/// a full stop, question or exclamation mark is a finished sentence; a comma or an
/// ellipsis is a pause in one. Random-weight models write no punctuation: above the
/// turn machine's threshold, so their turns still end.
pub fn end_probability(text: &str) -> f32 {
    let t = text.trim_end();
    if t.ends_with("...") || t.ends_with(',') || t.ends_with('-') || t.ends_with('…') {
        0.3
    } else if t.ends_with(['.', '?', '!']) {
        0.9
    } else {
        0.6
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn words_come_once_two_transcriptions_agree_and_the_rest_at_the_end() {
        let mut a = Agreement::default();
        assert!(a.partial(w("Hello can")).is_empty());
        assert_eq!(a.partial(w("Hello, can you")), w("Hello, can"));
        assert_eq!(a.partial(w("Hello, can you hear me")), w("you"));
        assert_eq!(a.partial(w("Hello, can you hear me?")), w("hear me?"));
        assert_eq!(a.finish(w("Hello, can you hear me? Yes.")), w("Yes."));
        // A new utterance starts from nothing.
        assert!(a.partial(w("Good")).is_empty());
        assert_eq!(a.finish(w("Goodbye.")), w("Goodbye."));
    }

    #[test]
    fn a_transcription_that_changed_what_was_given_commits_nothing() {
        let mut a = Agreement::default();
        a.partial(w("one two three"));
        assert_eq!(a.partial(w("one two three four")), w("one two three"));
        assert!(a.partial(w("won too three four five")).is_empty());
        // The end never repeats words already given.
        assert_eq!(
            a.finish(w("one two three four five six")),
            w("four five six")
        );
    }

    #[test]
    fn punctuation_says_how_finished_the_turn_is() {
        assert!(end_probability("Can you hear me?") > 0.8);
        assert!(end_probability("So I was thinking,") < 0.5);
        assert!(end_probability("and then...") < 0.5);
        assert!((0.5..0.8).contains(&end_probability("hello there")));
    }

    fn tone(amp: f32) -> Vec<f32> {
        (0..1920)
            .map(|i| amp * (i as f32 * 2.0 * std::f32::consts::PI * 220.0 / 24_000.0).sin())
            .collect()
    }

    #[test]
    fn speech_makes_partials_every_hop_and_quiet_ends_it_with_the_whole_utterance() {
        let mut s = Segmenter::new().unwrap();
        let quiet = vec![0f32; 1920];
        for _ in 0..10 {
            assert!(s.push(&quiet).is_none());
        }
        // (frame index, job) over 13 frames of tone and the quiet after.
        let mut jobs = Vec::new();
        for i in 0..13 {
            if let Some(j) = s.push(&tone(0.3)) {
                jobs.push((i, j));
            }
        }
        assert!(s.in_utterance());
        for i in 13..13 + END_QUIET_FRAMES as usize {
            if let Some(j) = s.push(&quiet) {
                jobs.push((i, j));
            }
        }
        // The first partial once there is 1 s of audio (the onset's frame with 2 of
        // preroll, then 10 more: frame 10); the last transcription on speculation at
        // the first quiet frame (13), confirmed at the fourth (16).
        let at: Vec<usize> = jobs.iter().map(|(i, _)| *i).collect();
        assert_eq!(at, vec![10, 13, 16], "frames with a job");
        assert!(matches!(jobs[0].1, Job::Partial(_)));
        assert!(matches!(jobs[2].1, Job::Confirm));
        let Job::Tentative(audio) = &jobs[1].1 else {
            panic!("no tentative end at the first quiet frame")
        };
        // Preroll with the onset (3) + 12 + 1 quiet frame, at 16 kHz (1280 a frame).
        let frames = audio.len() as f64 / 1280.0;
        assert!((15.5..=16.5).contains(&frames), "{frames}");
        assert!(!s.in_utterance());
        // Speech after the tentative end withdraws it; the next quiet ends it again.
        for _ in 0..10 {
            s.push(&tone(0.3));
        }
        let mut kinds = Vec::new();
        for i in 0..10 {
            let f = if i == 2 { tone(0.3) } else { quiet.clone() };
            kinds.extend(s.push(&f).map(|j| match j {
                Job::Partial(_) => "partial",
                Job::Final(_) => "final",
                Job::Tentative(_) => "tentative",
                Job::Confirm => "confirm",
                Job::Withdraw => "withdraw",
            }));
        }
        // (the hop that fell due while the tentative end was out gives way to the
        // next tentative end, at the first quiet frame after the speech resumed: it
        // transcribes the same audio)
        assert_eq!(kinds, ["tentative", "withdraw", "tentative", "confirm"]);
        // A single click is no utterance.
        for _ in 0..10 {
            s.push(&quiet);
        }
        s.push(&tone(0.5));
        for _ in 0..6 {
            assert!(s.push(&quiet).is_none());
        }
    }
}
