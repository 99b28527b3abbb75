//! One utterance of the published TTS layout, step by step as Kyutai's
//! `TTSModel.generate` runs it through `LMGen._step` (PyPI `moshi` 0.2.11):
//!
//! - step t's input: the text token fed back at step t-1 (the initial token `text_card`
//!   at t = 0) and every codebook's token of step t-1 (the initial token `card` while
//!   t <= that codebook's delay; "no token", an all-zero embedding, where step t-1 had
//!   none);
//! - the sampled text token goes through the state machine (`dsm_machine`), which
//!   gives the token fed back;
//! - the depth transformer runs from that token, except before `delay_steps` (the
//!   audio's lag behind the text), and a codebook keeps no token before its delay
//!   plus `delay_steps`;
//! - the audio frame of step t takes codebook k from step t - max_delay + delay_k.
//!   Like `simple_generate`, the first two decoded frames are dropped (a click), and
//!   the utterance ends `delay_steps + final_padding` steps after the machine's end.

use super::dsm_lm::DsmLm;
use super::dsm_machine::{Entry, Machine, MachineState, TokenIds};
use crate::models::speech::config::TtsConfig;
use candle_transformers::generation::LogitsProcessor;
use moshi::transformer::CaSrc;

/// `TTSModel.from_checkpoint_info`'s defaults.
pub const MAX_PADDING: usize = 8;
pub const INITIAL_PADDING: usize = 2;
/// `TTSModel.final_padding`.
pub const FINAL_PADDING: usize = 4;
/// Decoded frames dropped at the start, as `simple_generate` does.
pub const DROPPED_FRAMES: usize = 2;

/// The fixed parameters of a run.
#[derive(Debug, Clone)]
pub struct DsmParams {
    pub machine: Machine,
    /// `delays[1..]` of the config: each audio codebook's delay.
    pub audio_delays: Vec<usize>,
    pub delay_steps: usize,
    pub dep_q: usize,
    pub card: u32,
    pub text_card: u32,
}

impl DsmParams {
    /// The parameters Kyutai's `TTSModel.from_checkpoint_info` derives from a config.
    pub fn from_config(cfg: &TtsConfig) -> Self {
        Self {
            machine: Machine {
                ids: TokenIds::new(cfg.text_card, cfg.existing_text_padding_id),
                second_stream_ahead: cfg.tts_config.second_stream_ahead,
                max_padding: MAX_PADDING,
                initial_padding: INITIAL_PADDING,
            },
            audio_delays: cfg.delays[1..].to_vec(),
            delay_steps: cfg.delay_frames(),
            dep_q: cfg.dep_q,
            card: cfg.card as u32,
            text_card: cfg.text_card as u32,
        }
    }

    fn max_delay(&self) -> usize {
        self.audio_delays.iter().copied().max().unwrap_or(0)
    }

    /// Steps from a word's pop to the frame its first sound is in.
    pub fn lag(&self) -> usize {
        self.delay_steps + self.max_delay()
    }
}

/// What one model step did (for tests against Kyutai's tokens).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepTokens {
    pub sampled: u32,
    /// The text token fed back (muxed).
    pub text: u32,
    /// Each codebook's token written this step; `None` is Kyutai's -1.
    pub audio: Vec<Option<u32>>,
}

pub struct DsmUtterance {
    lm: DsmLm,
    ca: Option<Vec<CaSrc>>,
    pub state: MachineState,
    step: usize,
    /// Every step so far.
    pub trace: Vec<StepTokens>,
    text_lp: LogitsProcessor,
    audio_lp: LogitsProcessor,
    /// The next word is the first of the turn.
    first_word: bool,
    pub finished: bool,
    /// Audio frames decoded so far.
    pub decoded: usize,
}

impl DsmUtterance {
    pub fn new(
        mut lm: DsmLm,
        ca: Option<Vec<CaSrc>>,
        p: &DsmParams,
        text_lp: LogitsProcessor,
        audio_lp: LogitsProcessor,
    ) -> Self {
        lm.reset();
        Self {
            lm,
            ca,
            state: p.machine.new_state(),
            step: 0,
            trace: Vec::new(),
            text_lp,
            audio_lp,
            first_word: true,
            finished: false,
            decoded: 0,
        }
    }

    pub fn step_idx(&self) -> usize {
        self.step
    }

    /// A word's tokens (the tokenizer's, without the speaker token).
    pub fn push_word(&mut self, tokens: Vec<u32>, p: &DsmParams) {
        if tokens.is_empty() {
            return;
        }
        let e = Entry::word(tokens, self.first_word, &p.machine.ids);
        self.first_word = false;
        self.state.entries.push_back(e);
    }

    /// Is the utterance over (all its steps run)?
    pub fn over(&self, p: &DsmParams) -> bool {
        self.state
            .end_step
            .is_some_and(|e| self.step >= e + p.delay_steps + FINAL_PADDING)
    }

    /// Can the next step run with the text so far and give the batch result?
    pub fn ready(&self, p: &DsmParams) -> bool {
        self.finished
            || !p.machine.may_pop(&self.state)
            || self.state.entries.len() >= p.machine.words_needed()
    }

    /// Words whose first sound is in a frame up to this step's.
    pub fn words_heard(&self, p: &DsmParams) -> usize {
        let lag = p.lag();
        self.state
            .consumption_times
            .iter()
            .filter(|&&c| c + lag < self.step)
            .count()
    }

    /// Run one model step; returns the audio frame's codes once there is one.
    pub fn model_step(&mut self, p: &DsmParams) -> anyhow::Result<Option<Vec<u32>>> {
        let t = self.step;
        let text_in = match self.trace.last() {
            None => p.text_card,
            Some(s) => s.text,
        };
        let audio_in: Vec<Option<u32>> = p
            .audio_delays
            .iter()
            .enumerate()
            .map(|(k, &d)| {
                if t <= d {
                    Some(p.card)
                } else {
                    self.trace
                        .last()
                        .and_then(|s| s.audio.get(k).copied().flatten())
                }
            })
            .collect();
        let (logits, hidden) = self.lm.forward(text_in, &audio_in, self.ca.as_deref())?;
        let sampled = self.text_lp.sample(&logits)?;
        let text = p.machine.process(t, &mut self.state, sampled);
        let audio: Vec<Option<u32>> = if t < p.delay_steps {
            vec![None; p.dep_q]
        } else {
            self.lm
                .depformer(&hidden, text, &mut self.audio_lp)?
                .into_iter()
                .zip(&p.audio_delays)
                .map(|(tok, &d)| (t >= d + p.delay_steps).then_some(tok))
                .collect()
        };
        self.trace.push(StepTokens {
            sampled,
            text,
            audio,
        });
        self.step += 1;
        // The frame of step t: codebook k from step t - max_delay + delay_k.
        let max_delay = p.max_delay();
        if t < max_delay {
            return Ok(None);
        }
        let codes: Option<Vec<u32>> = (0..p.dep_q)
            .map(|k| self.trace[t - max_delay + p.audio_delays[k]].audio[k])
            .collect();
        Ok(codes)
    }
}

/// How many of `ours` agree with `theirs`, step by step and token by token.
pub fn agreement(ours: &[StepTokens], theirs: &[StepTokens]) -> (usize, usize) {
    let mut same = 0;
    let mut total = 0;
    for (a, b) in ours.iter().zip(theirs) {
        total += 2 + b.audio.len();
        same += usize::from(a.sampled == b.sampled) + usize::from(a.text == b.text);
        same += a.audio.iter().zip(&b.audio).filter(|(x, y)| x == y).count();
    }
    let longer = ours.len().max(theirs.len());
    let shorter = ours.len().min(theirs.len());
    let width = theirs.first().map_or(0, |s| 2 + s.audio.len());
    (same, total + (longer - shorter) * width)
}
