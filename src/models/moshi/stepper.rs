//! One LM step of full-duplex generation, like `moshi::lm_generate_multistream::State`
//! but with a ring of token rows instead of a history sized up front.
//!
//! Kyutai's `State` allocates `max_step_idx` rows and fails with "max step-idx reached":
//! that is the five-minute wall of their clients. The transformer's own KV cache is
//! already a rotating buffer of `context` steps, so with the token history kept as a ring
//! of `acoustic_delay + 2` rows, generation runs for ever in flat memory. The step logic
//! (which codebook reads which row, the forced pad tokens before the delay) is the same
//! as `State::step_`; a test checks both produce the same tokens.

use super::placed_lm::PlacedLm;
use super::sampling::Samplers;
use moshi::candle::{IndexOp, Result};
use moshi::lm::ForcedAudioTokens;
use moshi::lm_generate_multistream::{Config, UNGENERATED};

pub struct Stepper {
    lm: PlacedLm,
    cfg: Config,
    rows: Vec<Vec<u32>>,
    step_idx: usize,
    prev_text: u32,
    forced: ForcedAudioTokens,
}

impl Stepper {
    pub fn new(lm: PlacedLm, cfg: Config) -> Self {
        let rows = vec![vec![UNGENERATED; cfg.total_audio_codebooks()]; cfg.acoustic_delay + 2];
        let forced = ForcedAudioTokens::new(
            cfg.acoustic_delay,
            cfg.audio_pad_token(),
            &[cfg.generated_audio_codebooks, cfg.input_audio_codebooks],
        );
        let prev_text = cfg.text_start_token;
        Self {
            lm,
            cfg,
            rows,
            step_idx: 0,
            prev_text,
            forced,
        }
    }

    /// A stepper on the same weights with a state of its own. The KV caches are reset,
    /// not shared: candle's caches write into their buffers in place.
    pub fn fork(&self) -> Self {
        let mut lm = self.lm.clone();
        lm.reset_state();
        Self::new(lm, self.cfg.clone())
    }

    pub fn config(&self) -> &Config {
        &self.cfg
    }

    pub fn step_idx(&self) -> usize {
        self.step_idx
    }

    pub fn reset(&mut self) {
        self.lm.reset_state();
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

    /// Feed the user's codes for this frame; returns the text token sampled.
    pub fn step(&mut self, input_codes: &[u32], samplers: &mut Samplers) -> Result<u32> {
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
        let (logits, ys) = self.lm.forward(Some(self.prev_text), &codes)?;
        let text = samplers.text.sample(&logits.i((0, 0))?)?;
        let audio = self.lm.depformer_sample(
            &ys,
            Some(text),
            self.forced.forced_tokens(s),
            &mut samplers.audio,
        )?;
        for c in 0..gen {
            let at = if c == 0 { s } else { s.saturating_sub(delay) };
            self.row_mut(at)[c] = audio.as_ref().map_or(pad, |a| a[c]);
        }
        self.prev_text = text;
        self.step_idx += 1;
        Ok(text)
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
