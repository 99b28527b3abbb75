//! The model boundary: anything the engine thread can step, one 80 ms frame at a time.

use anyhow::Result;
use std::path::PathBuf;
use std::time::Duration;

pub use crate::bus::{ModelInfo, Sampling, Talk};

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
    /// What a turn-taking model (the cascade) reports this step, in order; empty for
    /// Moshi. Cleared, not reallocated, each step.
    pub talk: Vec<Talk>,
    /// What the speaker has queued is no longer wanted (a barge-in): it goes silent
    /// now instead of playing it out.
    pub cut: bool,
}

impl StepOutput {
    pub fn clear(&mut self, frame_len: usize) {
        self.pcm.clear();
        self.pcm.resize(frame_len, 0.0);
        self.text = None;
        self.text_token = None;
        self.audio_codes = None;
        self.talk.clear();
        self.cut = false;
    }
}

/// A persona's prompts, for a model that takes them: the role text (PersonaPlex's
/// prefill, the cascade's system prompt) and the voice to speak in.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Prompt {
    pub text: String,
    /// PersonaPlex: a voice prompt (a WAV, a `.pt`, or a name in the voices directory).
    pub voice: Option<PathBuf>,
    /// The cascade: the TTS voice (an embedding file or a name in the voices repo).
    pub speaker: Option<String>,
    /// The cascade: the LLM model to ask for (a server's model name).
    pub llm_model: Option<String>,
}

/// One prefill step as `--dump-tokens` writes it: the position's tokens once forced.
#[derive(Debug, Clone, PartialEq)]
pub struct PrefillStep {
    /// The model's step (position 0 lays the initial tokens and runs no model: no line).
    pub position: usize,
    /// `voice`, `silence`, `text` or `silence`.
    pub phase: &'static str,
    pub text_token: u32,
    /// The agent's codebooks.
    pub audio_codes: Vec<u32>,
    /// The user's codebooks (forced to NVIDIA's sine tokens during the prefill).
    pub user_codes: Vec<u32>,
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
    /// Whether the input keeps a clock (a microphone, a paced file) or is read as fast
    /// as the model steps: a model with parts on threads of their own takes what they
    /// have ready only in the first case (otherwise it waits, so a file's run does
    /// not depend on thread timing).
    fn set_realtime(&mut self, _realtime: bool) {}
    /// A turn is under way that more input would finish (the cascade heard speech but
    /// not yet its end, or is replying): at the end of a file the engine feeds silence
    /// while this holds, so a recorded question gets its whole answer.
    fn busy(&self) -> bool {
        false
    }
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
    /// Whether `type_text` takes typed turns (the cascade's LLM reads text; Moshi
    /// hears only audio).
    fn takes_text(&self) -> bool {
        false
    }
    /// A turn the user typed, answered as if they had said it, from the next step on.
    fn type_text(&mut self, _text: &str) -> Result<()> {
        anyhow::bail!("{} takes no typed text", self.info().name)
    }
    /// Where voice names (`NATF2`) are looked up, when not the model's default.
    fn set_voices_dir(&mut self, _dir: &std::path::Path) {}
    /// The prefill steps run since the last call (a prime, or a reset replaying one),
    /// for `--dump-tokens`; empty for a model that takes no prompt.
    fn take_prefill(&mut self) -> Vec<PrefillStep> {
        Vec::new()
    }
    /// A new session on the same weights: its own state (caches, Mimi's streams, fresh
    /// samplers) and no copy of the tensors, which are shared (candle's tensors are
    /// reference-counted). Cheap: no step runs, so callers can fork under a lock. Call
    /// `reset()` on the fork before stepping it: a model primed with a prompt replays
    /// its prefill there, into the fork's own cache. `None`: this model cannot share
    /// its weights, and each session loads its own.
    fn fork(&self) -> Option<Box<dyn DuplexModel>> {
        None
    }
    /// A remote model's network path, for the status line (`None`: a local model).
    fn link(&self) -> Option<crate::bus::LinkStats> {
        None
    }
    /// Wake mode's second path (the cascade): `true` while the wake gate waits. The
    /// model then hears the microphone only to spot a wake phrase in its recogniser's
    /// words (`take_wake_words`): they open no turn, reach no LLM and are not
    /// journalled. `false` when the gate opens, with `carry`: the words said after the
    /// phrase, which start the user's turn. Returns whether the model listens this way
    /// (when not, the engine gives it silence while the gate waits).
    fn wake_listen(&mut self, _on: bool, _carry: &str) -> bool {
        false
    }
    /// The recogniser's words heard while `wake_listen` is on, since the last call.
    fn take_wake_words(&mut self) -> Option<String> {
        None
    }
    /// What happened to a remote model's connection since the last call, oldest first.
    fn take_happening(&mut self) -> Option<crate::bus::Happening> {
        None
    }
    /// The counters of the batch this model steps in (`serve --batch`); `None`: it
    /// steps alone.
    fn batch_stats(&self) -> Option<BatchStats> {
        None
    }
}

/// Upper bounds of step-time histograms' buckets, in seconds (a step has 80 ms): the
/// server's per-session steps and the batch stepper's.
pub const STEP_BUCKETS: [f64; 10] = [0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.2, 0.4, 1.0];

/// Counters of a batch stepper (`serve --batch`) since its start.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BatchStats {
    /// KV-cache slots in the batch (`--max-sessions`).
    pub slots: usize,
    /// Batched forward passes.
    pub steps: u64,
    /// Slot steps in them (sessions stepped).
    pub slot_steps: u64,
    /// Steps by how many sessions they stepped: `sizes[n]` steps stepped `n`.
    pub sizes: Vec<u64>,
    /// Sessions masked in a step because their frame was late.
    pub late: u64,
    /// Steps that waited the whole gather window for a punctual session's frame.
    pub waited_out: u64,
    /// Wall time of the steps, in seconds.
    pub step_seconds: f64,
    /// Steps by wall time: one count per `STEP_BUCKETS` bound, then one above the last
    /// (not cumulative).
    pub step_buckets: Vec<u64>,
}

impl BatchStats {
    pub fn new(slots: usize) -> Self {
        Self {
            slots,
            sizes: vec![0; slots + 1],
            step_buckets: vec![0; STEP_BUCKETS.len() + 1],
            ..Self::default()
        }
    }

    /// One batched step of `stepped` sessions, `late` masked, taking `seconds`.
    pub fn record(&mut self, stepped: usize, late: usize, seconds: f64) {
        self.steps += 1;
        self.slot_steps += stepped as u64;
        self.late += late as u64;
        self.step_seconds += seconds;
        if let Some(n) = self.sizes.get_mut(stepped) {
            *n += 1;
        }
        let bucket = STEP_BUCKETS
            .iter()
            .position(|&b| seconds <= b)
            .unwrap_or(STEP_BUCKETS.len());
        if let Some(n) = self.step_buckets.get_mut(bucket) {
            *n += 1;
        }
    }
}
