//! A streaming recogniser that keeps up on a CPU: OpenAI's Whisper (tiny, base, … in the
//! Hugging Face layout: `config.json`, `model.safetensors`, `tokenizer.json`) through
//! candle-transformers, made streaming by `stream`. The transcriptions run on a worker
//! thread of their own, so that a frame's step never waits for one: the words and the
//! end of speech come back a few frames later. `transcribe` runs them inline instead,
//! so that a file always gives the same words at the same frames.
//!
//! May import `models::parts`, `models::speech`, `models::moshi` (its load error,
//! random weights), `models::cpu_share`, `audio` and `bus`.

pub mod decode;
pub mod mel;
pub mod model;
pub mod stream;
pub mod synthetic;
pub mod tokens;

use crate::models::moshi::ModelLoadError;
use crate::models::parts::{SpeechToText, SttStep};
use crate::models::speech::files::{self as files, CONFIG_FILE};
use anyhow::{Context, Result};
use crossbeam_channel::{Receiver, Sender};
use decode::Transcriber;
use moshi::candle::{DType, Device};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use stream::{Agreement, Job, Segmenter};

pub const WEIGHTS_FILE: &str = "model.safetensors";
pub const TOKENIZER_FILE: &str = "tokenizer.json";
/// What a Whisper directory is laid out like, for the error messages.
pub const WHISPER_LAYOUT: &str = "openai/whisper-base.en";
/// Samples in one step: 80 ms at 24 kHz.
const FRAME: usize = 1920;
/// Above this `<|nospeech|>` probability a transcription is taken as no words.
const NO_SPEECH: f32 = 0.6;

/// Where the transcriptions run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Threading {
    /// On a worker thread: a step never waits (the live engine).
    Worker,
    /// Inside `step`: the same words at the same frames every run (`transcribe`, tests).
    Inline,
}

/// Whether `dir` holds a Whisper checkpoint (its config.json is Whisper's).
pub fn is_whisper_dir(dir: &Path) -> bool {
    std::fs::read_to_string(dir.join(CONFIG_FILE))
        .ok()
        .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
        .is_some_and(|v| v["model_type"] == "whisper" || v.get("num_mel_bins").is_some())
}

/// The worker's answer to one job.
struct Heard {
    words: Vec<String>,
    /// The utterance's end, with its end-of-speech probability.
    end: Option<f32>,
}

/// The transcriber and the agreement over one utterance's transcriptions.
struct Worker {
    transcriber: Transcriber,
    agreement: Agreement,
    /// A tentative last transcription, held until confirmed or withdrawn.
    held: Option<String>,
}

fn words(text: &str) -> Vec<String> {
    text.split_whitespace().map(String::from).collect()
}

impl Worker {
    /// `stop` says a newer job waits: a partial transcription gives way to it (a final
    /// one never does). `None` if it gave way.
    fn run(&mut self, job: Job, stop: &dyn Fn() -> bool) -> Result<Option<Heard>> {
        let nothing = Heard {
            words: Vec::new(),
            end: None,
        };
        let never = || false;
        let (audio, partial) = match job {
            Job::Partial(a) => (a, true),
            Job::Final(a) => (a, false),
            Job::Tentative(a) => {
                let hyp = self.transcriber.transcribe_unless(&a, &never)?;
                self.held = hyp.map(|h| self.text(&h));
                return Ok(Some(nothing));
            }
            Job::Confirm => {
                let text = self.held.take().unwrap_or_default();
                return Ok(Some(self.finish(&text)));
            }
            Job::Withdraw => {
                self.held = None;
                return Ok(Some(nothing));
            }
        };
        let Some(hyp) = self
            .transcriber
            .transcribe_unless(&audio, if partial { stop } else { &never })?
        else {
            return Ok(None);
        };
        let text = self.text(&hyp);
        Ok(Some(if partial {
            Heard {
                words: self.agreement.partial(words(&text)),
                end: None,
            }
        } else {
            self.finish(&text)
        }))
    }

    /// The words of a transcription; none when the model says it heard no speech.
    fn text(&self, h: &decode::Hypothesis) -> String {
        if h.no_speech.is_some_and(|p| p > NO_SPEECH) {
            String::new()
        } else {
            h.text.clone()
        }
    }

    /// An utterance's last transcription: the words not given yet, and its end.
    fn finish(&mut self, text: &str) -> Heard {
        Heard {
            end: Some(stream::end_probability(text)),
            words: self.agreement.finish(words(text)),
        }
    }
}

enum Runner {
    Inline(Box<Worker>),
    Thread {
        jobs: Sender<(u64, Job)>,
        heard: Receiver<(u64, Result<Heard, String>)>,
        /// Set with an utterance's end (or a reset): a partial in progress gives way.
        urgent: Arc<AtomicBool>,
    },
}

/// Jobs from the engine, newest partial only: a partial that a later job supersedes is
/// skipped when the worker is behind.
fn worker_loop(
    mut w: Worker,
    jobs: Receiver<(u64, Job)>,
    heard: Sender<(u64, Result<Heard, String>)>,
    urgent: Arc<AtomicBool>,
) {
    let mut queue = std::collections::VecDeque::new();
    let mut generation = 0;
    while let Ok(j) = jobs.recv() {
        queue.push_back(j);
        queue.extend(jobs.try_iter());
        while let Some((g, job)) = queue.pop_front() {
            if matches!(job, Job::Final(_) | Job::Tentative(_)) || g != generation {
                urgent.store(false, Ordering::SeqCst);
            }
            if g != generation {
                // A reset: the agreement starts over.
                generation = g;
                w.agreement.reset();
                w.held = None;
            }
            let nothing = Heard {
                words: Vec::new(),
                end: None,
            };
            // A partial superseded by a newer job, or cut short by an utterance's end
            // (or a reset), is answered with nothing, so the engine's count stays right.
            let r = if matches!(job, Job::Partial(_)) && !queue.is_empty() {
                Ok(nothing)
            } else {
                let kind = match &job {
                    Job::Partial(a) => ("partial", a.len()),
                    Job::Final(a) => ("final", a.len()),
                    Job::Tentative(a) => ("tentative", a.len()),
                    Job::Confirm => ("confirm", 0),
                    Job::Withdraw => ("withdraw", 0),
                };
                let t = std::time::Instant::now();
                let r = w
                    .run(job, &|| urgent.load(Ordering::SeqCst))
                    .map(|h| h.unwrap_or(nothing))
                    .map_err(|e| format!("{e:#}"));
                tracing::debug!(
                    "whisper: {} of {:.2} s in {:.0} ms",
                    kind.0,
                    kind.1 as f64 / 16_000.0,
                    t.elapsed().as_secs_f64() * 1e3
                );
                r
            };
            if heard.send((g, r)).is_err() {
                return;
            }
        }
    }
}

pub struct WhisperStt {
    segmenter: Segmenter,
    runner: Runner,
    name: String,
    generation: u64,
    /// An utterance has ended and its last transcription is not back yet.
    awaiting_end: bool,
    /// The last utterance's end-of-speech probability and the frames since.
    ended: Option<(f32, u32)>,
    /// Jobs sent to the worker and not answered yet.
    pending: usize,
    /// When the first frame came, and frames since: a run faster than real time (a
    /// file) waits for the worker rather than racing ahead of it.
    clock: Option<(std::time::Instant, u64)>,
}

/// How far ahead of real time the frames may come before a step waits for the worker.
const AHEAD_S: f64 = 1.0;

impl WhisperStt {
    /// Load a checkpoint directory in the Hugging Face layout of Whisper.
    pub fn load(dir: &Path, device: &Device, threading: Threading) -> Result<Self, ModelLoadError> {
        let transcriber = load_transcriber(dir, device)?;
        let name = format!("whisper ({})", files::display_name(dir));
        Self::assemble(transcriber, name, threading)
            .map_err(|e| ModelLoadError::new(format!("{}: {e:#}", dir.display()), "report this"))
    }

    fn assemble(transcriber: Transcriber, name: String, threading: Threading) -> Result<Self> {
        let worker = Worker {
            transcriber,
            agreement: Agreement::default(),
            held: None,
        };
        let runner = match threading {
            Threading::Inline => Runner::Inline(Box::new(worker)),
            Threading::Worker => {
                let (jobs_tx, jobs_rx) = crossbeam_channel::unbounded();
                let (heard_tx, heard_rx) = crossbeam_channel::unbounded();
                let urgent = Arc::new(AtomicBool::new(false));
                let u = urgent.clone();
                std::thread::Builder::new()
                    .name("whisper".into())
                    .spawn(move || {
                        use crate::models::cpu_share::{run_as, Part};
                        run_as(Part::Recogniser, move || {
                            worker_loop(worker, jobs_rx, heard_tx, u)
                        })
                    })
                    .context("starting the recogniser's thread")?;
                Runner::Thread {
                    jobs: jobs_tx,
                    heard: heard_rx,
                    urgent,
                }
            }
        };
        Ok(Self {
            segmenter: Segmenter::new()?,
            runner,
            name,
            generation: 0,
            awaiting_end: false,
            ended: None,
            pending: 0,
            clock: None,
        })
    }

    /// A model of `cfg`'s size with random weights, for timing (`bench`).
    #[doc(hidden)]
    pub fn with_random_weights(
        cfg: &candle_transformers::models::whisper::Config,
        threading: Threading,
    ) -> Result<Self> {
        let (model, tokens) = synthetic::random_model(cfg, 7)?;
        let t = Transcriber::new(model, tokens, &[], &Device::Cpu)?;
        Self::assemble(t, "whisper (random)".into(), threading)
    }

    fn take(&mut self, heard: Heard, out: &mut SttStep) {
        out.words.extend(heard.words);
        if let Some(p) = heard.end {
            self.awaiting_end = false;
            self.ended = Some((p, 0));
        }
    }
}

/// Read and check the three files; build the transcriber.
pub fn load_transcriber(dir: &Path, device: &Device) -> Result<Transcriber, ModelLoadError> {
    let fix = format!("the directory must hold a Whisper checkpoint in the Hugging Face layout ({WHISPER_LAYOUT}: {CONFIG_FILE}, {WEIGHTS_FILE}, {TOKENIZER_FILE}); tools/whisper_weights/fetch.sh makes one");
    let cfg_path = dir.join(CONFIG_FILE);
    let text = std::fs::read_to_string(&cfg_path).map_err(|e| {
        ModelLoadError::new(format!("{}: cannot read: {e}", cfg_path.display()), &fix)
    })?;
    let cfg: candle_transformers::models::whisper::Config =
        serde_json::from_str(&text).map_err(|e| {
            ModelLoadError::new(
                format!("{}: not a Whisper config: {e}", cfg_path.display()),
                &fix,
            )
        })?;
    let begin: Vec<u32> = serde_json::from_str::<serde_json::Value>(&text)
        .ok()
        .and_then(|v| serde_json::from_value(v["begin_suppress_tokens"].clone()).ok())
        .unwrap_or_default();
    if cfg.d_model == 0
        || cfg.encoder_attention_heads == 0
        || cfg.decoder_attention_heads == 0
        || !cfg.d_model.is_multiple_of(cfg.encoder_attention_heads)
        || !cfg.d_model.is_multiple_of(cfg.decoder_attention_heads)
    {
        return Err(ModelLoadError::new(
            format!(
                "{}: d_model {} does not split into its attention heads",
                cfg_path.display(),
                cfg.d_model
            ),
            &fix,
        ));
    }
    let tok_path = dir.join(TOKENIZER_FILE);
    let tok_text = std::fs::read_to_string(&tok_path)
        .map_err(|_| files::missing(&tok_path, WHISPER_LAYOUT))?;
    let tokens = tokens::WhisperTokens::from_json(&tok_text)
        .map_err(|e| ModelLoadError::new(format!("{}: {e}", tok_path.display()), &fix))?;
    if tokens.no_timestamps as usize >= cfg.vocab_size {
        return Err(ModelLoadError::new(
            format!(
                "{}: its special tokens go up to {}, beyond the model's vocab_size {}",
                tok_path.display(),
                tokens.no_timestamps,
                cfg.vocab_size
            ),
            "use the tokenizer.json that comes with the weights",
        ));
    }
    let headers = files::check_weights(dir, WEIGHTS_FILE, WHISPER_LAYOUT)?;
    let w_path = dir.join(WEIGHTS_FILE);
    let last_enc = format!(
        "model.encoder.layers.{}.fc1.weight",
        cfg.encoder_layers.saturating_sub(1)
    );
    let last_dec = format!(
        "model.decoder.layers.{}.fc1.weight",
        cfg.decoder_layers.saturating_sub(1)
    );
    for (name, shape) in [
        (
            "model.decoder.embed_tokens.weight",
            vec![cfg.vocab_size, cfg.d_model],
        ),
        (
            "model.encoder.conv1.weight",
            vec![cfg.d_model, cfg.num_mel_bins, 3],
        ),
        (last_enc.as_str(), vec![cfg.d_model * 4, cfg.d_model]),
        (last_dec.as_str(), vec![cfg.d_model * 4, cfg.d_model]),
    ] {
        files::expect_tensor(&headers, &w_path, name, &shape, WHISPER_LAYOUT)?;
    }
    let remedy = format!("download {WEIGHTS_FILE} again, or run tools/whisper_weights/fetch.sh");
    // SAFETY: read-only memory map of a checkpoint file.
    let vb = unsafe {
        moshi::candle_nn::VarBuilder::from_mmaped_safetensors(&[&w_path], DType::F32, device)
    }
    .map_err(|e| files::candle_error(&w_path, e, &remedy))?;
    let model =
        model::Whisper::load(&vb, cfg).map_err(|e| files::candle_error(&w_path, e, &remedy))?;
    Transcriber::new(model, tokens, &begin, device)
        .map_err(|e| ModelLoadError::new(format!("{}: {e:#}", w_path.display()), &remedy))
}

impl SpeechToText for WhisperStt {
    fn name(&self) -> String {
        self.name.clone()
    }

    fn step(&mut self, pcm: &[f32]) -> Result<SttStep> {
        anyhow::ensure!(
            pcm.len() == FRAME,
            "the recogniser takes {FRAME}-sample frames, got {}",
            pcm.len()
        );
        let mut out = SttStep::default();
        let job = self.segmenter.push(pcm);
        if self.segmenter.in_utterance() {
            self.ended = None;
        }
        if matches!(job, Some(Job::Final(_) | Job::Confirm)) {
            self.awaiting_end = true;
        }
        match &mut self.runner {
            Runner::Inline(w) => {
                if let Some(job) = job {
                    let heard = w.run(job, &|| false).context("speech recognition")?;
                    if let Some(h) = heard {
                        self.take(h, &mut out);
                    }
                }
            }
            Runner::Thread {
                jobs,
                heard,
                urgent,
            } => {
                if let Some(job) = job {
                    if matches!(job, Job::Final(_) | Job::Tentative(_)) {
                        urgent.store(true, Ordering::SeqCst);
                    }
                    jobs.send((self.generation, job))
                        .map_err(|_| anyhow::anyhow!("the recogniser's thread has stopped"))?;
                    self.pending += 1;
                }
                let (t0, n) = self.clock.get_or_insert((std::time::Instant::now(), 0));
                *n += 1;
                let ahead = *n as f64 * 0.08 - t0.elapsed().as_secs_f64() > AHEAD_S;
                let mut got = Vec::new();
                while self.pending > 0 {
                    let r = if ahead {
                        heard.recv().map_err(|_| ())
                    } else {
                        heard.try_recv().map_err(|_| ())
                    };
                    let Ok(r) = r else { break };
                    self.pending -= 1;
                    got.push(r);
                }
                for (g, r) in got {
                    if g == self.generation {
                        let h = r
                            .map_err(anyhow::Error::msg)
                            .context("speech recognition")?;
                        self.take(h, &mut out);
                    }
                }
            }
        }
        out.end_of_speech = Some(match &mut self.ended {
            // Each further quiet frame makes the end surer.
            Some((p, since)) if !self.awaiting_end => {
                let v = (*p + 0.1 * *since as f32).min(1.0);
                *since += 1;
                v
            }
            _ => 0.0,
        });
        Ok(out)
    }

    fn delay_frames(&self) -> usize {
        // A word is given out once two transcriptions a hop apart agree on it.
        2 * stream::HOP_FRAMES as usize
    }

    /// An utterance is open, or its last transcription has not come back.
    fn pending(&self) -> bool {
        self.awaiting_end || self.segmenter.in_utterance()
    }

    /// The last words come from the utterance's own last transcription: silence
    /// stepped faster than real time would only put the clock ahead.
    fn flush_frames(&self) -> usize {
        0
    }

    fn reset(&mut self) {
        self.segmenter.reset();
        self.generation += 1;
        self.awaiting_end = false;
        self.ended = None;
        match &mut self.runner {
            Runner::Inline(w) => {
                w.agreement.reset();
                w.held = None;
            }
            Runner::Thread { urgent, .. } => urgent.store(true, Ordering::SeqCst),
        }
    }
}
