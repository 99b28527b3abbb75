//! One Whisper transcription of a stretch of audio: the log-mel of just that stretch
//! (not padded to 30 s, as whisper.cpp's `audio_ctx` does, so a 2 s window costs a
//! fifteenth of a full one), the encoder, then greedy decoding without timestamps.

use super::mel::{Mel, SAMPLE_RATE};
use super::model::Whisper;
use super::tokens::WhisperTokens;
use anyhow::Result;
use candle_transformers::models::whisper::Config;
use moshi::candle::{Device, Tensor, D};

/// What the model made of a window.
#[derive(Debug, Clone, PartialEq)]
pub struct Hypothesis {
    pub text: String,
    /// The model's probability that the window holds no speech (its `<|nospeech|>`
    /// token at the first position), when the vocabulary has that token.
    pub no_speech: Option<f32>,
    pub tokens: usize,
    /// Milliseconds in the mel and encoder, and in decoding.
    pub encode_ms: f64,
    pub decode_ms: f64,
}

/// See `Transcriber::pad_s`.
pub const DEFAULT_PAD_S: f32 = 2.0;

pub struct Transcriber {
    model: Whisper,
    mel: Mel,
    pub tokens: WhisperTokens,
    /// 0 or -inf per vocabulary entry: what greedy decoding may never pick.
    suppress: Tensor,
    /// Also barred at the first position (a leading space, an empty transcript).
    begin_suppress: Tensor,
    device: Device,
    n_mels: usize,
    max_frames: usize,
    /// Seconds of silence put after each window: Whisper, trained on 30 s windows that
    /// end in padding, repeats itself on a window that stops at the speech.
    pub pad_s: f32,
}

impl Transcriber {
    pub fn new(
        model: Whisper,
        tokens: WhisperTokens,
        begin_suppress: &[u32],
        device: &Device,
    ) -> Result<Self> {
        let cfg: &Config = &model.config;
        let vocab = cfg.vocab_size;
        let mut mask = vec![0f32; vocab];
        for (id, m) in mask.iter_mut().enumerate() {
            // Specials other than the end (languages, tasks, timestamps) never appear
            // in a transcript without timestamps.
            if id as u32 > tokens.eot {
                *m = f32::NEG_INFINITY;
            }
        }
        for &id in &cfg.suppress_tokens {
            if let Some(m) = mask.get_mut(id as usize) {
                *m = f32::NEG_INFINITY;
            }
        }
        let mut begin = mask.clone();
        for &id in begin_suppress.iter().chain([tokens.eot].iter()) {
            if let Some(m) = begin.get_mut(id as usize) {
                *m = f32::NEG_INFINITY;
            }
        }
        Ok(Self {
            n_mels: cfg.num_mel_bins,
            max_frames: cfg.max_source_positions * 2,
            pad_s: DEFAULT_PAD_S,
            suppress: Tensor::new(mask.as_slice(), device)?,
            begin_suppress: Tensor::new(begin.as_slice(), device)?,
            mel: Mel::new(cfg.num_mel_bins)?,
            model,
            tokens,
            device: device.clone(),
        })
    }

    pub fn config(&self) -> &Config {
        &self.model.config
    }

    /// Greedy transcription of `pcm` (16 kHz mono; the last 30 s if longer).
    pub fn transcribe(&mut self, pcm: &[f32]) -> Result<Hypothesis> {
        let h = self.transcribe_unless(pcm, &|| false)?;
        h.ok_or_else(|| anyhow::anyhow!("stopped without being asked to"))
    }

    /// As `transcribe`, but `None` as soon as `stop` returns true (checked between the
    /// encoder's layers and between tokens): a newer job has come.
    pub fn transcribe_unless(
        &mut self,
        pcm: &[f32],
        stop: &dyn Fn() -> bool,
    ) -> Result<Option<Hypothesis>> {
        let max = self.max_frames * super::mel::HOP;
        let pcm = &pcm[pcm.len().saturating_sub(max)..];
        // The encoder's convolutions need a few frames.
        let mut padded;
        let pcm = if pcm.len() < SAMPLE_RATE / 10 {
            padded = pcm.to_vec();
            padded.resize(SAMPLE_RATE / 10, 0.0);
            &padded[..]
        } else {
            pcm
        };
        let mut with_pad;
        let pcm = if self.pad_s > 0.0 {
            with_pad = pcm.to_vec();
            with_pad.resize(pcm.len() + (self.pad_s * SAMPLE_RATE as f32) as usize, 0.0);
            &with_pad[..]
        } else {
            pcm
        };
        let t0 = std::time::Instant::now();
        let frames = Mel::frames(pcm.len());
        let mel = self
            .mel
            .compute_tensor(pcm)?
            .reshape((1, self.n_mels, frames))?
            .to_device(&self.device)?;
        let Some(audio) = self.model.encoder.forward(&mel, stop)? else {
            return Ok(None);
        };
        let t1 = std::time::Instant::now();
        let seconds = pcm.len() as f64 / SAMPLE_RATE as f64;
        // About 3 words a second at most, a word or two of tokens each.
        let prompt = self.tokens.prompt();
        let max_tokens = ((8.0 + seconds * 8.0) as usize).min(
            self.model
                .decoder
                .max_positions()
                .saturating_sub(prompt.len() + 1),
        );
        let mut ids = prompt.clone();
        let decoder = &mut self.model.decoder;
        decoder.start(&audio)?;
        let hidden = decoder.forward(&prompt)?.squeeze(0)?;
        let no_speech = match self.tokens.no_speech {
            Some(ns) => {
                // OpenAI's no-speech probability: at the start-of-transcript position.
                let first = decoder.logits(&hidden.get(0)?)?;
                let p = moshi::candle_nn::ops::softmax(&first, D::Minus1)?;
                Some(p.get(ns as usize)?.to_scalar::<f32>()?)
            }
            None => None,
        };
        let mut last = hidden.get(hidden.dim(0)? - 1)?;
        for i in 0..max_tokens {
            if stop() {
                return Ok(None);
            }
            let logits = decoder.logits(&last)?;
            let mask = if i == 0 {
                &self.begin_suppress
            } else {
                &self.suppress
            };
            let next = (logits + mask)?.argmax(D::Minus1)?.to_scalar::<u32>()?;
            if next == self.tokens.eot {
                break;
            }
            ids.push(next);
            if let Some(cut) = repeated_tail(&ids[prompt.len()..]) {
                // Whisper's loop on a window it thinks is unfinished: keep one copy.
                ids.truncate(prompt.len() + cut);
                break;
            }
            last = decoder.forward(&[next])?.squeeze(0)?.get(0)?;
        }
        Ok(Some(Hypothesis {
            text: self.tokens.decode(&ids[prompt.len()..]),
            no_speech,
            tokens: ids.len() - prompt.len(),
            encode_ms: (t1 - t0).as_secs_f64() * 1000.0,
            decode_ms: t1.elapsed().as_secs_f64() * 1000.0,
        }))
    }
}

/// Where a transcript starts repeating itself: its last `n` tokens (4 or more) equal
/// the `n` before them, or one token came four times in a row. The length to keep.
pub fn repeated_tail(ids: &[u32]) -> Option<usize> {
    let len = ids.len();
    if len >= 4 && ids[len - 4..].iter().all(|&t| t == ids[len - 1]) {
        return Some(len - 3);
    }
    (4..=len / 2).find_map(|n| (ids[len - n..] == ids[len - 2 * n..len - n]).then_some(len - n))
}

#[cfg(test)]
mod tests {
    use super::repeated_tail;

    #[test]
    fn a_repeated_phrase_or_token_is_cut_to_one_copy() {
        assert_eq!(repeated_tail(&[1, 2, 3, 4, 5, 6, 7]), None);
        assert_eq!(repeated_tail(&[9, 1, 2, 3, 4, 1, 2, 3, 4]), Some(5));
        assert_eq!(repeated_tail(&[9, 5, 5, 5, 5]), Some(2));
        // Short repeats are words ("no, no"), not loops.
        assert_eq!(repeated_tail(&[1, 2, 1, 2]), None);
    }
}
