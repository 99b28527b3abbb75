//! `assistant bench cascade --published`: the CPU cascade at the published shapes,
//! with random weights, through the whole engine at real time: a scripted
//! conversation paced like a microphone, a speaker drained like a device, the parts
//! timed where they run.
//!
//! Random weights never fire a recogniser's pause head nor say real words, so the
//! recogniser runs on the audio (its cost is real) while the script supplies its words
//! (each 0.5 s after it was spoken, as Kyutai's STT gives them) and the end of the
//! user's turn, the moment the speech ends. The turn rule's own wait after that
//! (320 ms of quiet when the recogniser says the user is done) is reported apart.
//! The conversation itself (`cpu_script`) waits on what the speaker plays, so
//! the same turns are talked over in every run.

use crate::app::bench::cascade::{barge_in_ms, first_audio_ms, print_figures, Figures};
use crate::app::bench::cpu_script::{
    self as script, Conversation, Heard, Kind, Spoken, BLOCK, REPLY,
};
use crate::audio::device::{ring_for, AudioFormat, Cut};
use crate::audio::meters::Meters;
use crate::audio::port::{InputPort, OutputPort};
use crate::audio::wav::WavSink;
use crate::bus::Cancel;
use crate::engine::cascade::{Cascade, TurnSettings};
use crate::engine::runner::{self, EngineSetup, Loaded};
use crate::engine::stats::percentiles;
use crate::models::parts::{
    ChatRequest, Llm, LlmError, SpeechToText, SttStep, TextToSpeech, TtsStep,
};
use anyhow::{Context, Result};
use moshi::candle::Device;
use ringbuf::traits::{Consumer, Observer, Producer};
use std::ops::Range;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const RATE: usize = 24_000;
const FRAME: usize = 1920;
/// Frames of speech a word makes: English at about 2.5 words a second, at 12.5
/// frames a second.
const SPEECH_FRAMES_PER_WORD: f64 = 5.0;
/// The turn machine's wait after speech when the recogniser says the user is done.
pub const TURN_RULE_WAIT_MS: f64 = 320.0;

/// What the wrapped parts saw, shared with the bench.
#[derive(Default)]
pub struct Probe {
    /// The synthesiser is producing audio (set by its wrapper).
    speaking: AtomicBool,
    /// Input frames the engine has dropped (from its step events): the recogniser
    /// never sees them, so its count of frames would fall behind the script.
    dropped: AtomicU64,
    /// Recogniser step times in ms, with whether the synthesiser was speaking then.
    stt_ms: Mutex<Vec<(f64, bool)>>,
    /// Synthesiser step times in ms for frames that carried audio.
    tts_ms: Mutex<Vec<f64>>,
    tts_audio_frames: AtomicU64,
    /// The LLM's first piece after each request, in ms.
    llm_first_ms: Mutex<Vec<f64>>,
    /// From the end of each turn's speech to the recogniser's last words, in ms, and
    /// whether it said so itself (else the script's fallback ended the turn).
    stt_final_ms: Mutex<Vec<(f64, bool)>>,
    /// The start of the first reply, to show what the random LLM writes.
    llm_sample: Mutex<String>,
    /// Each reply's pieces and the time from its first piece to its last, in ms.
    llm_rate: Mutex<Vec<(u64, f64)>>,
    /// Pieces the LLM wrote, and characters of text the synthesiser was given.
    llm_pieces: AtomicU64,
    tts_chars: AtomicU64,
    /// A reply is under way: the synthesiser started it and has not finished it.
    replying: AtomicBool,
    /// Each reply's moments, in the order the synthesiser started them.
    replies: Mutex<Vec<ReplyTrace>>,
    /// Each read-ahead's time in ms, and the prompt tokens it read.
    prepare_ms: Mutex<Vec<(f64, u64)>>,
}

/// The moments of one reply, from the turn machine asking for it to its first sound.
#[derive(Debug, Clone)]
struct ReplyTrace {
    /// The synthesiser was started: the turn machine ended the user's turn and asks.
    asked: Instant,
    /// The LLM's thread began the reply (it may have been reading ahead).
    llm_began: Option<Instant>,
    /// Prompt tokens the reply read (what reading ahead had not).
    prompt_tokens: Option<u64>,
    llm_first: Option<Instant>,
    first_text: Option<Instant>,
    /// The text that let the synthesiser speak: the last given before its first frame,
    /// and how many characters it had by then.
    last_text: Option<Instant>,
    chars: usize,
    first_audio: Option<Instant>,
}

impl ReplyTrace {
    fn new(asked: Instant) -> Self {
        Self {
            asked,
            llm_began: None,
            prompt_tokens: None,
            llm_first: None,
            first_text: None,
            last_text: None,
            chars: 0,
            first_audio: None,
        }
    }
}

/// Frames after a turn's speech by which the recogniser must have said it is done;
/// past them the script ends the turn anyway and counts the recogniser as late.
const FALLBACK_FRAMES: usize = 36;

/// The recogniser, timed, with the script's words and end of turn. The words spoken
/// before the end of a turn come `delay_frames` after they were spoken; the rest, and
/// the end of the turn, only once the real recogniser has finished the utterance (its
/// end-of-speech probability rises above 0): a streaming Whisper transcribes the
/// whole utterance after its quiet, and that time is part of the user's wait.
struct ScriptedStt {
    inner: Box<dyn SpeechToText>,
    probe: Arc<Probe>,
    /// The turns the microphone has begun (it adds each before its first sample).
    live: Arc<Mutex<Vec<Spoken>>>,
    /// Steps taken; the frame of the script a step hears is this plus the frames the
    /// engine dropped.
    steps: usize,
    /// The frame of the last step.
    frame: Option<usize>,
    /// (frame at which the word is due, its turn, word)
    words: Vec<(usize, usize, String)>,
    next_word: usize,
    /// Frames (by index) in which the user is speaking, one range a turn.
    speech: Vec<Range<usize>>,
    /// The frame at which the recogniser finished each turn.
    finished: Vec<Option<usize>>,
}

impl ScriptedStt {
    fn new(inner: Box<dyn SpeechToText>, live: Arc<Mutex<Vec<Spoken>>>, probe: Arc<Probe>) -> Self {
        Self {
            inner,
            probe,
            live,
            steps: 0,
            frame: None,
            words: Vec::new(),
            next_word: 0,
            speech: Vec::new(),
            finished: Vec::new(),
        }
    }

    /// Take in the turns begun since the last step: their words fall due at the end
    /// of their share of the speech, late by the recogniser's delay.
    fn sync(&mut self) {
        let delay = self.inner.delay_frames();
        let live = self.live.lock().unwrap();
        for (i, t) in live.iter().enumerate().skip(self.speech.len()) {
            let n = t.words.len().max(1);
            for (k, w) in t.words.iter().enumerate() {
                let end = t.speech.start + (k + 1) * t.speech.len() / n;
                self.words.push((end / FRAME + delay, i, w.to_string()));
            }
            self.speech
                .push(t.speech.start / FRAME..t.speech.end.div_ceil(FRAME));
            self.finished.push(None);
        }
    }
}

impl SpeechToText for ScriptedStt {
    fn name(&self) -> String {
        self.inner.name()
    }
    fn step(&mut self, pcm: &[f32]) -> Result<SttStep> {
        self.sync();
        let speaking = self.probe.speaking.load(Ordering::Relaxed);
        let t = Instant::now();
        let heard = self.inner.step(pcm)?;
        let ms = t.elapsed().as_secs_f64() * 1e3;
        self.probe.stt_ms.lock().unwrap().push((ms, speaking));
        let f = self.steps + self.probe.dropped.load(Ordering::Relaxed) as usize;
        self.steps += 1;
        self.frame = Some(f);
        // The latest turn begun by now.
        let turn = self.speech.iter().rposition(|r| r.start <= f);
        if let Some(i) = turn {
            let end = self.speech[i].end;
            let done = heard.end_of_speech.is_some_and(|p| p > 0.0);
            if f >= end && self.finished[i].is_none() && (done || f >= end + FALLBACK_FRAMES) {
                self.finished[i] = Some(f);
                let late = (f - end) as f64 * 80.0;
                tracing::debug!("bench: turn {i} finished {late} ms after its speech (by the recogniser: {done})");
                self.probe.stt_final_ms.lock().unwrap().push((late, done));
            }
        }
        let mut out = SttStep::default();
        while let Some((at, i, w)) = self.words.get(self.next_word) {
            let held = *at >= self.speech[*i].end && self.finished[*i].is_none();
            if *at > f || held {
                break;
            }
            out.words.push(w.clone());
            self.next_word += 1;
        }
        let done = match turn {
            Some(i) => !self.speech[i].contains(&f) && self.finished[i].is_some(),
            None => true,
        };
        out.end_of_speech = Some(if done { 1.0 } else { 0.0 });
        Ok(out)
    }
    fn delay_frames(&self) -> usize {
        self.inner.delay_frames()
    }
    fn reset(&mut self) {
        self.inner.reset()
    }
    /// The script's words come on their frames: a flush would only shift the
    /// script against the audio.
    fn flush_frames(&self) -> usize {
        0
    }
    /// The recogniser's own, or the latest turn's last words held for it.
    fn pending(&self) -> bool {
        let Some(last) = self.frame else {
            return false;
        };
        let held = self
            .speech
            .iter()
            .rposition(|r| r.start <= last)
            .is_some_and(|i| last >= self.speech[i].end && self.finished[i].is_none());
        self.inner.pending() || held
    }
}

/// The synthesiser, timed.
struct TimedTts {
    inner: Box<dyn TextToSpeech>,
    probe: Arc<Probe>,
}

impl TimedTts {
    /// The reply under way's trace.
    fn trace(&self, f: impl FnOnce(&mut ReplyTrace)) {
        if let Some(t) = self.probe.replies.lock().unwrap().last_mut() {
            f(t)
        }
    }
}

impl TextToSpeech for TimedTts {
    fn name(&self) -> String {
        self.inner.name()
    }
    fn set_voice(&mut self, voice: &str) -> Result<()> {
        self.inner.set_voice(voice)
    }
    fn takes_voice(&self, voice: &str) -> bool {
        self.inner.takes_voice(voice)
    }
    fn start(&mut self) -> Result<()> {
        let now = Instant::now();
        self.inner.start()?;
        self.probe
            .replies
            .lock()
            .unwrap()
            .push(ReplyTrace::new(now));
        self.probe.replying.store(true, Ordering::Relaxed);
        Ok(())
    }
    fn push_text(&mut self, text: &str) {
        let n = text.chars().count();
        self.probe.tts_chars.fetch_add(n as u64, Ordering::Relaxed);
        let now = Instant::now();
        self.trace(|t| {
            if t.first_audio.is_none() {
                t.first_text.get_or_insert(now);
                t.last_text = Some(now);
                t.chars += n;
            }
        });
        self.inner.push_text(text)
    }
    fn finish(&mut self) {
        self.inner.finish()
    }
    fn step(&mut self, out: &mut [f32]) -> Result<TtsStep> {
        let t = Instant::now();
        let r = self.inner.step(out)?;
        let ms = t.elapsed().as_secs_f64() * 1e3;
        let audio = matches!(r, TtsStep::Audio { .. });
        self.probe.speaking.store(audio, Ordering::Relaxed);
        if audio {
            self.probe.tts_ms.lock().unwrap().push(ms);
            self.probe.tts_audio_frames.fetch_add(1, Ordering::Relaxed);
            let now = Instant::now();
            self.trace(|t| {
                t.first_audio.get_or_insert(now);
            });
        }
        if matches!(r, TtsStep::Done) {
            self.probe.replying.store(false, Ordering::Relaxed);
        }
        Ok(r)
    }
    fn cancel(&mut self) {
        self.probe.speaking.store(false, Ordering::Relaxed);
        self.probe.replying.store(false, Ordering::Relaxed);
        self.inner.cancel()
    }
}

/// The LLM, with the time to its first piece.
struct TimedLlm {
    inner: Arc<dyn Llm>,
    probe: Arc<Probe>,
    /// Prompt tokens the LLM has read since loading, where it counts them.
    tokens_read: Option<TokensRead>,
}

/// The in-process LLM's count of prompt tokens read.
pub type TokensRead = Arc<dyn Fn() -> u64 + Send + Sync>;

impl Llm for TimedLlm {
    fn name(&self) -> String {
        self.inner.name()
    }
    fn stream(
        &self,
        request: &ChatRequest,
        cancel: &Cancel,
        on_piece: &mut dyn FnMut(&str),
    ) -> Result<(), LlmError> {
        let t = Instant::now();
        let read_before = self.tokens_read.as_ref().map(|f| f());
        if let Some(r) = self.probe.replies.lock().unwrap().last_mut() {
            r.llm_began.get_or_insert(t);
        }
        let mut first = true;
        let (mut pieces, mut first_at, mut last_at) = (0u64, t, t);
        let r = self.inner.stream(request, cancel, &mut |p| {
            pieces += 1;
            last_at = Instant::now();
            if pieces == 1 {
                first_at = last_at;
            }
            if first {
                first = false;
                let ms = t.elapsed().as_secs_f64() * 1e3;
                self.probe.llm_first_ms.lock().unwrap().push(ms);
                let read = read_before
                    .zip(self.tokens_read.as_ref())
                    .map(|(b, f)| f().saturating_sub(b));
                if let Some(r) = self.probe.replies.lock().unwrap().last_mut() {
                    r.llm_first.get_or_insert(last_at);
                    r.prompt_tokens = r.prompt_tokens.or(read);
                }
            }
            self.probe.llm_pieces.fetch_add(1, Ordering::Relaxed);
            let mut sample = self.probe.llm_sample.lock().unwrap();
            if sample.chars().count() < 40 {
                sample.push_str(p);
            }
            drop(sample);
            on_piece(p)
        });
        if pieces > 1 {
            let ms = (last_at - first_at).as_secs_f64() * 1e3;
            self.probe.llm_rate.lock().unwrap().push((pieces - 1, ms));
        }
        r
    }
    fn count_tokens(&self, text: &str) -> usize {
        self.inner.count_tokens(text)
    }
    fn context_tokens(&self) -> usize {
        self.inner.context_tokens()
    }
    fn count_prompt(&self, request: &ChatRequest) -> usize {
        self.inner.count_prompt(request)
    }
    fn prepare(&self, request: &ChatRequest, cancel: &Cancel) -> Result<(), LlmError> {
        let t = Instant::now();
        let before = self.tokens_read.as_ref().map(|f| f());
        let r = self.inner.prepare(request, cancel);
        let read = before
            .zip(self.tokens_read.as_ref())
            .map_or(0, |(b, f)| f().saturating_sub(b));
        let ms = t.elapsed().as_secs_f64() * 1e3;
        self.probe.prepare_ms.lock().unwrap().push((ms, read));
        r
    }
}

/// Qwen2's vocabulary cut down to the script's texts (`tools/llama_vocab_fixture/bench.py`).
const QWEN2_VOCAB: &str = include_str!("qwen2_vocab.json");

/// The three parts at the published shapes with random weights: Whisper base (or the
/// recogniser checkpoint in `stt_dir`, e.g. real Whisper weights), Pocket TTS
/// (`pocket`: `default` or `18m`, f32 or `q8`), Qwen2.5-0.5B in Q4_K_M written to
/// `work`.
pub fn published(
    stt_dir: Option<&Path>,
    pocket: &str,
    q8: bool,
    eager_words: usize,
    work: &Path,
) -> Result<Parts> {
    use crate::models::llm::synthetic::{write_tiny_qwen2, TinyQwen2};
    use crate::models::llm::{GgufLlm, GgufLlmOptions};
    use crate::models::speech::stt::whisper::{synthetic, Threading, WhisperStt};
    use crate::models::speech::tts::pocket::{PocketModel, PocketSampling, PocketTts, Voice};
    let dev = Device::Cpu;
    let mut description = Vec::new();
    let stt: Box<dyn SpeechToText> = match stt_dir {
        Some(d) => {
            let stt = crate::models::speech::stt::recogniser::load_dir(d, &dev, Threading::Worker)
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            description.push(format!("recogniser: {} ({})", stt.name(), d.display()));
            stt
        }
        None => {
            let cfg = synthetic::published_config("base").context("whisper base config")?;
            description.push(
                "recogniser: Whisper base (74M), random weights, streaming on a thread of its own"
                    .into(),
            );
            Box::new(WhisperStt::with_random_weights(&cfg, Threading::Worker)?)
        }
    };
    let (cfg, key) = crate::app::bench::pocket::config_named(pocket)?;
    // As a published checkpoint loads: its flow LM's weights stay in bf16.
    let model = PocketModel::random(cfg, key, &dev)?.with_bf16_flow_lm()?;
    let voice = Voice::random(&model.lm, 125, &dev)?;
    let mut tts = PocketTts::new(model, voice, q8)?;
    tts.set_eager_words(eager_words);
    tts.set_sampling(PocketSampling {
        temperature: Some(0.3),
        // Random weights never signal the end: each chunk ends where real speech of
        // its text would, not at the package's length bound.
        eos_threshold: Some(f64::INFINITY),
        scripted_frames_per_word: Some(SPEECH_FRAMES_PER_WORD),
        ..Default::default()
    });
    description.push(format!(
        "synthesiser: Pocket TTS {key}{}, random weights, temperature 0.3, speaking after {eager_words} words at a comma, each chunk ending after {SPEECH_FRAMES_PER_WORD} frames a word",
        if q8 { " (flow LM q8)" } else { " (flow LM weights in bf16, as published)" }
    ));
    let gguf = work.join("qwen2.5-0.5b-shape-q4_k_m.gguf");
    let shape = TinyQwen2 {
        vocab: Some(QWEN2_VOCAB),
        ..TinyQwen2::qwen25_05b_q4_k_m()
    };
    write_tiny_qwen2(&gguf, &shape)?;
    let size = std::fs::metadata(&gguf)?.len();
    let options = GgufLlmOptions {
        gguf: Some(gguf.clone()),
        scripted_reply: Some(REPLY.into()),
        ..GgufLlmOptions::default()
    };
    let llm = GgufLlm::load(&gguf, &dev, &options, &Cancel::new())
        .map_err(|e| anyhow::anyhow!("{}", e.message))?;
    description.push(format!(
        "LLM: Qwen2.5-0.5B shape in Q4_K_M, random weights ({:.0} MB), Qwen2's own tokenizer cut down to the script's words, in-process, reading ahead, writing the script's reply token by token",
        size as f64 / 1e6
    ));
    description.push(format!(
        "threads: {} cores; {}",
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        match crate::models::cpu_share::policy() {
            crate::models::cpu_share::Policy::Prioritised => "recogniser (nice 4) and LLM (nice 5) in pools of their own below the engine thread",
            crate::models::cpu_share::Policy::Shared => "every part in candle's one pool at normal priority",
        }
    ));
    let llm = Arc::new(llm);
    let counted = llm.clone();
    Ok(Parts {
        stt,
        tts: Box::new(tts),
        llm,
        tokens_read: Some(Arc::new(move || counted.tokens_read())),
        description,
    })
}

/// The three parts, built at the published shapes (`published`) or by a test.
pub struct Parts {
    pub stt: Box<dyn SpeechToText>,
    pub tts: Box<dyn TextToSpeech>,
    pub llm: Arc<dyn Llm>,
    /// The LLM's count of prompt tokens read, where it has one.
    pub tokens_read: Option<TokensRead>,
    /// One line each, for the report.
    pub description: Vec<String>,
}

/// When the speaker last played sound, for the microphone to react to as a user
/// would (the two run on clocks of their own, in 10 ms blocks).
struct Playback {
    epoch: Instant,
    /// ms since `epoch`, plus one (0: never).
    last_sound_ms: AtomicU64,
    /// Whether the speaker's last block had sound, and when that changed (true: sound
    /// began), on the wall clock: what a user hears start and stop (the output WAV's
    /// frames follow the input's, and leave out the input frames the engine dropped).
    sounding: AtomicBool,
    changes: Mutex<Vec<(Instant, bool)>>,
}

impl Playback {
    fn new() -> Arc<Self> {
        Arc::new(Self {
            epoch: Instant::now(),
            last_sound_ms: AtomicU64::new(0),
            sounding: AtomicBool::new(false),
            changes: Mutex::new(Vec::new()),
        })
    }

    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64 + 1
    }

    /// The speaker played a block, with sound or not.
    fn block(&self, sound: bool) {
        if sound {
            self.last_sound_ms.store(self.now_ms(), Ordering::Relaxed);
        }
        if self.sounding.swap(sound, Ordering::Relaxed) != sound {
            self.changes.lock().unwrap().push((Instant::now(), sound));
        }
    }

    /// Sound in the last block (with a block's slack between the two clocks).
    fn playing(&self) -> bool {
        let last = self.last_sound_ms.load(Ordering::Relaxed);
        last != 0 && self.now_ms() <= last + 20
    }
}

/// Run the calling thread as cpal runs a device's callback thread (its "realtime"
/// feature): at real-time priority where the system allows, for `BLOCK`-sample
/// periods. Where it does not (no rtkit, no limit), the thread stays as it was, as a
/// device's would.
fn promote_like_a_device_callback() -> bool {
    audio_thread_priority::promote_current_thread_to_real_time(BLOCK as u32, RATE as u32).is_ok()
}

/// A speaker: drains the ring at real time in 10 ms blocks, counting the blocks that
/// found too little (after the first second, once the first reply could have come).
struct PacedSpeaker {
    stop: Arc<AtomicBool>,
    underruns: Arc<AtomicU64>,
    /// When the first underruns came, in s from the speaker's start.
    underrun_at: Arc<Mutex<Vec<f64>>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl PacedSpeaker {
    fn start(playback: Arc<Playback>) -> (Self, OutputPort) {
        let format = AudioFormat {
            sample_rate: RATE as u32,
            channels: 1,
        };
        let (prod, mut cons) = ring_for(format, 2.0);
        let stop = Arc::new(AtomicBool::new(false));
        let underruns = Arc::new(AtomicU64::new(0));
        let (stop2, under2) = (stop.clone(), underruns.clone());
        let underrun_at = Arc::new(Mutex::new(Vec::new()));
        let at2 = underrun_at.clone();
        let cut = Cut::default();
        let cut2 = cut.clone();
        let thread = std::thread::Builder::new()
            .name("paced-speaker".into())
            .spawn(move || {
                promote_like_a_device_callback();
                let mut buf = vec![0.0f32; BLOCK];
                let start = Instant::now();
                let mut started = false;
                for i in 0u64.. {
                    let due = start + Duration::from_millis(10 * i);
                    if let Some(w) = due.checked_duration_since(Instant::now()) {
                        std::thread::sleep(w);
                    }
                    if stop2.load(Ordering::Relaxed) {
                        break;
                    }
                    // As the device callback does: a cut first.
                    cut2.apply(&mut cons, 1);
                    // A device plays from its first sample on; before that it waits.
                    started |= cons.occupied_len() > 0;
                    let got = cons.pop_slice(&mut buf);
                    if started && got < BLOCK && i >= 100 {
                        under2.fetch_add(1, Ordering::Relaxed);
                        let mut at = at2.lock().unwrap();
                        if at.len() < 10 {
                            at.push(start.elapsed().as_secs_f64());
                        }
                    }
                    playback.block(buf[..got].iter().any(|x| x.abs() > 1e-4));
                }
            })
            .expect("spawn paced speaker");
        (
            Self {
                stop,
                underruns,
                underrun_at,
                thread: Some(thread),
            },
            OutputPort {
                prod,
                format,
                prefill_ms: 80.0,
                cut: Some(cut),
            },
        )
    }
}

impl Drop for PacedSpeaker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A microphone that speaks the conversation at real time, in 10 ms blocks on
/// absolute deadlines, listening to the speaker; the input ends after the last reply.
struct ScriptedMic {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<Conversation>>,
}

/// What the microphone shares: the turns as they begin (for the recogniser's script)
/// and the moments each turn's speech began and ended.
#[derive(Default)]
struct MicShare {
    live: Arc<Mutex<Vec<Spoken>>>,
    starts: Mutex<Vec<Instant>>,
    ends: Mutex<Vec<Instant>>,
}

impl ScriptedMic {
    fn start(
        mut c: Conversation,
        playback: Arc<Playback>,
        probe: Arc<Probe>,
        share: Arc<MicShare>,
        meters: Arc<Meters>,
    ) -> (Self, InputPort) {
        let format = AudioFormat {
            sample_rate: RATE as u32,
            channels: 1,
        };
        let (mut prod, cons) = ring_for(format, 2.0);
        let ended = Arc::new(AtomicBool::new(false));
        let stop = Arc::new(AtomicBool::new(false));
        let (ended2, stop2) = (ended.clone(), stop.clone());
        let thread = std::thread::Builder::new()
            .name("scripted-mic".into())
            .spawn(move || {
                promote_like_a_device_callback();
                let mut buf = vec![0.0f32; BLOCK];
                let start = Instant::now();
                let (mut known, mut speaking) = (0, false);
                let mut last_heard = (false, false);
                let trace = std::env::var_os("BENCH_TRACE").is_some();
                for i in 0u64.. {
                    let due = start + Duration::from_millis(10 * i);
                    if let Some(w) = due.checked_duration_since(Instant::now()) {
                        std::thread::sleep(w);
                    }
                    if stop2.load(Ordering::Relaxed) {
                        break;
                    }
                    let heard = Heard {
                        playing: playback.playing(),
                        replying: probe.replying.load(Ordering::Relaxed),
                    };
                    if trace && (heard.playing, heard.replying) != last_heard {
                        eprintln!(
                            "    {:.2} s playing {} replying {}",
                            start.elapsed().as_secs_f64(),
                            heard.playing,
                            heard.replying
                        );
                        last_heard = (heard.playing, heard.replying);
                    }
                    c.block(heard, &mut buf);
                    if c.over() {
                        eprintln!(
                            "  the last reply is over at {:.1} s",
                            start.elapsed().as_secs_f64()
                        );
                        break;
                    }
                    // The recogniser's script learns of a turn before its first sample.
                    if c.spoken().len() > known {
                        for t in &c.spoken()[known..] {
                            // Progress as it goes: a run is minutes long.
                            eprintln!(
                                "  turn {}/{} ({:?}) at {:.1} s{}{}",
                                t.turn + 1,
                                c.plan().len(),
                                t.kind,
                                start.elapsed().as_secs_f64(),
                                if t.over_reply { ", over a reply" } else { "" },
                                if t.timed_out {
                                    ", after a wait given up"
                                } else {
                                    ""
                                },
                            );
                        }
                        share
                            .live
                            .lock()
                            .unwrap()
                            .extend_from_slice(&c.spoken()[known..]);
                        known = c.spoken().len();
                    }
                    let peak = buf.iter().fold(0f32, |m, x| m.max(x.abs()));
                    if speaking && peak == 0.0 {
                        share.ends.lock().unwrap().push(Instant::now());
                    }
                    if !speaking && peak > 0.0 {
                        share.starts.lock().unwrap().push(Instant::now());
                    }
                    speaking = peak > 0.0;
                    meters.raise_mic(peak);
                    if prod.push_slice(&buf) < buf.len() {
                        meters.xruns_in.fetch_add(1, Ordering::Relaxed);
                    }
                }
                ended2.store(true, Ordering::Release);
                c
            })
            .expect("spawn scripted microphone");
        (
            Self {
                stop,
                thread: Some(thread),
            },
            InputPort::Ring {
                cons,
                format,
                ended,
            },
        )
    }

    /// Stop (if the engine stopped first) and hand back the conversation as spoken.
    fn finish(mut self) -> Option<Conversation> {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.take()?.join().ok()
    }
}

impl Drop for ScriptedMic {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Quiet that counts as the speaker having stopped (as the WAV figure's 4 frames).
const QUIET_RUN_MS: u64 = 320;

/// A barge-in on the wall clock.
#[derive(Debug, PartialEq)]
enum BargeIn {
    /// From its onset to the first moment from which the speaker stays quiet for
    /// `QUIET_RUN_MS`, in ms.
    Quiet(f64),
    /// Nothing played in the `QUIET_RUN_MS` before its onset: nothing to stop.
    NothingPlayed,
    /// The speaker never stayed quiet that long after it.
    NeverQuiet,
}

/// The barge-in beginning at `start`, from the speaker's changes between sound (true)
/// and quiet.
fn barge_in_wall(changes: &[(Instant, bool)], start: Instant) -> BargeIn {
    let run = Duration::from_millis(QUIET_RUN_MS);
    let at = |t: Instant| changes.iter().rev().find(|c| c.0 <= t).is_some_and(|c| c.1);
    let window = start.checked_sub(run).unwrap_or(start);
    let played = at(window) || changes.iter().any(|c| c.1 && c.0 > window && c.0 <= start);
    if !played {
        return BargeIn::NothingPlayed;
    }
    // Lasting quiet can only begin at the onset or where the sound stopped after it.
    let candidates =
        std::iter::once(start).chain(changes.iter().filter(|c| !c.1 && c.0 > start).map(|c| c.0));
    candidates
        .filter(|&t| !at(t))
        .find(|&t| !changes.iter().any(|c| c.1 && c.0 > t && c.0 <= t + run))
        .map_or(BargeIn::NeverQuiet, |t| {
            BargeIn::Quiet(t.duration_since(start).as_secs_f64() * 1e3)
        })
}

/// Peak resident memory of this process (VmHWM), in bytes.
fn peak_rss() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// The turns' latencies read off the output (aligned sample for sample with the
/// input): first audio for the answered turns, barge-in for the barge-in turns, and
/// the first audio of the others by kind.
fn turn_figures(spoken: &[Spoken], out: &[f32]) -> (Figures, Vec<(Kind, f64)>) {
    let frames = out.len() / FRAME;
    let mut f = Figures::default();
    let mut others = Vec::new();
    for (i, t) in spoken.iter().enumerate() {
        let next = spoken.get(i + 1).map_or(frames, |n| n.speech.start / FRAME);
        match (t.kind, first_audio_ms(out, &t.speech, next)) {
            (Kind::Answered, Some(ms)) => f.end_to_audio_ms.push(ms),
            (k, Some(ms)) => others.push((k, ms)),
            (_, None) => {}
        }
        if t.kind == Kind::BargeIn {
            match barge_in_ms(out, t.speech.start) {
                Some(ms) => f.barge_in_ms.push(ms),
                None => f.missed += 1,
            }
        }
    }
    (f, others)
}

/// The longest stretch of silent frames that counts as a gap inside a reply (longer
/// is the silence between turns).
const MAX_GAP_FRAMES: usize = 6;

/// Gaps inside replies on the output's timeline: runs of frames of exact silence (a
/// synthesiser's frames are never all zeros; the turn machine's stand-in for a frame
/// not ready is) between frames of sound, up to `MAX_GAP_FRAMES` long. The user hears
/// them as the reply stalling; a speaker's underrun count does not see them, since the
/// silence reaches it in time. How many gaps and how many frames in all.
fn reply_gaps(out: &[f32]) -> (usize, usize) {
    let zero: Vec<bool> = out
        .chunks_exact(FRAME)
        .map(|f| f.iter().all(|&x| x == 0.0))
        .collect();
    let (mut gaps, mut frames, mut run, mut after_sound) = (0, 0, 0, false);
    for z in zero {
        if z {
            run += 1;
            continue;
        }
        if after_sound && (1..=MAX_GAP_FRAMES).contains(&run) {
            gaps += 1;
            frames += run;
        }
        (run, after_sound) = (0, true);
    }
    (gaps, frames)
}

/// Where the time from the end of speech to the first audio goes, for the answered
/// turns: one line of p50s.
fn print_breakdown(
    spoken: &[Spoken],
    ends: &[Instant],
    probe: &Probe,
    onsets: &[Instant],
    out: &mut dyn std::io::Write,
) -> Result<()> {
    let traces = probe.replies.lock().unwrap().clone();
    let fin = probe.stt_final_ms.lock().unwrap().clone();
    let ms = |a: Instant, b: Option<Instant>| {
        b.map(|b| b.saturating_duration_since(a).as_secs_f64() * 1e3)
    };
    let mut stages: [Vec<f64>; 10] = Default::default();
    for (i, t) in spoken.iter().enumerate() {
        if t.kind != Kind::Answered {
            continue;
        }
        let Some(&end) = ends.get(i) else { continue };
        let next_end = ends.get(i + 1).copied();
        let Some(r) = traces
            .iter()
            .find(|r| r.asked >= end && next_end.is_none_or(|n| r.asked < n))
        else {
            continue;
        };
        if let Some(f) = fin.get(i) {
            stages[0].push(f.0);
        }
        let asked = ms(end, Some(r.asked));
        let parts = [
            asked,
            r.llm_began.map(|b| ms(r.asked, Some(b)).unwrap_or(0.0)),
            r.llm_began.and_then(|b| ms(b, r.llm_first)),
            r.llm_first.and_then(|b| ms(b, r.first_text)),
            r.first_text.and_then(|b| ms(b, r.last_text)),
            r.last_text.and_then(|b| ms(b, r.first_audio)),
        ];
        for (k, v) in parts.into_iter().enumerate() {
            if let Some(v) = v {
                stages[k + 1].push(v);
            }
        }
        stages[7].push(r.chars as f64);
        if let Some(tok) = r.prompt_tokens {
            stages[8].push(tok as f64);
        }
        // What is left: from the synthesiser's first frame to its sound at the
        // speaker (the engine's output queue).
        if let Some(first) = r.first_audio {
            if let Some(&heard) = onsets.iter().find(|&&o| o >= first) {
                stages[9].push(ms(first, Some(heard)).unwrap_or(0.0));
            }
        }
    }
    let p = |k: usize| percentiles(&stages[k]).p50;
    writeln!(
        out,
        "end of speech → first audio, stage by stage (p50 over {} answered turns): recogniser's last words {:.0} ms; \
         end of speech → the turn machine asks {:.0} ms (holds the last words, the turn rule's wait and the input's framing); \
         LLM thread still busy {:.0} ms; LLM reads what was left ({:.0} prompt tokens) and writes its first piece {:.0} ms; \
         to the synthesiser {:.0} ms; text waited for {:.0} ms ({:.0} characters); synthesiser's first frame {:.0} ms; \
         frame → speaker {:.0} ms",
        stages[1].len(),
        p(0),
        p(1),
        p(2),
        p(8),
        p(3),
        p(4),
        p(5),
        p(7),
        p(6),
        p(9),
    )?;
    let prep = probe.prepare_ms.lock().unwrap().clone();
    if !prep.is_empty() {
        let v: Vec<f64> = prep.iter().map(|x| x.0).collect();
        let pp = percentiles(&v);
        writeln!(
            out,
            "LLM reading ahead while the user speaks: {} reads, p50 {:.0} ms, max {:.0} ms, {} prompt tokens in all",
            prep.len(),
            pp.p50,
            pp.max,
            prep.iter().map(|x| x.1).sum::<u64>()
        )?;
    }
    Ok(())
}

/// Run the conversation through the engine and print the figures.
pub fn run(parts: Parts, minutes: f64, out: &mut dyn std::io::Write) -> Result<()> {
    let plan = script::plan(script::turns_for_minutes(minutes), script::SEED);
    let count = |k: Kind| plan.iter().filter(|t| t.kind == k).count();
    let probe = Arc::new(Probe::default());
    for d in &parts.description {
        writeln!(out, "  {d}")?;
    }
    let settings = TurnSettings {
        // A spoken answer of a sentence or two; random weights never stop on their own.
        max_tokens: 40,
        temperature: 0.0,
        ..TurnSettings::default()
    };
    let share = Arc::new(MicShare::default());
    let stt = ScriptedStt::new(parts.stt, share.live.clone(), probe.clone());
    // As the cascade's loader puts it on a CPU: on a thread of its own.
    let tts = crate::models::speech::tts::worker::TtsThread::spawn(Box::new(TimedTts {
        inner: parts.tts,
        probe: probe.clone(),
    }))?;
    let llm = Arc::new(TimedLlm {
        inner: parts.llm,
        probe: probe.clone(),
        tokens_read: parts.tokens_read,
    });
    let model = Cascade::new(Box::new(stt), Box::new(tts), llm, "cpu", settings);
    let mut model = Some(model);

    let dir = std::env::temp_dir().join(format!("assistant-bench-cpu-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let wav_path = dir.join("out.wav");
    let meters = Arc::new(Meters::default());
    let playback = Playback::new();
    let played = playback.clone();
    let (speaker, port) = PacedSpeaker::start(playback.clone());
    let (mic, input) = ScriptedMic::start(
        Conversation::new(plan.clone()),
        playback,
        probe.clone(),
        share.clone(),
        meters.clone(),
    );
    let (ev_tx, ev_rx) = crossbeam_channel::unbounded();
    let (_cmd_tx, cmd_rx) = crossbeam_channel::unbounded();
    let loader = runner::loader(move |_| {
        model
            .take()
            .map(|m| Loaded::plain(Box::new(m)))
            .ok_or_else(|| crate::engine::load::LoadFailure {
                message: "the bench loads its model once".into(),
                remedy: String::new(),
            })
    });
    let setup = EngineSetup {
        speaker: Some(port),
        wav_out: Some(WavSink::create(&wav_path, RATE as u32)?),
        max_backlog: 3,
        ..EngineSetup::new(loader, input, meters, ev_tx, cmd_rx)
    };
    writeln!(
        out,
        "  {} turns (seed {}): {} answered (first audio), {} talked over, {} barge-ins (barge-in); each waits on the reply before it, about {minutes} min …",
        plan.len(),
        script::SEED,
        count(Kind::Answered),
        count(Kind::TalkedOver),
        count(Kind::BargeIn),
    )?;
    out.flush()?;
    let seen = probe.clone();
    let drain = std::thread::spawn(move || {
        for ev in ev_rx {
            if let crate::bus::EngineEvent::Step(s) = ev {
                seen.dropped.store(s.dropped_frames, Ordering::Relaxed);
            }
        }
    });
    let began = Instant::now();
    // A run never outlasts its bound, whatever the parts do: past it the microphone
    // stops, the engine plays out what it has, and the report says so.
    let bound = Duration::from_secs_f64((minutes * 60.0 * 3.0).max(minutes * 60.0 + 240.0));
    let cut = Arc::new(AtomicBool::new(false));
    let (done_tx, done_rx) = crossbeam_channel::bounded::<()>(0);
    let watchdog = {
        let (stop, cut) = (mic.stop.clone(), cut.clone());
        std::thread::spawn(move || {
            if done_rx.recv_timeout(bound) == Err(crossbeam_channel::RecvTimeoutError::Timeout) {
                cut.store(true, Ordering::Relaxed);
                stop.store(true, Ordering::Relaxed);
            }
        })
    };
    let stats = runner::run(setup);
    drop(done_tx);
    let _ = watchdog.join();
    let conversation = mic.finish();
    let underruns = speaker.underruns.load(Ordering::Relaxed);
    let underrun_at = speaker.underrun_at.lock().unwrap().clone();
    drop(speaker);
    let _ = drain.join();
    if let Some(e) = &stats.error {
        anyhow::bail!("the engine stopped: {e}");
    }
    let conversation =
        conversation.context("the scripted microphone stopped before the conversation ended")?;
    let audio = crate::audio::wav::read_wav(&wav_path)?;
    let _ = std::fs::remove_dir_all(&dir);

    let spoken = conversation.spoken();
    let (figures, others) = turn_figures(spoken, &audio.samples);
    let (gaps, gap_frames) = reply_gaps(&audio.samples);
    if cut.load(Ordering::Relaxed) {
        writeln!(
            out,
            "CUT SHORT: the run reached its bound of {:.0} s; the figures below are from the turns spoken by then",
            bound.as_secs_f64()
        )?;
    }
    writeln!(
        out,
        "turns: {} of {} spoken in {:.1} min ({} over a playing reply, {} waits for a reply given up after 45 s)",
        spoken.len(),
        plan.len(),
        began.elapsed().as_secs_f64() / 60.0,
        spoken.iter().filter(|t| t.over_reply).count(),
        spoken.iter().filter(|t| t.timed_out).count(),
    )?;
    writeln!(
        out,
        "input frames: {} in, {} dropped; output underruns (10 ms blocks, after the first second): {underruns}; \
         gaps inside replies (silent frames the synthesiser had nothing ready for, the reply going on after them): {gaps} ({gap_frames} frames)",
        stats.frames_in, stats.dropped_frames
    )?;
    if !underrun_at.is_empty() {
        // Beside the turns' start times above (the two clocks start together).
        let at: Vec<String> = underrun_at.iter().map(|t| format!("{t:.2} s")).collect();
        writeln!(out, "  underruns at: {}", at.join(", "))?;
    }
    if !stats.step_ms.is_empty() {
        let p = percentiles(&stats.step_ms);
        writeln!(
            out,
            "engine step (the turn machine, the recogniser's feed, the synthesiser's frames handed over): p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms; {} of {} over 80 ms",
            p.p50,
            p.p99,
            p.max,
            stats.step_ms.iter().filter(|&&ms| ms > 80.0).count(),
            stats.step_ms.len()
        )?;
    }
    let stt = probe.stt_ms.lock().unwrap().clone();
    let during: Vec<f64> = stt.iter().filter(|s| s.1).map(|s| s.0).collect();
    let quiet: Vec<f64> = stt.iter().filter(|s| !s.1).map(|s| s.0).collect();
    for (label, v) in [("while the TTS speaks", &during), ("otherwise", &quiet)] {
        if !v.is_empty() {
            let p = percentiles(v);
            writeln!(
                out,
                "recogniser step {label}: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms ({} steps; budget 80 ms)",
                p.p50, p.p99, p.max, v.len()
            )?;
        }
    }
    let fin = probe.stt_final_ms.lock().unwrap().clone();
    if !fin.is_empty() {
        let v: Vec<f64> = fin.iter().map(|x| x.0).collect();
        let p = percentiles(&v);
        writeln!(
            out,
            "recogniser's last words after the end of speech: p50 {:.0} ms, p95 {:.0} ms ({} turns; {} not finished within {} ms)",
            p.p50,
            p.p95,
            v.len(),
            fin.iter().filter(|x| !x.1).count(),
            FALLBACK_FRAMES * 80
        )?;
    }
    let tts = probe.tts_ms.lock().unwrap().clone();
    if !tts.is_empty() {
        let p = percentiles(&tts);
        let mean = tts.iter().sum::<f64>() / tts.len() as f64;
        writeln!(
            out,
            "synthesiser: {:.1}x real time (mean {:.1} ms per 80 ms frame of speech; p99 {:.1} ms; {} frames)",
            80.0 / mean,
            mean,
            p.p99,
            tts.len()
        )?;
    }
    let llm = probe.llm_first_ms.lock().unwrap().clone();
    if !llm.is_empty() {
        let p = percentiles(&llm);
        writeln!(
            out,
            "LLM first piece after the request: p50 {:.0} ms, p95 {:.0} ms ({} replies)",
            p.p50,
            p.p95,
            llm.len()
        )?;
    }
    let rate = probe.llm_rate.lock().unwrap().clone();
    let (n, ms) = rate
        .iter()
        .fold((0u64, 0f64), |(n, ms), r| (n + r.0, ms + r.1));
    if n > 0 {
        writeln!(
            out,
            "LLM writing: {:.1} tokens/s ({:.0} ms a token, {} replies)",
            n as f64 * 1e3 / ms,
            ms / n as f64,
            rate.len()
        )?;
    }
    writeln!(
        out,
        "LLM: {} pieces written (the first reply began {:?}: the LLM writes the scripted reply's tokens), the synthesiser given {} characters",
        probe.llm_pieces.load(Ordering::Relaxed),
        probe.llm_sample.lock().unwrap(),
        probe.tts_chars.load(Ordering::Relaxed),
    )?;
    print_figures(&figures, out)?;
    writeln!(
        out,
        "  (first audio from the {} answered turns, whose replies play out; barge-in from the {} barge-in turns; \
         end of speech → first audio includes the recogniser's last words above and the turn rule's own wait of {TURN_RULE_WAIT_MS:.0} ms of quiet, which overlap; it is read on the output WAV, whose frames follow the input's: it leaves out the input frames the engine dropped (each makes it read 80 ms early) and the output queue, so the wall-clock line below is the user's wait)",
        count(Kind::Answered),
        count(Kind::BargeIn),
    )?;
    for (kind, label) in [
        (Kind::TalkedOver, "turns then talked over"),
        (Kind::BargeIn, "barge-in turns (their own reply)"),
    ] {
        let v: Vec<f64> = others.iter().filter(|o| o.0 == kind).map(|o| o.1).collect();
        if !v.is_empty() {
            let p = percentiles(&v);
            writeln!(
                out,
                "  first audio of the {label}: p50 {:.0} ms, p95 {:.0} ms ({} replies)",
                p.p50,
                p.p95,
                v.len()
            )?;
        }
    }
    let ends = share.ends.lock().unwrap().clone();
    let changes = played.changes.lock().unwrap().clone();
    let onsets: Vec<Instant> = changes.iter().filter(|c| c.1).map(|c| c.0).collect();
    // The user's wait on the wall clock: the output WAV's frames follow the input's,
    // so its figure leaves out the engine's backlog of input and its output queue.
    let waited: Vec<f64> = spoken
        .iter()
        .enumerate()
        .filter(|(_, t)| t.kind == Kind::Answered)
        .filter_map(|(i, _)| {
            let end = *ends.get(i)?;
            let until = ends.get(i + 1).copied();
            let heard = onsets
                .iter()
                .find(|&&o| o > end && until.is_none_or(|u| o < u))?;
            Some(heard.duration_since(end).as_secs_f64() * 1e3)
        })
        .collect();
    if !waited.is_empty() {
        let p = percentiles(&waited);
        writeln!(
            out,
            "end of speech → first sound at the speaker (wall clock, the user's wait): p50 {:.0} ms, p95 {:.0} ms, max {:.0} ms ({} replies)",
            p.p50,
            p.p95,
            p.max,
            waited.len()
        )?;
        // The measure: the bench signals the end of the turn at the end of
        // speech, and the turn rule's own wait is counted apart.
        writeln!(
            out,
            "  less the turn rule's own wait ({TURN_RULE_WAIT_MS:.0} ms of quiet; the recogniser's time stays in): p50 {:.0} ms, p95 {:.0} ms",
            p.p50 - TURN_RULE_WAIT_MS,
            p.p95 - TURN_RULE_WAIT_MS,
        )?;
    }
    let starts = share.starts.lock().unwrap().clone();
    let (mut barge, mut in_quiet, mut never) = (Vec::new(), 0, 0);
    for (i, _) in spoken
        .iter()
        .enumerate()
        .filter(|(_, t)| t.kind == Kind::BargeIn)
    {
        match starts.get(i).map(|&s| barge_in_wall(&changes, s)) {
            Some(BargeIn::Quiet(ms)) => barge.push(ms),
            Some(BargeIn::NothingPlayed) => in_quiet += 1,
            Some(BargeIn::NeverQuiet) | None => never += 1,
        }
    }
    if !barge.is_empty() || in_quiet + never > 0 {
        let p = percentiles(&barge);
        writeln!(
            out,
            "barge-in on the wall clock (onset → the speaker quiet for {QUIET_RUN_MS} ms; the WAV's figure counts to the end of the first quiet frame, up to 80 ms more): \
             p50 {:.0} ms, p95 {:.0} ms, max {:.0} ms ({} over sound; {in_quiet} began in quiet; {never} never fell quiet)",
            p.p50,
            p.p95,
            p.max,
            barge.len()
        )?;
    }
    print_breakdown(spoken, &ends, &probe, &onsets, out)?;
    if let Some(b) = peak_rss() {
        writeln!(out, "peak RSS: {:.2} GiB", b as f64 / (1u64 << 30) as f64)?;
    }
    Ok(())
}

/// `assistant bench cascade --published [--minutes N] [--config 18m] [--tts-q8]
/// [--stt-model-dir DIR] [--shared-threads]`: the exit code.
pub fn run_command(b: &crate::cli::BenchArgs, cascade: &crate::cli::CascadeArgs) -> i32 {
    use crate::models::cpu_share::{set_policy, Policy};
    set_policy(if b.shared_threads {
        Policy::Shared
    } else {
        Policy::Prioritised
    });
    let load = || {
        std::fs::read_to_string("/proc/loadavg")
            .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
            .unwrap_or_default()
    };
    let mut out = std::io::stdout();
    let result = (|| -> Result<()> {
        let work = tempfile_dir()?;
        println!(
            "bench cascade --published: the CPU cascade through the whole engine at real time (load average {})",
            load()
        );
        let t = Instant::now();
        let parts = published(
            cascade.stt_model_dir.as_deref(),
            &b.config,
            cascade.tts_q8,
            cascade.tts_eager_words,
            &work,
        );
        let _ = std::fs::remove_dir_all(&work);
        let parts = parts?;
        println!("  parts built in {:.1} s", t.elapsed().as_secs_f64());
        run(parts, b.minutes, &mut out)?;
        println!("load average after: {}", load());
        println!(
            "targets: 0 frames dropped and 0 underruns after the first second; recogniser p99 < 80 ms while the TTS speaks; \
             synthesiser >= 2x real time; end of speech -> first audio p50 <= 1.0 s, p95 <= 1.5 s; barge-in p95 <= 200 ms; peak RSS <= 3 GiB"
        );
        Ok(())
    })();
    match result {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("error: {e:#}");
            1
        }
    }
}

/// A directory of our own for the bench's LLM file.
fn tempfile_dir() -> Result<std::path::PathBuf> {
    let d = std::env::temp_dir().join(format!("assistant-bench-llm-{}", std::process::id()));
    std::fs::create_dir_all(&d).with_context(|| format!("creating {}", d.display()))?;
    Ok(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_gap_is_silence_between_sounds_no_longer_than_a_pause_between_turns() {
        let mut out = Vec::new();
        let mut put = |loud: bool, n: usize| {
            out.extend(std::iter::repeat_n(if loud { 0.1 } else { 0.0 }, n * FRAME))
        };
        put(false, 20); // before the first reply: no gap
        put(true, 5);
        put(false, 1); // a gap
        put(true, 3);
        put(false, 3); // a gap
        put(true, 2);
        put(false, MAX_GAP_FRAMES + 1); // between turns
        put(true, 1);
        put(false, 2); // at the end: the reply never went on
        assert_eq!(reply_gaps(&out), (2, 4));
        // Quiet sound is not a gap: only exact zeros are.
        let soft = vec![1e-6f32; 3 * FRAME];
        assert_eq!(reply_gaps(&soft), (0, 0));
    }

    #[test]
    fn a_barge_in_on_the_wall_clock_runs_from_its_onset_to_lasting_quiet_over_sound_only() {
        let t0 = Instant::now() + Duration::from_secs(10);
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        // Sound from 0 to 1100 ms, a 50 ms gap, sound again to 1300, then quiet.
        let changes = vec![
            (at(0), true),
            (at(1100), false),
            (at(1150), true),
            (at(1300), false),
        ];
        let ms = |start: u64| match barge_in_wall(&changes, at(start)) {
            BargeIn::Quiet(v) => Some(v.round() as u64),
            _ => None,
        };
        assert_eq!(ms(1000), Some(300), "the short gap is not the end");
        assert_eq!(ms(1200), Some(100));
        // Sound stopped just before the onset: quiet at once.
        assert_eq!(ms(1400), Some(0));
        // Nothing played in the 320 ms before: not a barge-in.
        assert_eq!(barge_in_wall(&changes, at(1700)), BargeIn::NothingPlayed);
        assert_eq!(barge_in_wall(&[], at(500)), BargeIn::NothingPlayed);
        // Quiet at the window's start, sound beginning inside it.
        let late = vec![(at(1000), true), (at(1200), false)];
        match barge_in_wall(&late, at(1100)) {
            BargeIn::Quiet(v) => assert_eq!(v.round(), 100.0),
            other => panic!("{other:?}"),
        }
        // Sound to the end: it never stopped.
        assert_eq!(
            barge_in_wall(&[(at(0), true)], at(500)),
            BargeIn::NeverQuiet
        );
    }

    #[test]
    fn the_bench_llm_has_qwen2s_tokens_for_the_script_and_writes_its_reply_as_history_holds_it() {
        use crate::engine::cascade::machine::DEFAULT_SYSTEM_PROMPT;
        use crate::models::llm::synthetic::{write_tiny_qwen2, TinyQwen2};
        use crate::models::llm::{GgufLlm, GgufLlmOptions};
        use crate::models::parts::{ChatMessage, ChatRole};
        let j: serde_json::Value = serde_json::from_str(QWEN2_VOCAB).unwrap();
        let mut texts = vec![format!("system\n{DEFAULT_SYSTEM_PROMPT}"), "\n".into()];
        texts.extend(script::QUESTIONS.iter().map(|q| format!("user\n{q}")));
        texts.push(format!("assistant\n{REPLY}"));
        assert_eq!(
            j["texts"],
            serde_json::json!(texts),
            "the script changed: run tools/llama_vocab_fixture/bench.py again"
        );
        let tmp = tempfile::tempdir().unwrap();
        let p = tmp.path().join("qwen2-vocab.gguf");
        let shape = TinyQwen2 {
            vocab: Some(QWEN2_VOCAB),
            tied: true,
            ..TinyQwen2::default()
        };
        write_tiny_qwen2(&p, &shape).unwrap();
        let options = GgufLlmOptions {
            scripted_reply: Some(REPLY.into()),
            ..GgufLlmOptions::default()
        };
        let llm = GgufLlm::load(&p, &Device::Cpu, &options, &Cancel::new()).unwrap();
        // Qwen's tokenizer: about 1.3 tokens a word of English (the tiny one: 3-4).
        let per_word = |t: &str| llm.count_tokens(t) as f64 / t.split(' ').count() as f64;
        for t in script::QUESTIONS.iter().chain([&REPLY]) {
            assert!((1.0..1.45).contains(&per_word(t)), "{t}: {}", per_word(t));
        }
        let message = |role, content: &str| ChatMessage {
            role,
            content: content.into(),
        };
        let mut request = ChatRequest {
            system: DEFAULT_SYSTEM_PROMPT.into(),
            messages: vec![message(ChatRole::User, script::QUESTIONS[0])],
            temperature: 0.0,
            max_tokens: 200,
            model: None,
        };
        let mut reply = String::new();
        llm.stream(&request, &Cancel::new(), &mut |p| reply.push_str(p))
            .unwrap();
        assert_eq!(reply, REPLY);
        // The cache holds the reply as the history will: the next turn reads only
        // its own words.
        request.messages.push(message(ChatRole::Assistant, REPLY));
        request
            .messages
            .push(message(ChatRole::User, script::QUESTIONS[1]));
        let read = llm.tokens_read();
        llm.stream(&request, &Cancel::new(), &mut |_| {}).unwrap();
        let own = llm.count_tokens(&format!("user\n{}", script::QUESTIONS[1])) as u64;
        assert!(
            llm.tokens_read() - read <= own + 8,
            "{} tokens read for a turn of {own}",
            llm.tokens_read() - read
        );
    }

    #[test]
    fn ten_minutes_plan_twenty_turns_or_more_some_talked_over() {
        let plan = script::plan(script::turns_for_minutes(10.0), script::SEED);
        assert!(plan.len() >= 20, "{}", plan.len());
        let barge = plan.iter().filter(|t| t.kind == Kind::BargeIn).count();
        assert!(barge >= 5 && barge < plan.len() / 2, "{barge}");
    }

    /// The plan laid out with quiet between turns, shared as the microphone shares it.
    fn rehearsal(turns: usize, quiet_s: f64) -> (Vec<f32>, Vec<Spoken>, Arc<Mutex<Vec<Spoken>>>) {
        let (pcm, spoken) = script::rehearse(&script::plan(turns, script::SEED), quiet_s);
        let live = Arc::new(Mutex::new(spoken.clone()));
        (pcm, spoken, live)
    }

    #[test]
    fn the_figures_come_from_their_own_turns() {
        // Output: a reply 400 ms after each turn, playing until the next turn starts
        // (or 3 s); a barge-in turn silences it 160 ms after its onset.
        let (pcm, spoken, _) = rehearsal(8, 4.0);
        let mut out = vec![0.0f32; pcm.len()];
        for (i, t) in spoken.iter().enumerate() {
            let from = t.speech.end + RATE * 4 / 10;
            let mut to = from + 3 * RATE;
            if let Some(n) = spoken.get(i + 1) {
                to = to.min(if n.kind == Kind::BargeIn {
                    n.speech.start + RATE * 16 / 100
                } else {
                    n.speech.start
                });
            }
            let to = to.min(out.len());
            out[from..to].fill(0.1);
        }
        let (f, others) = turn_figures(&spoken, &out);
        let kinds = |k: Kind| spoken.iter().filter(|t| t.kind == k).count();
        assert_eq!(f.end_to_audio_ms.len(), kinds(Kind::Answered));
        assert_eq!(f.barge_in_ms.len() + f.missed, kinds(Kind::BargeIn));
        assert_eq!(others.len(), spoken.len() - kinds(Kind::Answered));
        // 400 ms to the end of the frame that holds the reply's start.
        assert!(
            f.end_to_audio_ms
                .iter()
                .all(|ms| (400.0..=480.0).contains(ms)),
            "{f:?}"
        );
    }

    /// A recogniser that hears nothing until `ends_after` frames after the first turn,
    /// then says the user is done (`None`: never).
    struct Deaf {
        frame: usize,
        ends_at: Option<usize>,
    }
    impl SpeechToText for Deaf {
        fn name(&self) -> String {
            "deaf".into()
        }
        fn step(&mut self, _pcm: &[f32]) -> Result<SttStep> {
            self.frame += 1;
            let done = self.ends_at.is_some_and(|e| self.frame > e);
            Ok(SttStep {
                end_of_speech: Some(if done { 0.9 } else { 0.0 }),
                ..SttStep::default()
            })
        }
        fn delay_frames(&self) -> usize {
            6
        }
        fn reset(&mut self) {}
    }

    /// The frames at which each word of the first turn came, and the first frame
    /// after its speech at which the script says the user is done.
    fn first_turn(ends_after: Option<usize>) -> (Vec<(usize, String)>, Option<usize>, Spoken) {
        let (_, turns, live) = rehearsal(2, 8.0);
        let t0 = turns[0].clone();
        let end = t0.speech.end.div_ceil(FRAME);
        let deaf = Deaf {
            frame: 0,
            ends_at: ends_after.map(|n| end + n),
        };
        let mut stt = ScriptedStt::new(Box::new(deaf), live, Arc::new(Probe::default()));
        let frame = vec![0.0; FRAME];
        let (mut words, mut done_at) = (Vec::new(), None);
        for f in 0..end + FALLBACK_FRAMES + 10 {
            let s = stt.step(&frame).unwrap();
            words.extend(s.words.iter().map(|w| (f, w.clone())));
            if f >= end && s.end_of_speech == Some(1.0) && done_at.is_none() {
                done_at = Some(f);
            }
        }
        (words, done_at, t0)
    }

    #[test]
    fn the_scripted_recogniser_gives_words_late_by_its_delay_and_the_last_ones_when_the_recogniser_is_done(
    ) {
        let (words, done_at, t0) = first_turn(Some(9));
        let said: Vec<&str> = words.iter().map(|(_, w)| w.as_str()).collect();
        assert_eq!(said, t0.words);
        // The first word comes 6 frames (the delay) after its audio ended, not before.
        let first_end = t0.speech.start + t0.speech.len() / t0.words.len();
        assert_eq!(words[0].0, first_end / FRAME + 6);
        // The last words and the end of the turn wait for the recogniser.
        let end = t0.speech.end.div_ceil(FRAME);
        assert_eq!(done_at, Some(end + 9));
        assert_eq!(words.last().unwrap().0, end + 9);
    }

    #[test]
    fn whisper_finishes_a_scripted_turn_only_after_the_speech_and_its_quiet() {
        use crate::models::speech::stt::whisper::{synthetic, Threading, WhisperStt};
        let stt =
            WhisperStt::with_random_weights(&synthetic::tiny_config(), Threading::Inline).unwrap();
        let (pcm, turns, live) = rehearsal(2, 8.0);
        let mut s = ScriptedStt::new(Box::new(stt), live, Arc::new(Probe::default()));
        for frame in pcm.chunks_exact(FRAME) {
            s.step(frame).unwrap();
        }
        let end = turns[0].speech.end.div_ceil(FRAME);
        let fin = s.finished[0].expect("the turn finished");
        // The recogniser's utterance ends after 4 quiet frames (320 ms).
        assert!(
            fin + 1 >= end + 4,
            "finished at {fin}, speech ended at {end}"
        );
    }

    #[test]
    fn a_recogniser_that_never_finishes_is_cut_off_by_the_script() {
        let (words, done_at, t0) = first_turn(None);
        assert_eq!(words.len(), t0.words.len());
        assert_eq!(
            done_at,
            Some(t0.speech.end.div_ceil(FRAME) + FALLBACK_FRAMES)
        );
    }
}
