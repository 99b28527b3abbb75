//! PersonaPlex (NVIDIA's Moshi fine-tune that takes a role text and a voice prompt):
//! its step loop and its prompt prefill, with the semantics of `LMGen.step` and
//! `LMGen.step_system_prompts` in NVIDIA's code (see shared FACTS, "PersonaPlex").
//!
//! The token history is a cache of `max_delay + 3` positions per stream, each with a
//! "provided" flag. A step at offset `o` writes the tokens it is given (forced) at
//! `o + delay`, runs the model on position `o - 1` and fills position `o` with what it
//! sampled wherever nothing was provided. Step 0 never runs the model. The depth
//! transformer also predicts the user's codebooks (`dep_q = 16`); forced tokens replace
//! its samples as the next codebook's input.

use crate::models::moshi::placed_lm::PlacedLm;
use crate::models::moshi::sampling::Samplers;
use moshi::candle::{IndexOp, Result, Tensor};

/// Agent audio for a silent frame, as NVIDIA's `SILENCE_TOKENS`.
pub const SILENCE_TOKENS: [u32; 8] = [948, 243, 1178, 546, 1736, 1030, 1978, 2008];
/// The user's stream during the prefill: a 440 Hz sine, as NVIDIA's `SINE_TOKENS`.
pub const SINE_TOKENS: [u32; 8] = [430, 1268, 381, 1611, 1095, 1495, 56, 472];
/// The text token forced while the voice prompt and the silences run.
pub const TEXT_PAD: u32 = 3;
/// 0.5 s of silence after the voice prompt and after the text prompt.
pub const SILENCE_FRAMES: usize = 6;
/// NVIDIA's delays: text and each stream's first codebook 0, the other codebooks 1.
pub const ACOUSTIC_DELAY: usize = 1;
/// Codebooks per audio stream.
pub const STREAM_CODEBOOKS: usize = 8;
const UNGENERATED: u32 = u32::MAX;

/// The role text as NVIDIA's server wraps it before encoding (unless already wrapped).
pub fn wrap_text_prompt(text: &str) -> String {
    let t = text.trim();
    if t.starts_with("<system>") && t.ends_with("<system>") {
        t.to_string()
    } else {
        format!("<system> {t} <system>")
    }
}

/// What one model step produced.
#[derive(Debug, Clone, PartialEq)]
pub struct PlexStep {
    /// The position this step completed (its offset).
    pub position: usize,
    /// The prefill phase this step belongs to; `None` in the conversation.
    pub phase: Option<Phase>,
    /// The text token sampled (kept only when nothing was forced).
    pub sampled_text: u32,
    /// Each depformer step's sample, `dep_q` of them.
    pub sampled_audio: Vec<u32>,
    /// The position's tokens once written: text then `dep_q` audio codebooks.
    pub column: Vec<u32>,
    /// Which of them were forced (given) rather than sampled.
    pub provided: Vec<bool>,
    /// The tokens of position `position - max_delay`, all streams aligned (text, then
    /// the agent's and the user's codebooks); `None` while the delays fill.
    pub aligned: Option<Vec<u32>>,
}

#[derive(Clone)]
pub struct PlexStepper {
    lm: PlacedLm,
    delays: Vec<usize>,
    initial: Vec<u32>,
    cache: Vec<Vec<u32>>,
    provided: Vec<Vec<bool>>,
    offset: usize,
}

impl PlexStepper {
    /// `text_initial` is the text vocabulary size (the start token), `audio_initial` the
    /// audio one (2048); `acoustic_delay` applies to codebooks 1.. of each stream.
    pub fn new(
        lm: PlacedLm,
        dep_q: usize,
        acoustic_delay: usize,
        text_initial: u32,
        audio_initial: u32,
    ) -> Self {
        let mut delays = vec![0];
        for q in 0..dep_q {
            delays.push(if q % STREAM_CODEBOOKS == 0 {
                0
            } else {
                acoustic_delay
            });
        }
        let mut initial = vec![text_initial];
        initial.resize(dep_q + 1, audio_initial);
        let ct = acoustic_delay + 3;
        Self {
            lm,
            cache: vec![vec![UNGENERATED; ct]; dep_q + 1],
            provided: vec![vec![false; ct]; dep_q + 1],
            delays,
            initial,
            offset: 0,
        }
    }

    pub fn offset(&self) -> usize {
        self.offset
    }

    pub fn max_delay(&self) -> usize {
        self.delays.iter().copied().max().unwrap_or(0)
    }

    fn ct(&self) -> usize {
        self.cache[0].len()
    }

    pub fn reset(&mut self) {
        self.lm.reset_state();
        for (c, p) in self.cache.iter_mut().zip(self.provided.iter_mut()) {
            c.fill(UNGENERATED);
            p.fill(false);
        }
        self.offset = 0;
    }

    fn force(&mut self, k: usize, token: u32) {
        let w = (self.offset + self.delays[k]) % self.ct();
        self.cache[k][w] = token;
        self.provided[k][w] = true;
    }

    /// Write the forced tokens at `offset + delay` and the initial tokens while the
    /// delays fill, as `LMGen.prepare_step_input`; false at step 0, which runs no model
    /// (and has moved on to step 1).
    fn prepare(&mut self, text: Option<u32>, agent: Option<&[u32]>, user: Option<&[u32]>) -> bool {
        let (o, ct) = (self.offset, self.ct());
        if let Some(u) = user {
            for (q, &t) in u.iter().enumerate().take(STREAM_CODEBOOKS) {
                self.force(1 + STREAM_CODEBOOKS + q, t);
            }
        }
        if let Some(a) = agent {
            for (q, &t) in a.iter().enumerate().take(STREAM_CODEBOOKS) {
                self.force(1 + q, t);
            }
        }
        if let Some(t) = text {
            self.force(0, t);
        }
        for k in 0..self.delays.len() {
            if o <= self.delays[k] {
                self.cache[k][o % ct] = self.initial[k];
                self.provided[k][o % ct] = true;
            }
        }
        if o == 0 {
            for k in 0..self.delays.len() {
                self.cache[k][0] = self.initial[k];
            }
            self.offset += 1;
            return false;
        }
        true
    }

    /// One step. `text`, `agent` and `user` are forced when given; returns `None` for
    /// step 0, which only lays the initial tokens.
    pub fn step(
        &mut self,
        text: Option<u32>,
        agent: Option<&[u32]>,
        user: Option<&[u32]>,
        samplers: &mut Samplers,
    ) -> Result<Option<PlexStep>> {
        if !self.prepare(text, agent, user) {
            return Ok(None);
        }
        let (o, ct) = (self.offset, self.ct());
        let (input, target) = ((o - 1) % ct, o % ct);
        let column_in: Vec<u32> = self.cache.iter().map(|c| c[input]).collect();
        if let Some(k) = column_in.iter().position(|&t| t == UNGENERATED) {
            moshi::candle::bail!("internal error: stream {k} ungenerated at step {o}")
        }
        let audio_in: Vec<Option<u32>> = column_in[1..].iter().map(|&t| Some(t)).collect();
        let (logits, ys) = self.lm.forward(Some(column_in[0]), &audio_in)?;
        let sampled_text = samplers.text.sample(&logits.i((0, 0))?)?;
        let next_text = if self.provided[0][target] {
            self.cache[0][target]
        } else {
            sampled_text
        };
        let forced: Vec<Option<u32>> = (1..self.delays.len())
            .map(|k| self.provided[k][target].then_some(self.cache[k][target]))
            .collect();
        let sampled_audio = self
            .lm
            .depformer_sample(&ys, Some(next_text), &forced, &mut samplers.audio)?
            .unwrap_or_default();
        for p in self.provided.iter_mut() {
            p[input] = false;
        }
        if !self.provided[0][target] {
            self.cache[0][target] = sampled_text;
        }
        for (q, &t) in sampled_audio.iter().enumerate() {
            if !self.provided[q + 1][target] {
                self.cache[q + 1][target] = t;
            }
        }
        Ok(Some(self.finish(sampled_text, sampled_audio)))
    }

    /// The step's record, once its position is written; moves on to the next.
    fn finish(&mut self, sampled_text: u32, sampled_audio: Vec<u32>) -> PlexStep {
        let (o, ct) = (self.offset, self.ct());
        let target = o % ct;
        let column = self.cache.iter().map(|c| c[target]).collect();
        let provided = self.provided.iter().map(|p| p[target]).collect();
        let max_delay = self.max_delay();
        let aligned = (o > max_delay).then(|| {
            self.delays
                .iter()
                .enumerate()
                .map(|(k, d)| self.cache[k][(o - max_delay + d) % ct])
                .collect()
        });
        self.offset += 1;
        PlexStep {
            position: o,
            phase: None,
            sampled_text,
            sampled_audio,
            column,
            provided,
            aligned,
        }
    }

    /// One voice step replayed from a precomputed input embedding (`[d_model]`), as
    /// `LMGen.step_embeddings`: every stream forced (text to PAD, audio to the initial
    /// token) until a step runs the model, which then reads the embedding instead of
    /// the cache. All its targets are forced, so nothing is sampled.
    pub fn step_embedding(&mut self, embedding: &Tensor) -> Result<PlexStep> {
        let dummy = self.initial[1..].to_vec();
        while !self.prepare(
            Some(TEXT_PAD),
            Some(&dummy[STREAM_CODEBOOKS..]),
            Some(&dummy[..STREAM_CODEBOOKS]),
        ) {}
        let (o, ct) = (self.offset, self.ct());
        let input = (o - 1) % ct;
        let d = embedding.elem_count();
        self.lm.forward_embedded(embedding.reshape((1, 1, d))?)?;
        for p in self.provided.iter_mut() {
            p[input] = false;
        }
        let text = self.cache[0][o % ct];
        Ok(self.finish(text, Vec::new()))
    }

    /// The LM's width: what a precomputed voice's embeddings must have.
    pub fn d_model(&self) -> usize {
        self.lm.d_model()
    }

    /// Why a cache of tokens could not be this model's (a text token past the text
    /// vocabulary, an audio token past the audio one), if so.
    pub fn check_tokens(&self, cache: &[Vec<Option<u32>>]) -> Option<String> {
        for (k, row) in cache.iter().enumerate() {
            let top = self.initial.get(k).copied().unwrap_or(0);
            if let Some(t) = row.iter().flatten().find(|&&t| t > top) {
                return Some(format!(
                    "token {t} in stream {k} of its cache is past this model's vocabulary ({top})"
                ));
            }
        }
        None
    }

    /// The token cache's shape: streams and positions (`1 + dep_q`, `max_delay + 3`).
    pub fn cache_shape(&self) -> (usize, usize) {
        (self.cache.len(), self.ct())
    }

    /// Replace the token cache's values (not its "provided" flags), as NVIDIA's code
    /// copies a precomputed voice's cache in after replaying its embeddings.
    pub fn load_cache(&mut self, cache: &[Vec<Option<u32>>]) {
        for (c, r) in self.cache.iter_mut().zip(cache) {
            for (v, t) in c.iter_mut().zip(r) {
                *v = t.unwrap_or(UNGENERATED);
            }
        }
    }
}

/// The prefill's phases, in order, with their step counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Voice,
    Silence,
    Text,
}

/// The forced inputs of every prefill step: voice frames (Mimi codes of the agent's
/// voice prompt), silence, the wrapped text prompt's tokens, silence.
pub fn prefill_schedule(voice: &[Vec<u32>], text: &[u32]) -> Vec<(Phase, u32, Vec<u32>)> {
    let mut s = Vec::new();
    for f in voice {
        s.push((Phase::Voice, TEXT_PAD, f.clone()));
    }
    for _ in 0..SILENCE_FRAMES {
        s.push((Phase::Silence, TEXT_PAD, SILENCE_TOKENS.to_vec()));
    }
    for &t in text {
        s.push((Phase::Text, t, SILENCE_TOKENS.to_vec()));
    }
    for _ in 0..SILENCE_FRAMES {
        s.push((Phase::Silence, TEXT_PAD, SILENCE_TOKENS.to_vec()));
    }
    s
}

/// A voice prompt as the prefill takes it.
#[derive(Debug, Clone)]
pub enum VoiceTokens {
    /// Mimi codes of the voice prompt's frames (8 per frame), forced as the agent's audio.
    Codes(Vec<Vec<u32>>),
    /// NVIDIA's precomputed voice: one input embedding per step (`[steps, d_model]`)
    /// and the token cache to copy in afterwards.
    Embedded {
        embeddings: Tensor,
        cache: Vec<Vec<Option<u32>>>,
    },
}

impl VoiceTokens {
    /// Prefill steps the voice takes (step 0, which runs no model, included).
    pub fn steps(&self) -> usize {
        match self {
            Self::Codes(c) => c.len(),
            Self::Embedded { embeddings, .. } => {
                embeddings.dims().first().copied().unwrap_or(0) + 1
            }
        }
    }
}

impl PlexStepper {
    /// Run the whole prefill from a reset; returns the steps that ran the model, each
    /// with its phase.
    pub fn prefill(
        &mut self,
        voice: &VoiceTokens,
        text: &[u32],
        samplers: &mut Samplers,
    ) -> Result<Vec<PlexStep>> {
        self.reset();
        let mut out = Vec::new();
        let codes: &[Vec<u32>] = match voice {
            VoiceTokens::Codes(c) => c,
            VoiceTokens::Embedded { embeddings, cache } => {
                for i in 0..embeddings.dims()[0] {
                    let mut s = self.step_embedding(&embeddings.get(i)?)?;
                    s.phase = Some(Phase::Voice);
                    out.push(s);
                }
                self.load_cache(cache);
                &[]
            }
        };
        for (phase, t, agent) in prefill_schedule(codes, text) {
            if let Some(mut s) = self.step(Some(t), Some(&agent), Some(&SINE_TOKENS), samplers)? {
                s.phase = Some(phase);
                out.push(s);
            }
        }
        Ok(out)
    }
}
