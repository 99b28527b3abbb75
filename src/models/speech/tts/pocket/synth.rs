//! Speaking one chunk of text, as `TTSModel._generate_audio_stream_short_text` does:
//! the flow LM starts from the voice's cache, reads the chunk's tokens, then makes one
//! latent per 80 ms frame from the start-of-speech embedding on, each decoded by a
//! fresh codec decoder at once; it stops a few frames after the end-of-speech logit
//! crosses the threshold (not before the sixth frame), or at a length bound from
//! the token count.

use super::codec::Decoder;
use super::flow_head::noise;
use super::flow_lm::FlowLm;
use super::model::PocketModel;
use super::text;
use super::transformer::Cache;
use super::voice::Voice;
use anyhow::Result;
use moshi::candle::Tensor;
use rand::SeedableRng;

/// `TTSModel._MIN_FRAMES_BEFORE_EOS`.
const MIN_FRAMES_BEFORE_EOS: usize = 6;
/// `_TOKENS_PER_SECOND_ESTIMATE` and `_GEN_SECONDS_PADDING`: the length bound.
const TOKENS_PER_SECOND: f64 = 3.0;
const PADDING_SECONDS: f64 = 2.0;

/// How Pocket TTS samples: the package's generation parameters.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PocketSampling {
    /// Scales the flow's noise (std = sqrt(temperature)); 0 is deterministic. `None`:
    /// the model's `default_temperature` (0.3).
    pub temperature: Option<f64>,
    /// LSD (or flow-matching) steps per latent; the package's default is 1.
    pub decode_steps: usize,
    /// End of speech once the EOS logit exceeds this. `None`: the model's
    /// `default_eos_threshold` (-4 for the default model, -1 for 18M).
    pub eos_threshold: Option<f64>,
    /// Clamp of the noise (`noise_clamp`, off by default).
    pub noise_clamp: Option<f64>,
    /// Each chunk's noise starts from this seed.
    pub seed: u64,
    /// End each chunk's speech after this many frames a word, as if the EOS head had
    /// fired then: random weights never say so, and a bench's replies would otherwise
    /// all run to the length bound (tokens / 3 s + 2 s a chunk, and a random model's
    /// tokenizer may cut a word into letters). `None`: only the EOS head ends a chunk.
    pub scripted_frames_per_word: Option<f64>,
}

impl Default for PocketSampling {
    fn default() -> Self {
        Self {
            temperature: None,
            decode_steps: 1,
            eos_threshold: None,
            noise_clamp: None,
            seed: 299_792_458,
            scripted_frames_per_word: None,
        }
    }
}

/// One chunk being spoken.
pub struct ChunkRun {
    cache: Cache,
    decoder: Decoder,
    previous: Option<Tensor>,
    step: usize,
    max_len: usize,
    /// The frame the scripted end of speech falls on, if scripted.
    scripted_eos: Option<usize>,
    after_eos: usize,
    eos_step: Option<usize>,
    rng: rand::rngs::StdRng,
    temperature: f64,
    eos_threshold: f64,
    decode_steps: usize,
    noise_clamp: Option<f64>,
    /// Words of the chunk (for `words_started`).
    pub words: usize,
    /// The latents made so far (normalised, as the LM reads them), when recording.
    pub latents: Option<Vec<Vec<f32>>>,
    finished: bool,
}

impl ChunkRun {
    /// Prompt the LM with `chunk` (raw text: prepared here). `None` for empty text.
    pub fn start(
        model: &PocketModel,
        lm: &FlowLm,
        voice: &Voice,
        chunk: &str,
        s: &PocketSampling,
    ) -> Result<Option<Self>> {
        let Some((prompt, after_eos)) = text::prepare(chunk, &model.cfg) else {
            return Ok(None);
        };
        let tokens = model.tokenizer.encode(&prompt);
        if tokens.is_empty() {
            return Ok(None);
        }
        let mut cache = voice.cache.clone();
        lm.prompt(&lm.text_embeddings(&tokens)?, &mut cache)?;
        let secs = tokens.len() as f64 / TOKENS_PER_SECOND + PADDING_SECONDS;
        let max_len = (secs * model.cfg.mimi.frame_rate).ceil() as usize;
        let mut decoder = model.decoder.clone();
        decoder.reset();
        Ok(Some(Self {
            cache,
            decoder,
            previous: None,
            step: 0,
            max_len,
            scripted_eos: s.scripted_frames_per_word.map(|r| {
                let words = chunk.split_whitespace().count();
                ((words as f64 * r).ceil() as usize).max(MIN_FRAMES_BEFORE_EOS)
            }),
            after_eos: model
                .cfg
                .model_recommended_frames_after_eos
                .unwrap_or(after_eos),
            eos_step: None,
            rng: rand::rngs::StdRng::seed_from_u64(s.seed),
            temperature: s.temperature.unwrap_or(model.cfg.default_temperature),
            eos_threshold: s.eos_threshold.unwrap_or(model.cfg.default_eos_threshold),
            decode_steps: s.decode_steps.max(1),
            noise_clamp: s.noise_clamp,
            words: chunk.split_whitespace().count(),
            latents: None,
            finished: false,
        }))
    }

    /// Frames made so far.
    pub fn frames(&self) -> usize {
        self.step
    }

    /// The next frame of audio, or `None` once the chunk is over.
    pub fn next(&mut self, lm: &FlowLm) -> Result<Option<Vec<f32>>> {
        if self.finished || self.step >= self.max_len {
            if !self.finished && self.eos_step.is_none() {
                tracing::warn!(
                    "pocket-tts: {} frames without an end of speech; the chunk is cut",
                    self.max_len
                );
            }
            self.finished = true;
            return Ok(None);
        }
        let z = noise(
            &mut self.rng,
            lm.ldim,
            self.temperature,
            self.noise_clamp,
            &lm.emb_std.device().clone(),
        )?;
        let out = lm.step(
            &mut self.cache,
            self.previous.as_ref(),
            &z,
            self.decode_steps,
        )?;
        let scripted = self.scripted_eos.is_some_and(|n| self.step >= n);
        if (scripted || out.eos_logit as f64 > self.eos_threshold)
            && self.eos_step.is_none()
            && self.step >= MIN_FRAMES_BEFORE_EOS
        {
            self.eos_step = Some(self.step);
        }
        if self
            .eos_step
            .is_some_and(|e| self.step >= e + self.after_eos)
        {
            self.finished = true;
            return Ok(None);
        }
        if let Some(l) = &mut self.latents {
            l.push(out.latent.flatten_all()?.to_vec1::<f32>()?);
        }
        let pcm = self.decoder.decode(&lm.denormalise(&out.latent)?)?;
        self.previous = Some(out.latent);
        self.step += 1;
        Ok(Some(pcm))
    }
}

/// All of `text` at once, as `TTSModel.generate_audio` makes it: the audio and each
/// chunk's latents (for comparisons with the package).
pub struct Generated {
    pub audio: Vec<f32>,
    pub latents: Vec<Vec<Vec<f32>>>,
    pub chunks: Vec<String>,
}

pub fn generate(
    model: &PocketModel,
    lm: &FlowLm,
    voice: &Voice,
    text: &str,
    s: &PocketSampling,
) -> Result<Generated> {
    let chunks = text::split_chunks(
        &model.tokenizer,
        text,
        text::MAX_TOKENS_PER_CHUNK,
        &model.cfg,
    );
    let mut g = Generated {
        audio: Vec::new(),
        latents: Vec::new(),
        chunks: chunks.clone(),
    };
    for c in &chunks {
        let Some(mut run) = ChunkRun::start(model, lm, voice, c, s)? else {
            continue;
        };
        run.latents = Some(Vec::new());
        while let Some(pcm) = run.next(lm)? {
            g.audio.extend(pcm);
        }
        g.latents.push(run.latents.take().unwrap_or_default());
    }
    Ok(g)
}
