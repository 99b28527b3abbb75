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

use super::bench_cascade::{analyze, print_figures, Figures};
use crate::audio::device::{ring_for, AudioFormat};
use crate::audio::meters::Meters;
use crate::audio::port::{FilePacer, OutputPort};
use crate::audio::wav::{WavAudio, WavSink};
use crate::bus::Cancel;
use crate::engine::cascade::{
    Cascade, ChatRequest, Llm, LlmError, SpeechToText, SttStep, TextToSpeech, TtsStep, TurnSettings,
};
use crate::engine::runner::{self, EngineSetup, Loaded};
use crate::engine::stats::percentiles;
use anyhow::Result;
use ringbuf::traits::{Consumer, Observer};
use std::ops::Range;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const RATE: usize = 24_000;
const FRAME: usize = 1920;
/// The turn machine's wait after speech when the recogniser says the user is done.
pub const TURN_RULE_WAIT_MS: f64 = 320.0;

/// Questions the script asks (15 words or so, as people ask a voice assistant).
const QUESTIONS: &[&str] = &[
    "what is the weather going to be like tomorrow morning when I walk to the station",
    "can you remind me how long I should boil an egg so the yolk stays soft",
    "tell me something interesting about the history of the town where I grew up please",
    "how many minutes does it take to drive from here to the airport in the evening",
    "what would be a good name for a small grey cat that likes to sleep all day",
    "explain in simple words why the sky looks blue in the middle of a sunny day",
];

/// One turn of the script: the user's speech, and whether they talk over the reply.
#[derive(Debug, Clone)]
pub struct Turn {
    pub speech: Range<usize>,
    pub words: Vec<&'static str>,
    pub barge_in: bool,
}

/// The conversation: `minutes` of audio, turns of about 3 s of speech, every third
/// one talked over 2.5 s after the user stops (the next question starts over the
/// reply), the others left to finish (8 s of quiet).
pub fn script(minutes: f64) -> (Vec<f32>, Vec<Turn>) {
    let total = (minutes * 60.0 * RATE as f64) as usize;
    let mut pcm = vec![0.0f32; RATE];
    let mut turns = Vec::new();
    let mut i = 0;
    while pcm.len() + 14 * RATE < total {
        let words: Vec<&'static str> = QUESTIONS[i % QUESTIONS.len()].split(' ').collect();
        let secs = words.len() as f64 * 0.2;
        let v = super::bench_cascade::voice(secs, 110.0 + 13.0 * (i % 5) as f64, 0.2);
        let barge_in = i % 3 == 2;
        turns.push(Turn {
            speech: pcm.len()..pcm.len() + v.len(),
            words,
            barge_in,
        });
        pcm.extend(v);
        // Onsets land anywhere in a frame: 37 ms apart, modulo 80.
        let jitter = (i * 37) % 80 * RATE / 1000;
        let quiet = if barge_in { 2.5 } else { 8.0 };
        pcm.extend(std::iter::repeat_n(
            0.0,
            (quiet * RATE as f64) as usize + jitter,
        ));
        i += 1;
    }
    (pcm, turns)
}

/// What the wrapped parts saw, shared with the bench.
#[derive(Default)]
pub struct Probe {
    /// The synthesiser is producing audio (set by its wrapper).
    speaking: AtomicBool,
    /// Recogniser step times in ms, with whether the synthesiser was speaking then.
    stt_ms: Mutex<Vec<(f64, bool)>>,
    /// Synthesiser step times in ms for frames that carried audio.
    tts_ms: Mutex<Vec<f64>>,
    tts_audio_frames: AtomicU64,
    /// The LLM's first piece after each request, in ms.
    llm_first_ms: Mutex<Vec<f64>>,
}

/// The recogniser, timed, with the script's words and end of turn.
struct ScriptedStt {
    inner: Box<dyn SpeechToText>,
    probe: Arc<Probe>,
    frame: usize,
    /// (frame at which the word is given, word)
    words: Vec<(usize, String)>,
    next_word: usize,
    /// Frames (by index) in which the user is speaking.
    speech: Vec<Range<usize>>,
}

impl ScriptedStt {
    fn new(inner: Box<dyn SpeechToText>, turns: &[Turn], probe: Arc<Probe>) -> Self {
        let delay = inner.delay_frames();
        let mut words = Vec::new();
        for t in turns {
            let n = t.words.len().max(1);
            for (k, w) in t.words.iter().enumerate() {
                // A word is complete at the end of its share of the speech.
                let end = t.speech.start + (k + 1) * t.speech.len() / n;
                words.push((end / FRAME + delay, w.to_string()));
            }
        }
        let speech = turns
            .iter()
            .map(|t| t.speech.start / FRAME..t.speech.end.div_ceil(FRAME))
            .collect();
        Self {
            inner,
            probe,
            frame: 0,
            words,
            next_word: 0,
            speech,
        }
    }
}

impl SpeechToText for ScriptedStt {
    fn name(&self) -> String {
        self.inner.name()
    }
    fn step(&mut self, pcm: &[f32]) -> Result<SttStep> {
        let speaking = self.probe.speaking.load(Ordering::Relaxed);
        let t = Instant::now();
        self.inner.step(pcm)?;
        let ms = t.elapsed().as_secs_f64() * 1e3;
        self.probe.stt_ms.lock().unwrap().push((ms, speaking));
        let f = self.frame;
        self.frame += 1;
        let mut out = SttStep::default();
        while let Some((at, w)) = self.words.get(self.next_word) {
            if *at > f {
                break;
            }
            out.words.push(w.clone());
            self.next_word += 1;
        }
        // The user is done from the first frame after their speech until the next.
        let in_speech = self.speech.iter().any(|r| r.contains(&f));
        out.end_of_speech = Some(if in_speech { 0.0 } else { 1.0 });
        Ok(out)
    }
    fn delay_frames(&self) -> usize {
        self.inner.delay_frames()
    }
    fn reset(&mut self) {
        self.inner.reset()
    }
}

/// The synthesiser, timed.
struct TimedTts {
    inner: Box<dyn TextToSpeech>,
    probe: Arc<Probe>,
}

impl TextToSpeech for TimedTts {
    fn name(&self) -> String {
        self.inner.name()
    }
    fn set_voice(&mut self, voice: &str) -> Result<()> {
        self.inner.set_voice(voice)
    }
    fn start(&mut self) {
        self.inner.start()
    }
    fn push_text(&mut self, text: &str) {
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
        }
        Ok(r)
    }
    fn cancel(&mut self) {
        self.probe.speaking.store(false, Ordering::Relaxed);
        self.inner.cancel()
    }
}

/// The LLM, with the time to its first piece.
struct TimedLlm {
    inner: Arc<dyn Llm>,
    probe: Arc<Probe>,
}

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
        let mut first = true;
        self.inner.stream(request, cancel, &mut |p| {
            if first {
                first = false;
                let ms = t.elapsed().as_secs_f64() * 1e3;
                self.probe.llm_first_ms.lock().unwrap().push(ms);
            }
            on_piece(p)
        })
    }
    fn count_tokens(&self, text: &str) -> usize {
        self.inner.count_tokens(text)
    }
    fn prepare(&self, request: &ChatRequest, cancel: &Cancel) -> Result<(), LlmError> {
        self.inner.prepare(request, cancel)
    }
}

/// The three parts, built at the published shapes by the caller.
pub struct Parts {
    pub stt: Box<dyn SpeechToText>,
    pub tts: Box<dyn TextToSpeech>,
    pub llm: Arc<dyn Llm>,
    /// One line each, for the report.
    pub description: Vec<String>,
}

/// A speaker: drains the ring at real time in 10 ms blocks, counting the blocks that
/// found too little (after the first second, once the first reply could have come).
struct PacedSpeaker {
    stop: Arc<AtomicBool>,
    underruns: Arc<AtomicU64>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl PacedSpeaker {
    fn start() -> (Self, OutputPort) {
        let format = AudioFormat {
            sample_rate: RATE as u32,
            channels: 1,
        };
        let (prod, mut cons) = ring_for(format, 2.0);
        let stop = Arc::new(AtomicBool::new(false));
        let underruns = Arc::new(AtomicU64::new(0));
        let (stop2, under2) = (stop.clone(), underruns.clone());
        let thread = std::thread::Builder::new()
            .name("paced-speaker".into())
            .spawn(move || {
                let block = RATE / 100;
                let mut buf = vec![0.0f32; block];
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
                    // A device plays from its first sample on; before that it waits.
                    started |= cons.occupied_len() > 0;
                    let got = cons.pop_slice(&mut buf);
                    if started && got < block && i >= 100 {
                        under2.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
            .expect("spawn paced speaker");
        (
            Self {
                stop,
                underruns,
                thread: Some(thread),
            },
            OutputPort {
                prod,
                format,
                prefill_ms: 80.0,
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

/// Peak resident memory of this process (VmHWM), in bytes.
fn peak_rss() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// Run the conversation through the engine and print the figures.
pub fn run(parts: Parts, minutes: f64, out: &mut dyn std::io::Write) -> Result<()> {
    let (pcm, turns) = script(minutes);
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
    let stt = ScriptedStt::new(parts.stt, &turns, probe.clone());
    let tts = TimedTts {
        inner: parts.tts,
        probe: probe.clone(),
    };
    let llm = Arc::new(TimedLlm {
        inner: parts.llm,
        probe: probe.clone(),
    });
    let model = Cascade::new(Box::new(stt), Box::new(tts), llm, "cpu", settings);
    let mut model = Some(model);

    let dir = std::env::temp_dir().join(format!("assistant-bench-cpu-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let wav_path = dir.join("out.wav");
    let meters = Arc::new(Meters::default());
    let (pacer, input) = FilePacer::start(
        WavAudio {
            samples: pcm.clone(),
            sample_rate: RATE as u32,
            channels: 1,
        },
        meters.clone(),
    );
    let (speaker, port) = PacedSpeaker::start();
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
        "  {} turns ({} talked over) in {:.1} min of audio, at real time …",
        turns.len(),
        turns.iter().filter(|t| t.barge_in).count(),
        pcm.len() as f64 / RATE as f64 / 60.0
    )?;
    out.flush()?;
    let drain = std::thread::spawn(move || for _ in ev_rx {});
    let stats = runner::run(setup);
    drop(pacer);
    let underruns = speaker.underruns.load(Ordering::Relaxed);
    drop(speaker);
    let _ = drain.join();
    if let Some(e) = &stats.error {
        anyhow::bail!("the engine stopped: {e}");
    }
    let audio = crate::audio::wav::read_wav(&wav_path)?;
    let _ = std::fs::remove_dir_all(&dir);

    let bursts: Vec<Range<usize>> = turns.iter().map(|t| t.speech.clone()).collect();
    let figures: Figures = analyze(
        &super::bench_cascade::Script {
            pcm: Vec::new(),
            bursts,
        },
        &audio.samples,
    );
    writeln!(
        out,
        "input frames: {} in, {} dropped; output underruns (10 ms blocks, after the first second): {underruns}",
        stats.frames_in, stats.dropped_frames
    )?;
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
    print_figures(&figures, out)?;
    writeln!(
        out,
        "  (end of speech → first audio includes the turn rule's own wait of {TURN_RULE_WAIT_MS:.0} ms)"
    )?;
    if let Some(b) = peak_rss() {
        writeln!(out, "peak RSS: {:.2} GiB", b as f64 / (1u64 << 30) as f64)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_script_fills_ten_minutes_with_twenty_turns_or_more_some_talked_over() {
        let (pcm, turns) = script(10.0);
        assert!((pcm.len() as f64 / RATE as f64 - 600.0).abs() < 20.0);
        assert!(turns.len() >= 20, "{}", turns.len());
        let barge = turns.iter().filter(|t| t.barge_in).count();
        assert!(barge >= 5 && barge < turns.len() / 2, "{barge}");
        // Every turn is speech, and the quiet between turns is silence.
        for w in turns.windows(2) {
            assert!(w[0].speech.end < w[1].speech.start);
            assert!(pcm[w[0].speech.end..w[1].speech.start]
                .iter()
                .all(|x| *x == 0.0));
        }
    }

    /// A recogniser that hears nothing, to see the script's words and end of turn.
    struct Deaf;
    impl SpeechToText for Deaf {
        fn name(&self) -> String {
            "deaf".into()
        }
        fn step(&mut self, _pcm: &[f32]) -> Result<SttStep> {
            Ok(SttStep::default())
        }
        fn delay_frames(&self) -> usize {
            6
        }
        fn reset(&mut self) {}
    }

    #[test]
    fn the_scripted_recogniser_gives_the_words_late_by_its_delay_and_ends_the_turn_after_speech() {
        let (_, turns) = script(1.0);
        let t0 = &turns[0];
        let mut stt = ScriptedStt::new(Box::new(Deaf), &turns, Arc::new(Probe::default()));
        let frame = vec![0.0; FRAME];
        let mut words = Vec::new();
        let mut done_at = None;
        let last = (t0.speech.end / FRAME) + 10;
        for f in 0..last {
            let s = stt.step(&frame).unwrap();
            words.extend(s.words.iter().map(|w| (f, w.clone())));
            if f > t0.speech.start / FRAME && s.end_of_speech == Some(1.0) && done_at.is_none() {
                done_at = Some(f);
            }
        }
        let said: Vec<&str> = words.iter().map(|(_, w)| w.as_str()).collect();
        assert_eq!(said, t0.words);
        // The first word comes 6 frames (the delay) after its audio ended, not before.
        let first_end = t0.speech.start + t0.speech.len() / t0.words.len();
        assert_eq!(words[0].0, first_end / FRAME + 6);
        assert_eq!(done_at, Some(t0.speech.end.div_ceil(FRAME)));
    }
}
