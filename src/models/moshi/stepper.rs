//! One LM step of full-duplex generation, like `moshi::lm_generate_multistream::State`
//! but with a ring of token rows instead of a history sized up front.
//!
//! Kyutai's `State` allocates `max_step_idx` rows and fails with "max step-idx reached":
//! that is the five-minute wall of their clients. The transformer's own KV cache is
//! already a rotating buffer of `context` steps, so with the token history kept as a ring
//! of `acoustic_delay + 2` rows, generation runs for ever in flat memory. The step logic
//! (which codebook reads which row, the forced pad tokens before the delay) is the same
//! as `State::step_`; a test checks both produce the same tokens.
//!
//! The token bookkeeping (`Tokens`) is apart from the LM so that a batched LM
//! (`batched`) keeps one per slot and steps them through the same code.

use super::placed_lm::PlacedLm;
use super::sampling::Samplers;
use moshi::candle::{IndexOp, Result, Tensor};
use moshi::lm::ForcedAudioTokens;
use moshi::lm_generate_multistream::{Config, UNGENERATED};

/// One conversation's token history: what its next step feeds the LM, and where the
/// step's sampled tokens go.
pub struct Tokens {
    cfg: Config,
    rows: Vec<Vec<u32>>,
    step_idx: usize,
    prev_text: u32,
    forced: ForcedAudioTokens,
}

impl Tokens {
    pub fn new(cfg: Config) -> Self {
        let rows = vec![vec![UNGENERATED; cfg.total_audio_codebooks()]; cfg.acoustic_delay + 2];
        let forced = ForcedAudioTokens::new(
            cfg.acoustic_delay,
            cfg.audio_pad_token(),
            &[cfg.generated_audio_codebooks, cfg.input_audio_codebooks],
        );
        let prev_text = cfg.text_start_token;
        Self {
            cfg,
            rows,
            step_idx: 0,
            prev_text,
            forced,
        }
    }

    pub fn config(&self) -> &Config {
        &self.cfg
    }

    pub fn step_idx(&self) -> usize {
        self.step_idx
    }

    pub fn reset(&mut self) {
        for row in self.rows.iter_mut() {
            row.fill(UNGENERATED);
        }
        self.step_idx = 0;
        self.prev_text = self.cfg.text_start_token;
    }

    fn row(&self, step: usize) -> &Vec<u32> {
        &self.rows[step % self.rows.len()]
    }

    fn row_mut(&mut self, step: usize) -> &mut Vec<u32> {
        let n = self.rows.len();
        &mut self.rows[step % n]
    }

    /// Record the user's codes for this frame; returns the LM's inputs: the previous
    /// text token and one token per audio codebook.
    pub fn inputs(&mut self, input_codes: &[u32]) -> Result<(u32, Vec<Option<u32>>)> {
        let (s, delay, gen) = (
            self.step_idx,
            self.cfg.acoustic_delay,
            self.cfg.generated_audio_codebooks,
        );
        let pad = self.cfg.audio_pad_token();
        // Row s last held step s - (delay + 2), which nothing reads any more.
        self.row_mut(s).fill(UNGENERATED);
        for (c, &t) in input_codes
            .iter()
            .take(self.cfg.input_audio_codebooks)
            .enumerate()
        {
            self.row_mut(s)[gen + c] = t;
        }
        let mut codes = Vec::with_capacity(self.cfg.total_audio_codebooks());
        for cb in 0..self.cfg.total_audio_codebooks() {
            let t = if cb == 0 || cb == gen {
                if s == 0 {
                    pad
                } else {
                    self.row(s - 1)[cb]
                }
            } else if s <= delay {
                pad
            } else {
                self.row(s - delay - 1)[cb]
            };
            if t == UNGENERATED {
                moshi::candle::bail!("internal error: codebook {cb} ungenerated at step {s}")
            }
            codes.push(Some(t));
        }
        Ok((self.prev_text, codes))
    }

    /// The audio tokens the depformer must take as given this step.
    pub fn forced(&self) -> &[Option<u32>] {
        self.forced.forced_tokens(self.step_idx)
    }

    /// Sample this step's tokens from the LM's outputs for this conversation (text
    /// logits `[1, 1, vocab]` and hidden state `[1, 1, d_model]`) and record them.
    pub fn sample(
        &mut self,
        lm: &mut PlacedLm,
        logits: &Tensor,
        ys: &Tensor,
        samplers: &mut Samplers,
    ) -> Result<u32> {
        let text = samplers.text.sample(&logits.i((0, 0))?)?;
        let audio = lm.depformer_sample(ys, Some(text), self.forced(), &mut samplers.audio)?;
        self.finish(text, audio.as_deref());
        Ok(text)
    }

    fn finish(&mut self, text: u32, audio: Option<&[u32]>) {
        let (s, delay, gen) = (
            self.step_idx,
            self.cfg.acoustic_delay,
            self.cfg.generated_audio_codebooks,
        );
        let pad = self.cfg.audio_pad_token();
        for c in 0..gen {
            let at = if c == 0 { s } else { s.saturating_sub(delay) };
            self.row_mut(at)[c] = audio.map_or(pad, |a| a[c]);
        }
        self.prev_text = text;
        self.step_idx += 1;
    }

    /// The model's own codes completed by the last step, or `None` while the acoustic
    /// delay fills (or when a code is the pad token).
    pub fn last_audio_tokens(&self) -> Option<&[u32]> {
        let delay = self.cfg.acoustic_delay;
        if self.step_idx <= delay {
            return None;
        }
        let row = &self.row(self.step_idx - delay - 1)[..self.cfg.generated_audio_codebooks];
        if row
            .iter()
            .any(|&v| v as usize >= self.cfg.audio_vocab_size - 1)
        {
            None
        } else {
            Some(row)
        }
    }
}

pub struct Stepper {
    lm: PlacedLm,
    tokens: Tokens,
}

impl Stepper {
    pub fn new(lm: PlacedLm, cfg: Config) -> Self {
        Self {
            lm,
            tokens: Tokens::new(cfg),
        }
    }

    /// A stepper on the same weights with a state of its own. The KV caches are reset,
    /// not shared: candle's caches write into their buffers in place.
    pub fn fork(&self) -> Self {
        let mut lm = self.lm.clone();
        lm.reset_state();
        Self::new(lm, self.tokens.config().clone())
    }

    pub fn config(&self) -> &Config {
        self.tokens.config()
    }

    pub fn step_idx(&self) -> usize {
        self.tokens.step_idx()
    }

    pub fn reset(&mut self) {
        self.lm.reset_state();
        self.tokens.reset();
    }

    /// Feed the user's codes for this frame; returns the text token sampled.
    pub fn step(&mut self, input_codes: &[u32], samplers: &mut Samplers) -> Result<u32> {
        self.step_logits(input_codes, samplers).map(|(t, _)| t)
    }

    /// As `step`, also returning the text logits (`[vocab]`), for equality checks.
    pub fn step_logits(
        &mut self,
        input_codes: &[u32],
        samplers: &mut Samplers,
    ) -> Result<(u32, Tensor)> {
        let (prev_text, codes) = self.tokens.inputs(input_codes)?;
        let (logits, ys) = self.lm.forward(Some(prev_text), &codes)?;
        let text = self.tokens.sample(&mut self.lm, &logits, &ys, samplers)?;
        Ok((text, logits.i((0, 0))?))
    }

    /// The model's own codes completed by the last step, or `None` while the acoustic
    /// delay fills (or when a code is the pad token).
    pub fn last_audio_tokens(&self) -> Option<&[u32]> {
        self.tokens.last_audio_tokens()
    }
}
