//! The model boundary: anything the engine thread can step, one 80 ms frame at a time.

use anyhow::Result;
use std::path::PathBuf;
use std::time::Duration;

pub use crate::bus::{ModelInfo, Sampling};

/// What one step produced. Owned by the engine and reused across steps, so a
/// model writes into it instead of allocating.
#[derive(Debug, Clone, Default)]
pub struct StepOutput {
    /// Exactly `frame_len()` samples at `sample_rate()`, mono. Silence until the
    /// model has something to say.
    pub pcm: Vec<f32>,
    /// A piece of assembled text (a word or more, with its leading space) when the
    /// text stream completed one this step.
    pub text: Option<String>,
    /// The raw text token of this step, for `--dump-tokens`.
    pub text_token: Option<u32>,
    /// The audio codebook tokens of this step; `None` while the acoustic delay fills.
    pub audio_codes: Option<Vec<u32>>,
}

impl StepOutput {
    pub fn clear(&mut self, frame_len: usize) {
        self.pcm.clear();
        self.pcm.resize(frame_len, 0.0);
        self.text = None;
        self.text_token = None;
        self.audio_codes = None;
    }
}

/// A persona's prompts, for a model that takes them (PersonaPlex): the role text and
/// a voice prompt (a WAV of the voice to speak in).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Prompt {
    pub text: String,
    pub voice: Option<PathBuf>,
}

/// What a prefill did: the steps it ran and how long they took.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Primed {
    pub steps: usize,
    pub elapsed: Duration,
}

/// Anything the engine can step. One thread owns it (and its candle Device).
pub trait DuplexModel: Send {
    fn info(&self) -> ModelInfo;
    /// 24_000 for Moshi.
    fn sample_rate(&self) -> u32;
    /// 1920 for Moshi (80 ms at 24 kHz).
    fn frame_len(&self) -> usize;
    /// Frames of delay between an input sample and the earliest output that can
    /// depend on it (1 for loopback). Used for latency reporting.
    fn delay_frames(&self) -> usize {
        0
    }
    /// Consume exactly `frame_len()` input samples and fill `out` (already cleared
    /// to `frame_len()` zeros by the engine).
    fn step(&mut self, pcm_in: &[f32], out: &mut StepOutput) -> Result<()>;
    /// Forget the conversation: caches, delays, text assembly.
    fn reset(&mut self);
    /// Apply new sampling settings from the next step on.
    fn set_sampling(&mut self, _sampling: &Sampling) {}
    /// Whether `prime` does anything with a prompt.
    fn takes_prompt(&self) -> bool {
        false
    }
    /// Reset, then prefill a persona's prompts, as fast as the device allows; later
    /// `reset`s replay the same prefill. A model that takes no prompt refuses, and an
    /// error leaves the previous prompt in place.
    fn prime(&mut self, _prompt: &Prompt) -> Result<Primed> {
        anyhow::bail!("{} takes no prompt", self.info().name)
    }
    /// A remote model's network path, for the status line (`None`: a local model).
    fn link(&self) -> Option<crate::bus::LinkStats> {
        None
    }
    /// What happened to a remote model's connection since the last call, oldest first.
    fn take_happening(&mut self) -> Option<crate::bus::Happening> {
        None
    }
}
