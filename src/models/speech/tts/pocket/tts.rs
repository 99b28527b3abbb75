//! Pocket TTS as the cascade's streaming synthesiser. The LLM's reply comes in as it
//! is written; it is spoken chunk by chunk, each chunk from the voice state afresh, as
//! the package does. A chunk is one or more whole sentences (up to 50 tokens), or,
//! while a sentence is still being written and nothing is playing, its first words up
//! to a comma once there are `eager_words` of them: the first audio does not wait for
//! the end of a long first sentence, at the price of a sentence-like pause there.
//! Each `step` makes at most one latent (one 80 ms frame) and decodes it at once.

use super::files::{self, PocketOptions, VoiceSource};
use super::flow_lm::FlowLm;
use super::model::PocketModel;
use super::synth::{ChunkRun, PocketSampling};
use super::text;
use super::voice::{self, Voice};
use crate::models::moshi::ModelLoadError;
use crate::models::parts::{TextToSpeech, TtsStep};
use anyhow::{Context, Result};
use moshi::candle::Device;
use std::collections::VecDeque;
use std::path::{Path, PathBuf};

const FRAME: usize = 1920;
/// Default `eager_words`: the first phrase to a comma ("Sure,") is spoken at once;
/// in the 10-minute CPU bench the user waited p50 1.30 s instead of 1.79 s with 4.
pub const EAGER_WORDS: usize = 1;
/// Without any punctuation, speak after this many words anyway.
const RUN_ON_WORDS: usize = 20;
/// An estimate of speech rate for `words_started` (the model gives no alignment):
/// a word every 5 frames (0.4 s, 150 words a minute).
const FRAMES_PER_WORD: usize = 5;

pub struct PocketTts {
    model: PocketModel,
    /// The LM that runs: the model's, or its q8 copy.
    lm: FlowLm,
    voice: Voice,
    dir: Option<PathBuf>,
    sampling: PocketSampling,
    eager_words: usize,
    utt: Option<Utterance>,
}

#[derive(Default)]
struct Utterance {
    /// Text not yet put in a chunk.
    pending: String,
    /// Chunks ready to speak.
    queue: VecDeque<String>,
    finished: bool,
    run: Option<ChunkRun>,
    /// Words of the chunks before the current one.
    words_before: usize,
    words_started: usize,
    out: VecDeque<f32>,
    /// Chunks started (for the trade-off figures).
    chunks: usize,
}

/// Where the last sentence end of `s` is followed by whitespace (so it is not "3.5" or
/// an unfinished "..."): the byte offset after the mark and any closing quotes.
fn sentence_end(s: &str) -> Option<usize> {
    let chars: Vec<(usize, char)> = s.char_indices().collect();
    let mut found = None;
    for (i, &(_, c)) in chars.iter().enumerate() {
        if !".!?\u{2026}".contains(c) {
            continue;
        }
        let mut j = i + 1;
        while j < chars.len() && "\"'\u{201d}\u{2019})]\u{bb}".contains(chars[j].1) {
            j += 1;
        }
        if j < chars.len() && chars[j].1.is_whitespace() {
            found = Some(chars[j].0);
        }
    }
    found
}

/// The first words of an unfinished sentence to speak now: up to the last clause mark
/// that ends a complete word at or after word `min`, or every complete word after
/// `RUN_ON_WORDS` of them. The byte offset where they end.
fn eager_cut(s: &str, min: usize) -> Option<usize> {
    if min == 0 {
        return None;
    }
    // Complete words: each followed by whitespace.
    let mut words = 0;
    let mut cut = None;
    let mut last_word_end = None;
    let mut prev: Option<(usize, char)> = None;
    for (i, c) in s.char_indices() {
        if c.is_whitespace() {
            if let Some((pi, pc)) = prev.filter(|(_, pc)| !pc.is_whitespace()) {
                words += 1;
                last_word_end = Some(pi + pc.len_utf8());
                if words >= min && ",;:\u{2013}\u{2014}".contains(pc) {
                    cut = last_word_end;
                }
            }
        }
        prev = Some((i, c));
    }
    // A clause mark ending the text so far ends its word too: "Sure," is spoken
    // without waiting for the token after it. Not after a digit ("3," may be "3,500").
    let mut tail = s.chars().rev();
    if let (Some(mark), Some(before)) = (tail.next(), tail.next()) {
        if ",;:\u{2013}\u{2014}".contains(mark)
            && !before.is_whitespace()
            && !before.is_ascii_digit()
            && words + 1 >= min
        {
            cut = Some(s.len());
        }
    }
    cut.or(if words >= RUN_ON_WORDS {
        last_word_end
    } else {
        None
    })
}

impl PocketTts {
    pub fn new(model: PocketModel, voice: Voice, q8: bool) -> Result<Self> {
        let lm = if q8 {
            model.lm.quantized()?
        } else {
            model.lm.clone()
        };
        Ok(Self {
            model,
            lm,
            voice,
            dir: None,
            sampling: PocketSampling::default(),
            eager_words: EAGER_WORDS,
            utt: None,
        })
    }

    /// Find the model and its voice as `opts` say (directory, HF cache, download), and
    /// load them. Call it on the thread that steps it.
    pub fn open(
        opts: &PocketOptions,
        disc: &crate::models::moshi::Discovery,
        device: &Device,
        progress: &mut dyn FnMut(crate::bus::LoadProgress),
        cancel: &crate::bus::Cancel,
    ) -> Result<Self, ModelLoadError> {
        let dir = files::find_dir(opts, disc, progress, cancel)?;
        let source = files::find_voice(&dir, opts.voice.as_deref(), opts, disc, progress, cancel)?;
        crate::models::speech::files::reading(&dir, super::model::WEIGHTS_FILE, progress, cancel)?;
        let hint = opts.model_dir.is_none().then_some(opts.model.as_str());
        Self::load(&dir, hint, source, opts, device)
    }

    /// Load the model in `dir` with the voice `source`.
    pub fn load(
        dir: &Path,
        hint: Option<&str>,
        source: VoiceSource,
        opts: &PocketOptions,
        device: &Device,
    ) -> Result<Self, ModelLoadError> {
        let model = PocketModel::load(dir, hint, device)?;
        let voice = load_voice(&model, &source).map_err(|e| {
            ModelLoadError::new(
                format!("{e:#}"),
                format!(
                    "use a predefined voice ({}) or a voice-state .safetensors file of this model",
                    voice::PREDEFINED.join(", ")
                ),
            )
        })?;
        let mut t = Self::new(model, voice, opts.q8).map_err(|e| {
            ModelLoadError::new(
                format!("quantizing the flow LM: {e:#}"),
                "run without --tts-q8",
            )
        })?;
        t.dir = Some(dir.to_path_buf());
        t.sampling = opts.sampling;
        t.eager_words = opts.eager_words;
        Ok(t)
    }

    pub fn set_sampling(&mut self, s: PocketSampling) {
        self.sampling = s;
    }

    pub fn set_eager_words(&mut self, n: usize) {
        self.eager_words = n;
    }

    pub fn model(&self) -> &PocketModel {
        &self.model
    }

    pub fn lm(&self) -> &FlowLm {
        &self.lm
    }

    pub fn voice(&self) -> &Voice {
        &self.voice
    }

    /// Chunks the current utterance has started so far.
    pub fn chunks_started(&self) -> usize {
        self.utt.as_ref().map_or(0, |u| u.chunks)
    }

    /// The next chunk of text to speak, if there is one yet.
    fn next_chunk(&self, u: &mut Utterance) -> Option<String> {
        if let Some(c) = u.queue.pop_front() {
            return Some(c);
        }
        let (m, cfg) = (&self.model, &self.model.cfg);
        let split = |t: &str| text::split_chunks(&m.tokenizer, t, text::MAX_TOKENS_PER_CHUNK, cfg);
        if u.finished {
            let all = std::mem::take(&mut u.pending);
            u.queue.extend(split(&all));
            return u.queue.pop_front();
        }
        let end = sentence_end(&u.pending).or_else(|| eager_cut(&u.pending, self.eager_words))?;
        let done: String = u.pending.drain(..end).collect();
        u.pending = u.pending.trim_start().to_string();
        u.queue.extend(split(&done));
        u.queue.pop_front()
    }

    fn run(&mut self, out: &mut [f32]) -> Result<TtsStep> {
        let Some(mut u) = self.utt.take() else {
            return Ok(TtsStep::Done);
        };
        let r = self.run_utterance(&mut u, out);
        self.utt = Some(u);
        r
    }

    fn run_utterance(&self, u: &mut Utterance, out: &mut [f32]) -> Result<TtsStep> {
        loop {
            if u.out.len() >= FRAME {
                for (o, s) in out.iter_mut().zip(u.out.drain(..FRAME)) {
                    *o = s;
                }
                return Ok(TtsStep::Audio {
                    words_started: u.words_started,
                });
            }
            if let Some(run) = &mut u.run {
                match run.next(&self.lm)? {
                    Some(pcm) => {
                        let spoken =
                            (run.frames().saturating_sub(1) / FRAMES_PER_WORD + 1).min(run.words);
                        u.words_started = u.words_started.max(u.words_before + spoken);
                        u.out.extend(pcm);
                    }
                    None => {
                        u.words_before += run.words;
                        u.words_started = u.words_started.max(u.words_before);
                        u.run = None;
                    }
                }
                continue;
            }
            if let Some(chunk) = self.next_chunk(u) {
                u.run =
                    ChunkRun::start(&self.model, &self.lm, &self.voice, &chunk, &self.sampling)?;
                if u.run.is_some() {
                    u.chunks += 1;
                }
                continue;
            }
            if !u.out.is_empty() && u.finished && u.pending.trim().is_empty() {
                let n = u.out.len();
                for (o, s) in out.iter_mut().zip(u.out.drain(..n)) {
                    *o = s;
                }
                return Ok(TtsStep::Audio {
                    words_started: u.words_started,
                });
            }
            return Ok(if u.finished && u.queue.is_empty() {
                TtsStep::Done
            } else {
                TtsStep::Waiting
            });
        }
    }
}

/// Pocket's voices are plain names (`alba`, `marius`, …) or files; a repository path
/// such as Kyutai's `expresso/….wav` that is no file here is another synthesiser's.
fn pocket_kind(voice: &str) -> bool {
    std::path::Path::new(voice).is_file() || !(voice.contains('/') || voice.contains('.'))
}

/// Read a voice for `model`.
pub fn load_voice(model: &PocketModel, source: &VoiceSource) -> Result<Voice> {
    match source {
        VoiceSource::State(p) => Voice::load(p, &model.lm, &model.device),
        VoiceSource::Audio(p) => Voice::from_wav(p, model),
        VoiceSource::Empty => Voice::empty(&model.lm),
    }
}

impl TextToSpeech for PocketTts {
    fn name(&self) -> String {
        self.model.name.clone()
    }

    fn set_voice(&mut self, name: &str) -> Result<()> {
        let dir = self.dir.clone().unwrap_or_default();
        let source = files::local_voice(&dir, name).ok_or_else(|| {
            let e = files::unknown_voice(name, &dir);
            anyhow::anyhow!("{}; {}", e.message, e.remedy)
        })?;
        self.voice = load_voice(&self.model, &source).context("loading the voice")?;
        Ok(())
    }

    fn takes_voice(&self, voice: &str) -> bool {
        pocket_kind(voice)
    }

    fn start(&mut self) -> Result<()> {
        self.utt = Some(Utterance::default());
        Ok(())
    }

    fn push_text(&mut self, text: &str) {
        if let Some(u) = &mut self.utt {
            if !u.finished {
                u.pending.push_str(text);
            }
        }
    }

    fn finish(&mut self) {
        if let Some(u) = &mut self.utt {
            u.finished = true;
        }
    }

    fn step(&mut self, out: &mut [f32]) -> Result<TtsStep> {
        anyhow::ensure!(
            out.len() == FRAME,
            "the synthesiser writes {FRAME}-sample frames, got {}",
            out.len()
        );
        let r = self.run(out);
        if r.is_err() {
            // A failed utterance is over; the next `start` begins afresh.
            self.utt = None;
            out.fill(0.0);
        }
        r.context("speech synthesis")
    }

    fn cancel(&mut self) {
        self.utt = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kyutai_voice_paths_are_not_pocket_voices_but_names_and_files_are() {
        assert!(pocket_kind("alba"));
        assert!(
            pocket_kind("not-a-voice"),
            "a typo is still Pocket's: it fails as unknown"
        );
        assert!(!pocket_kind(
            "expresso/ex03-ex01_happy_001_channel1_334s.wav"
        ));
        assert!(!pocket_kind("me.safetensors"), "no such file here");
        let dir = std::env::temp_dir().join(format!("pocket-kind-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("me.safetensors");
        std::fs::write(&f, b"x").unwrap();
        assert!(pocket_kind(f.to_str().unwrap()));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn sentences_end_only_before_whitespace() {
        assert_eq!(sentence_end("Hello there. How"), Some(12));
        assert_eq!(sentence_end("It costs 3.5 euros"), None);
        assert_eq!(sentence_end("Wait..."), None);
        assert_eq!(sentence_end("\"Yes!\" she said. "), Some(16));
    }

    #[test]
    fn eager_cut_waits_for_enough_words_and_a_comma() {
        assert_eq!(eager_cut("Well, I think so", 4), None);
        assert_eq!(eager_cut("Well, I think that, maybe ", 4), Some(19));
        assert_eq!(eager_cut("Well, I think that, maybe ", 0), None);
        // A comma that ends the text so far ends its word: no wait for the next token.
        assert_eq!(eager_cut("Sure,", 1), Some(5));
        assert_eq!(eager_cut("Well, I think that,", 4), Some(19));
        assert_eq!(eager_cut("Well, I think,", 4), None, "three words");
        assert_eq!(eager_cut("It costs 3,", 1), None, "a digit's comma waits");
        assert_eq!(eager_cut("Sure ,", 1), None);
        let long = "word ".repeat(RUN_ON_WORDS);
        assert_eq!(eager_cut(&long, 4), Some(long.len() - 1));
    }
}
