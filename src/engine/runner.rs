//! The engine thread: owns the model (and its Device), turns device audio into
//! 24 kHz frames, steps the model, and sends audio to the speaker and events to
//! the UI. Neither side blocks the other: when the model falls behind a
//! real-time input, the oldest frames are dropped and counted.

use super::events::{Command, EngineEvent, LoadProgress, Severity, StepStats};
use super::model::{DuplexModel, StepOutput};
use super::residency::{rss_bytes, HeldAudio, IdleWatch, Residency, SILENCE_RMS};
use super::stats::{Latency, RunStats};
use crate::audio::aec::{EchoOptions, MicPath};
use crate::audio::device::AudioFormat;
use crate::audio::meters::{rms, Meters};
use crate::audio::resample::{downmix_into, StreamResampler};
use crate::audio::source::InputPort;
use crate::audio::wav::WavSink;
use crossbeam_channel::{Receiver, Sender};
use ringbuf::traits::{Consumer, Observer, Producer};
use ringbuf::HeapProd;
use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A model that loaded, with anything the user should be told about it.
pub struct Loaded {
    pub model: Box<dyn DuplexModel>,
    pub notices: Vec<String>,
    /// Why it runs somewhere worse than asked (a CPU fallback), shown as a degraded state.
    pub degraded: Option<String>,
}

/// A model that did not load: what went wrong (file, tensor, expectation) and what to do.
#[derive(Debug, Clone)]
pub struct LoadFailure {
    pub message: String,
    pub remedy: String,
}

/// Builds the model on the engine thread, reporting progress. Called again
/// when the user restarts a failed engine.
pub type Loader = Box<dyn FnMut(&mut dyn FnMut(LoadProgress)) -> Result<Loaded, LoadFailure> + Send>;

/// The playback side: a ring drained by the output callback.
pub struct Speaker {
    pub prod: HeapProd<f32>,
    pub format: AudioFormat,
    /// Silence queued before the first output, to absorb scheduling jitter.
    pub prefill_ms: f64,
}

impl Speaker {
    /// Queue `prefill_ms` of silence ahead of what the model says.
    fn prefill(&mut self) {
        let n = (self.prefill_ms / 1000.0 * self.format.sample_rate as f64) as usize * self.format.channels as usize;
        for _ in 0..n {
            let _ = self.prod.try_push(0.0);
        }
    }
}

pub struct EngineSetup {
    pub loader: Loader,
    pub input: InputPort,
    pub speaker: Option<Speaker>,
    pub wav_out: Option<WavSink>,
    /// Largest input backlog, in frames, before the oldest are dropped.
    pub max_backlog: usize,
    pub dump_tokens: Option<PathBuf>,
    pub meters: Arc<Meters>,
    pub events: Sender<EngineEvent>,
    pub commands: Receiver<Command>,
    /// Unload the model after this long with both sides silent; reload on speech.
    pub idle_unload: Option<Duration>,
    /// Echo cancellation and the half-duplex gate on the microphone; `None` when
    /// nothing the engine plays can reach the microphone.
    pub echo: Option<EchoOptions>,
}

impl EngineSetup {
    /// A setup with no speaker, no output file, no token dump, no idle unload,
    /// no echo canceller and a backlog of 3 frames; fill in the rest with `..`.
    pub fn new(loader: Loader, input: InputPort, meters: Arc<Meters>, events: Sender<EngineEvent>, commands: Receiver<Command>) -> Self {
        Self { loader, input, speaker: None, wav_out: None, max_backlog: 3, dump_tokens: None, meters, events, commands, idle_unload: None, echo: None }
    }
}

/// The engine thread's name (the panic hook recognises it).
pub const THREAD_NAME: &str = "engine";

/// Start the engine thread. It returns its statistics when the input ends, on
/// `Command::Shutdown`, or on an error.
pub fn spawn(setup: EngineSetup) -> std::thread::JoinHandle<RunStats> {
    std::thread::Builder::new().name(THREAD_NAME.into()).spawn(move || run(setup)).expect("spawn engine thread")
}

/// Run the engine on the current thread.
pub fn run(mut setup: EngineSetup) -> RunStats {
    let events = setup.events.clone();
    let commands = setup.commands.clone();
    let mut stats = RunStats::default();
    let mut engine = match Engine::new(setup.input, setup.speaker, setup.wav_out, setup.max_backlog, setup.dump_tokens, setup.meters, setup.echo) {
        Ok(e) => e,
        Err(e) => {
            let msg = format!("{e:#}");
            let _ = events.send(EngineEvent::Notice { severity: Severity::Error, message: msg.clone(), remedy: None });
            stats.error = Some(msg);
            let _ = events.send(EngineEvent::Stopped);
            return stats;
        }
    };
    // A file read as fast as possible has nobody to press `r`: a failure ends it.
    let interactive = engine.input.is_realtime();
    engine.idle_unload = setup.idle_unload;
    let mut reloading = false;
    // The header shows the canceller's state from the start.
    if let Some(p) = engine.mic_path.as_ref() {
        let _ = events.send(EngineEvent::EchoCancel(p.aec_on()));
    }
    loop {
        let t_load = Instant::now();
        let _ = events.send(EngineEvent::Residency(Residency::Loading));
        let eng = &mut engine;
        let loaded = contain(|| {
            (setup.loader)(&mut |p| {
                let _ = events.send(EngineEvent::Loading(p));
                // A reload keeps what the user says meanwhile.
                if reloading {
                    eng.hold_queued_input();
                }
            })
        })
        .unwrap_or_else(|panic| Err(LoadFailure { message: format!("loading the model panicked: {panic}"), remedy: "press r to retry; see the log file".into() }));
        stats.load_ms = t_load.elapsed().as_secs_f64() * 1000.0;
        let exit = match loaded {
            Ok(l) => {
                stats.model = l.model.info();
                stats.error = None;
                let _ = events.send(EngineEvent::ModelReady { info: stats.model.clone(), load_ms: stats.load_ms });
                let _ = events.send(EngineEvent::Residency(Residency::Ready { device: stats.model.device.clone(), degraded: l.degraded.clone() }));
                if let Some(why) = &l.degraded {
                    let _ = events.send(EngineEvent::warning(format!("degraded: {why}"), Some("free GPU memory (or lower --context) and press r to retry on the GPU".into())));
                }
                for n in l.notices {
                    let _ = events.send(EngineEvent::warning(n, None));
                }
                if reloading {
                    engine.hold_queued_input();
                    let held = engine.held.len();
                    stats.residency.held_frames += held as u64;
                    stats.residency.held_dropped += engine.held.dropped;
                    let _ = events.send(EngineEvent::info(format!("model reloaded in {:.1} s; replaying {:.1} s of audio heard meanwhile", stats.load_ms / 1000.0, held as f64 * engine.frame_ms() / 1000.0)));
                    stats.residency.reloads += 1;
                    engine.sample_rss(&mut stats);
                }
                if let Err(e) = engine.install(l.model) {
                    Exit::Fault(format!("{e:#}"), "check the model's sample rate and frame length".into())
                } else {
                    stats.latency = engine.latency();
                    stats.frame_ms = engine.frame_ms();
                    let _ = events.send(EngineEvent::Step(StepStats { latency_ms: stats.latency.total_ms(), ..Default::default() }));
                    engine.keep_backlog = reloading;
                    engine.run_loop(&events, &commands, &mut stats)
                }
            }
            Err(f) => Exit::Fault(f.message, f.remedy),
        };
        reloading = false;
        match exit {
            Exit::Shutdown | Exit::Ended => break,
            Exit::Idle(silent_s) => {
                let _ = events.send(EngineEvent::Residency(Residency::Unloading));
                let before = rss_bytes();
                engine.sample_rss(&mut stats);
                engine.model = None;
                stats.residency.unloads += 1;
                let after = rss_bytes();
                engine.sample_rss(&mut stats);
                let mb = |b: Option<u64>| b.map_or("n/a".to_string(), |b| format!("{:.0} MB", b as f64 / 1e6));
                let _ = events.send(EngineEvent::Residency(Residency::Unloaded));
                let _ = events.send(EngineEvent::info(format!(
                    "model unloaded after {silent_s:.0} s of silence; memory freed (RSS {} -> {}); it reloads when you speak",
                    mb(before),
                    mb(after)
                )));
                match engine.await_speech(&events, &commands, &mut stats) {
                    Exit::Idle(_) => reloading = true,
                    Exit::Fault(message, _) => {
                        stats.error = Some(message);
                        break;
                    }
                    _ => break,
                }
            }
            Exit::Fault(message, remedy) => {
                tracing::error!("engine fault: {message}");
                engine.model = None;
                stats.error = Some(message.clone());
                let _ = events.send(EngineEvent::Residency(Residency::Failed(message.clone())));
                let _ = events.send(EngineEvent::ModelFailed { error: message, remedy });
                if !interactive {
                    break;
                }
                // Keep audio flowing (and the UI responsive) until the user restarts.
                match engine.idle(&events, &commands) {
                    Exit::Fault(..) => {
                        let _ = events.send(EngineEvent::info("restarting the engine"));
                    }
                    _ => break,
                }
            }
        }
    }
    if let Some(sink) = engine.wav_out.take() {
        if let Err(e) = sink.finish() {
            stats.error.get_or_insert(format!("writing the output WAV: {e:#}"));
        }
    }
    if let Some(mut d) = engine.dump.take() {
        let _ = d.flush();
    }
    stats.input_seconds = engine.input_samples as f64 / engine.in_format.sample_rate as f64;
    stats.xruns_in = engine.meters.xruns_in();
    stats.xruns_out = engine.meters.xruns_out();
    let _ = events.send(EngineEvent::Stopped);
    stats
}

/// Run `f`, turning a panic into its message so the engine thread survives it.
fn contain<T>(f: impl FnOnce() -> T) -> Result<T, String> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).map_err(|p| {
        p.downcast_ref::<&str>().map(|s| s.to_string()).or_else(|| p.downcast_ref::<String>().cloned()).unwrap_or_else(|| "unknown panic".into())
    })
}

/// Why a run loop ended. `Fault` carries the error and its remedy; from
/// `idle` it means "the user asked for a restart". `Idle` carries the seconds of
/// silence that ended a run loop; from `await_speech` it means "reload".
enum Exit {
    Shutdown,
    Ended,
    Fault(String, String),
    Idle(f64),
}

/// Silent frames kept ahead of the speech that wakes the model, so its onset is heard.
const PREROLL_FRAMES: usize = 3;

/// Model rate and frame until a model says otherwise (Moshi's).
const DEFAULT_RATE: u32 = 24_000;
const DEFAULT_FRAME: usize = 1920;

struct Engine {
    model: Option<Box<dyn DuplexModel>>,
    input: InputPort,
    in_format: AudioFormat,
    resample_in: StreamResampler,
    speaker: Option<Speaker>,
    resample_out: Option<StreamResampler>,
    wav_out: Option<WavSink>,
    dump: Option<std::io::BufWriter<std::fs::File>>,
    meters: Arc<Meters>,
    max_backlog: usize,
    frame_len: usize,
    rate: u32,
    muted: bool,
    mic_path: Option<MicPath>,
    // Reused buffers: the steady state allocates nothing but events.
    raw: Vec<f32>,
    mono: Vec<f32>,
    frame: Vec<f32>,
    out: StepOutput,
    spk_mono: Vec<f32>,
    spk_inter: Vec<f32>,
    input_samples: u64,
    /// Model-rate samples taken from the input, across reloads (a file's end is exact).
    fed: u64,
    idle_unload: Option<Duration>,
    /// Frames heard while the model was away, replayed first once it is back.
    held: HeldAudio,
    /// After a reload, audio queued during the load is the user's speech: keep it.
    keep_backlog: bool,
    next_rss_s: f64,
}

impl Engine {
    fn new(
        input: InputPort,
        speaker: Option<Speaker>,
        wav_out: Option<WavSink>,
        max_backlog: usize,
        dump_tokens: Option<PathBuf>,
        meters: Arc<Meters>,
        echo: Option<EchoOptions>,
    ) -> anyhow::Result<Self> {
        let (rate, frame_len) = (DEFAULT_RATE, DEFAULT_FRAME);
        let in_format = input.format();
        let resample_in = StreamResampler::new(in_format.sample_rate, rate, (in_format.sample_rate / 100) as usize)?;
        let resample_out = match &speaker {
            Some(s) => Some(StreamResampler::new(rate, s.format.sample_rate, frame_len)?),
            None => None,
        };
        let dump = match dump_tokens {
            Some(p) => Some(std::io::BufWriter::new(
                std::fs::File::create(&p).map_err(|e| anyhow::anyhow!("{}: cannot create token dump: {e}", p.display()))?,
            )),
            None => None,
        };
        let chunk = in_format.sample_rate as usize / 100 * in_format.channels as usize * 4;
        Ok(Self {
            model: None,
            input,
            in_format,
            resample_in,
            speaker,
            resample_out,
            wav_out,
            dump,
            meters,
            max_backlog: max_backlog.max(1),
            frame_len,
            rate,
            muted: false,
            mic_path: echo.map(|o| MicPath::new(o.aec, o.half_duplex)).transpose()?,
            raw: vec![0.0; chunk.max(64)],
            mono: Vec::with_capacity(chunk),
            frame: vec![0.0; frame_len],
            out: StepOutput { pcm: vec![0.0; frame_len], ..Default::default() },
            spk_mono: Vec::with_capacity(frame_len * 4),
            spk_inter: Vec::with_capacity(frame_len * 8),
            input_samples: 0,
            fed: 0,
            idle_unload: None,
            held: HeldAudio::default(),
            keep_backlog: false,
            next_rss_s: 0.0,
        })
    }

    /// Put a model in place, re-planning resampling if its rate or frame differ.
    fn install(&mut self, model: Box<dyn DuplexModel>) -> anyhow::Result<()> {
        let (rate, frame_len) = (model.sample_rate(), model.frame_len());
        if (rate, frame_len) != (self.rate, self.frame_len) {
            self.resample_in = StreamResampler::new(self.in_format.sample_rate, rate, (self.in_format.sample_rate / 100) as usize)?;
            if let Some(s) = &self.speaker {
                self.resample_out = Some(StreamResampler::new(rate, s.format.sample_rate, frame_len)?);
            }
            self.rate = rate;
            self.frame_len = frame_len;
            self.frame = vec![0.0; frame_len];
        }
        self.model = Some(model);
        Ok(())
    }

    fn replace_input(&mut self, port: InputPort) -> anyhow::Result<()> {
        let format = port.format();
        if format.sample_rate != self.in_format.sample_rate {
            self.resample_in = StreamResampler::new(format.sample_rate, self.rate, (format.sample_rate / 100) as usize)?;
        }
        let chunk = format.sample_rate as usize / 100 * format.channels as usize * 4;
        self.raw.resize(chunk.max(64), 0.0);
        self.in_format = format;
        self.input = port;
        Ok(())
    }

    fn replace_speaker(&mut self, speaker: Option<Speaker>) -> anyhow::Result<()> {
        self.resample_out = match &speaker {
            Some(s) => Some(StreamResampler::new(self.rate, s.format.sample_rate, self.frame_len)?),
            None => None,
        };
        self.speaker = speaker;
        if let Some(s) = self.speaker.as_mut() {
            s.prefill();
        }
        Ok(())
    }

    /// No model running: keep draining the input so nothing overflows, and
    /// wait for the user to restart (`Exit::Fault`) or quit.
    fn idle(&mut self, events: &Sender<EngineEvent>, commands: &Receiver<Command>) -> Exit {
        loop {
            match commands.recv_timeout(Duration::from_millis(20)) {
                Ok(Command::Shutdown) | Err(crossbeam_channel::RecvTimeoutError::Disconnected) => return Exit::Shutdown,
                Ok(Command::Reset) => return Exit::Fault(String::new(), String::new()),
                Ok(c) => {
                    self.handle(c, events);
                }
                Err(crossbeam_channel::RecvTimeoutError::Timeout) => {}
            }
            while self.input.queued() > 0 {
                if !matches!(self.pull_input(), Ok(Pull::Data)) {
                    break;
                }
            }
            let stale = self.resample_in.available();
            self.resample_in.discard(stale);
        }
    }

    fn frame_ms(&self) -> f64 {
        self.frame_len as f64 * 1000.0 / self.rate as f64
    }

    fn latency(&self) -> Latency {
        Latency {
            frame_ms: self.frame_ms(),
            resampler_in_ms: self.resample_in.delay_ms(),
            resampler_out_ms: self.resample_out.as_ref().map_or(0.0, |r| r.delay_ms()),
            ring_prefill_ms: self.speaker.as_ref().map_or(0.0, |s| s.prefill_ms),
            echo_canceller_ms: self.mic_path.as_ref().map_or(0.0, |p| p.latency_samples() as f64 * 1000.0 / self.rate as f64),
            model_delay_ms: self.model.as_ref().map_or(0, |m| m.delay_frames()) as f64 * self.frame_ms(),
        }
    }

    /// Model-rate samples the whole input will produce, when known (files).
    fn expected_samples(&self) -> Option<u64> {
        match &self.input {
            InputPort::Memory { audio, .. } => Some((audio.frames() as u64 * self.rate as u64).div_ceil(audio.sample_rate as u64)),
            _ => None,
        }
    }

    fn run_loop(&mut self, events: &Sender<EngineEvent>, commands: &Receiver<Command>, stats: &mut RunStats) -> Exit {
        match self.try_run_loop(events, commands, stats) {
            Ok(exit) => exit,
            Err(e) => Exit::Fault(format!("{e:#}"), "press r to restart the engine; details are in the log file".into()),
        }
    }

    fn try_run_loop(&mut self, events: &Sender<EngineEvent>, commands: &Receiver<Command>, stats: &mut RunStats) -> anyhow::Result<Exit> {
        // Audio captured while the model first loaded is stale: start from now.
        // After an idle reload it is what woke the model, already held.
        if let (InputPort::Ring { cons, .. }, false) = (&mut self.input, self.keep_backlog) {
            let stale = cons.occupied_len();
            cons.skip(stale);
        }
        if let Some(s) = self.speaker.as_mut() {
            s.prefill();
        }
        let expected = self.expected_samples();
        let mut step_index: u64 = 0;
        let mut idle = self.idle_unload.map(|d| IdleWatch::new(d.as_secs_f64()));
        loop {
            for c in commands.try_iter() {
                if self.handle(c, events) {
                    return Ok(Exit::Shutdown);
                }
            }
            // Gather one frame of model-rate input: held audio first.
            let mut work = Duration::ZERO;
            let mut ended = false;
            let replay = self.held.pop();
            while replay.is_none() && self.resample_in.available() < self.frame_len && !ended {
                let t = Instant::now();
                let got = self.pull_input()?;
                match got {
                    Pull::Data => work += t.elapsed(),
                    Pull::Ended => {
                        self.resample_in.flush();
                        ended = true;
                        work += t.elapsed();
                    }
                    Pull::Waited => {}
                }
                if got == Pull::Waited {
                    // Stay responsive to the UI while waiting for audio.
                    for c in commands.try_iter() {
                        if self.handle(c, events) {
                            return Ok(Exit::Shutdown);
                        }
                    }
                }
            }
            let t_frame = Instant::now();
            if let Some(f) = &replay {
                let n = f.len().min(self.frame_len);
                self.frame[..n].copy_from_slice(&f[..n]);
                self.frame[n..].fill(0.0);
            } else if self.input.is_realtime() {
                // Take everything already captured, so a backlog is seen (and
                // dropped) here rather than overflowing the capture ring.
                // Bounded by what is queued now: an unpaced device never runs dry.
                let mut left = self.input.queued();
                while left >= self.in_format.channels as usize {
                    let before = self.input_samples;
                    if self.pull_input()? != Pull::Data {
                        break;
                    }
                    let popped = (self.input_samples - before) as usize * self.in_format.channels as usize;
                    left = left.saturating_sub(popped.max(1));
                }
                let limit = (self.max_backlog + 1) * self.frame_len;
                while self.resample_in.available() >= limit {
                    self.resample_in.discard(self.frame_len);
                    stats.dropped_frames += 1;
                    stats.frames_in += 1;
                }
            }
            if replay.is_none() {
                let mut take = self.resample_in.available().min(self.frame_len);
                if let Some(exp) = expected {
                    take = take.min(exp.saturating_sub(self.fed) as usize);
                }
                if take == 0 {
                    let _ = events.send(EngineEvent::InputEnded);
                    return Ok(Exit::Ended);
                }
                self.resample_in.pop(&mut self.frame[..take]);
                self.frame[take..].fill(0.0);
                // The canceller runs at 24 kHz, the rate of every model we have.
                // (Held frames were heard while nothing played: no echo to remove.)
                if let Some(p) = self.mic_path.as_mut().filter(|_| self.rate == crate::audio::aec::SAMPLE_RATE) {
                    p.process_near(&mut self.frame);
                }
                self.fed += take as u64;
            }
            stats.frames_in += 1;
            if self.muted {
                self.frame.fill(0.0);
            }
            let mic_rms = rms(&self.frame);
            work += t_frame.elapsed();

            self.out.clear(self.frame_len);
            let t_step = Instant::now();
            let model = self.model.as_mut().expect("run_loop runs with a model installed");
            let (frame, out) = (&self.frame, &mut self.out);
            match contain(|| model.step(frame, out)) {
                Ok(Ok(())) => {}
                Ok(Err(e)) => return Ok(Exit::Fault(format!("the model failed: {e:#}"), "press r to restart the engine".into())),
                Err(panic) => return Ok(Exit::Fault(format!("the model crashed: {panic}"), "press r to restart the engine; the transcript is kept".into())),
            }
            let step_ms = t_step.elapsed().as_secs_f64() * 1000.0;
            if let Some(p) = self.mic_path.as_mut().filter(|_| self.rate == crate::audio::aec::SAMPLE_RATE) {
                // The reference: exactly what goes to the speaker ring below.
                p.push_far(&self.out.pcm);
            }

            let t_out = Instant::now();
            self.emit_audio()?;
            self.dump_step(step_index)?;
            let spoke_text = self.out.text.is_some();
            if let Some(text) = self.out.text.take() {
                let _ = events.send(EngineEvent::Text(text));
            }
            stats.frames_out += 1;
            stats.output_seconds += self.frame_len as f64 / self.rate as f64;
            let overhead_ms = (work + t_out.elapsed()).as_secs_f64() * 1000.0;
            stats.step_ms.push(step_ms);
            stats.overhead_ms.push(overhead_ms);
            let _ = events.send(EngineEvent::Step(StepStats {
                step_index,
                step_ms,
                overhead_ms,
                rtf: step_ms / stats.frame_ms,
                dropped_frames: stats.dropped_frames,
                xruns_in: self.meters.xruns_in(),
                xruns_out: self.meters.xruns_out(),
                latency_ms: stats.latency.total_ms(),
                mic_rms,
                out_rms: rms(&self.out.pcm),
            }));
            step_index += 1;
            self.maybe_sample_rss(stats);
            if let Some(w) = idle.as_mut() {
                if w.observe(self.frame_len as f64 / self.rate as f64, mic_rms, rms(&self.out.pcm), spoke_text) {
                    return Ok(Exit::Idle(self.idle_unload.map_or(0.0, |d| d.as_secs_f64())));
                }
            }
        }
    }

    /// Record RSS against input time every 10 s of input.
    fn maybe_sample_rss(&mut self, stats: &mut RunStats) {
        let t = self.input_samples as f64 / self.in_format.sample_rate as f64;
        if t >= self.next_rss_s {
            self.next_rss_s = t + 10.0;
            self.sample_rss(stats);
        }
    }

    fn sample_rss(&self, stats: &mut RunStats) {
        if let Some(b) = rss_bytes() {
            let t = self.input_samples as f64 / self.in_format.sample_rate as f64;
            stats.residency.rss_mb.push(((t * 1000.0).round() / 1000.0, (b as f64 / 1e5).round() / 10.0));
        }
    }

    /// One model-rate frame of input into `self.frame`, for when no model steps.
    /// `None`: the input has ended (a file) or nothing is there yet (a device).
    fn input_frame(&mut self, expected: Option<u64>) -> anyhow::Result<Option<bool>> {
        while self.resample_in.available() < self.frame_len {
            match self.pull_input()? {
                Pull::Data => {}
                Pull::Waited => return Ok(Some(false)),
                Pull::Ended => {
                    self.resample_in.flush();
                    break;
                }
            }
        }
        let mut take = self.resample_in.available().min(self.frame_len);
        if let Some(exp) = expected {
            take = take.min(exp.saturating_sub(self.fed) as usize);
        }
        if take == 0 {
            return Ok(None);
        }
        self.resample_in.pop(&mut self.frame[..take]);
        self.frame[take..].fill(0.0);
        self.fed += take as u64;
        if self.muted {
            self.frame.fill(0.0);
        }
        Ok(Some(true))
    }

    /// During a reload: move whatever input is queued into the held frames.
    fn hold_queued_input(&mut self) {
        if !self.input.is_realtime() {
            return; // a file waits for us
        }
        while self.input.queued() > 0 {
            if !matches!(self.pull_input(), Ok(Pull::Data)) {
                break;
            }
        }
        while self.resample_in.available() >= self.frame_len {
            self.resample_in.pop(&mut self.frame);
            if self.muted {
                self.frame.fill(0.0);
            }
            self.held.push(&self.frame);
        }
    }

    /// The model is unloaded: listen (without a model) until the user speaks, keeping a
    /// short pre-roll. Silence consumed here still goes to the output file as silence, so
    /// its timeline stays aligned with the input. `Exit::Idle` means "speech: reload".
    fn await_speech(&mut self, events: &Sender<EngineEvent>, commands: &Receiver<Command>, stats: &mut RunStats) -> Exit {
        let expected = self.expected_samples();
        self.held = HeldAudio::default();
        let silence = vec![0.0; self.frame_len];
        let write_silence = |me: &mut Self, stats: &mut RunStats| -> anyhow::Result<()> {
            if let Some(w) = me.wav_out.as_mut() {
                w.write(&silence)?;
            }
            stats.frames_out += 1;
            stats.output_seconds += me.frame_len as f64 / me.rate as f64;
            Ok(())
        };
        loop {
            for c in commands.try_iter() {
                match c {
                    Command::Shutdown => return Exit::Shutdown,
                    // `r` while unloaded: reload now.
                    Command::Reset => return Exit::Idle(0.0),
                    c => {
                        self.handle(c, events);
                    }
                }
            }
            let got = match self.input_frame(expected) {
                Ok(g) => g,
                Err(e) => return Exit::Fault(format!("{e:#}"), "press r to restart the engine".into()),
            };
            match got {
                None => {
                    // The file ended in silence: what the pre-roll held was silence too.
                    while self.held.pop().is_some() {
                        if let Err(e) = write_silence(self, stats) {
                            return Exit::Fault(format!("{e:#}"), "check the output path".into());
                        }
                    }
                    let _ = events.send(EngineEvent::InputEnded);
                    return Exit::Ended;
                }
                Some(false) => {
                    std::thread::sleep(Duration::from_millis(5));
                    continue;
                }
                Some(true) => {}
            }
            stats.frames_in += 1;
            self.maybe_sample_rss(stats);
            let level = rms(&self.frame);
            self.held.push(&self.frame);
            if level >= SILENCE_RMS {
                let _ = events.send(EngineEvent::info("you spoke: reloading the model"));
                return Exit::Idle(0.0);
            }
            if self.held.len() > PREROLL_FRAMES {
                self.held.pop();
                if let Err(e) = write_silence(self, stats) {
                    return Exit::Fault(format!("{e:#}"), "check the output path".into());
                }
            }
        }
    }

    /// Apply a command; true means stop.
    fn handle(&mut self, c: Command, events: &Sender<EngineEvent>) -> bool {
        match c {
            Command::Shutdown => return true,
            Command::SetEchoCancel(on) => match self.mic_path.as_mut() {
                Some(p) => {
                    p.set_aec(on);
                    let _ = events.send(EngineEvent::EchoCancel(on));
                }
                None => {
                    let _ = events.send(EngineEvent::info("no echo to cancel: nothing is played to a speaker"));
                }
            },
            Command::SetMuted(m) => {
                self.muted = m;
                let _ = events.send(EngineEvent::Muted(m));
            }
            Command::Reset => {
                if let Some(m) = self.model.as_mut() {
                    m.reset();
                }
                self.resample_in.reset();
                let _ = events.send(EngineEvent::Reset);
            }
            Command::ReplaceInput(port) => {
                if let Err(e) = self.replace_input(port) {
                    let _ = events.send(EngineEvent::warning(format!("cannot use the new input: {e:#}"), None));
                }
            }
            Command::ReplaceSpeaker(speaker) => {
                if let Err(e) = self.replace_speaker(speaker) {
                    let _ = events.send(EngineEvent::warning(format!("cannot use the new speaker: {e:#}"), None));
                }
            }
            Command::SetSampling(s) => {
                if let Some(m) = self.model.as_mut() {
                    m.set_sampling(&s);
                }
            }
            Command::SwapModel(m) => {
                if m.sample_rate() == self.rate && m.frame_len() == self.frame_len {
                    let info = m.info();
                    self.model = Some(m);
                    let _ = events.send(EngineEvent::ModelReady { info, load_ms: 0.0 });
                } else {
                    let _ = events.send(EngineEvent::warning(
                        format!("cannot swap in {}: it runs at {} Hz / {} samples, not {} Hz / {}", m.info().name, m.sample_rate(), m.frame_len(), self.rate, self.frame_len),
                        None,
                    ));
                }
            }
        }
        false
    }

    /// Move some input into the resampler, or wait for it.
    fn pull_input(&mut self) -> anyhow::Result<Pull> {
        let channels = self.in_format.channels as usize;
        match &mut self.input {
            InputPort::Memory { audio, pos } => {
                if *pos >= audio.samples.len() {
                    return Ok(Pull::Ended);
                }
                let end = (*pos + self.raw.len() / channels * channels).min(audio.samples.len());
                self.mono.clear();
                downmix_into(&audio.samples[*pos..end], channels, &mut self.mono);
                self.input_samples += ((end - *pos) / channels) as u64;
                *pos = end;
                self.resample_in.push(&self.mono);
                Ok(Pull::Data)
            }
            InputPort::Ring { cons, ended, .. } => {
                let whole = self.raw.len() / channels * channels;
                let n = cons.pop_slice(&mut self.raw[..whole]);
                let n = n / channels * channels;
                if n > 0 {
                    self.mono.clear();
                    downmix_into(&self.raw[..n], channels, &mut self.mono);
                    self.input_samples += (n / channels) as u64;
                    self.resample_in.push(&self.mono);
                    return Ok(Pull::Data);
                }
                if ended.load(Ordering::Acquire) && cons.is_empty() {
                    return Ok(Pull::Ended);
                }
                // Sleep about as long as the missing audio takes to arrive, within bounds.
                let missing = self.frame_len.saturating_sub(self.resample_in.available()) as f64 / self.rate as f64;
                std::thread::sleep(Duration::from_secs_f64(missing.clamp(0.001, 0.010)));
                Ok(Pull::Waited)
            }
            InputPort::Silence { sample_rate, since, produced } => {
                let block = *sample_rate as u64 / 100;
                let due = *since + Duration::from_secs_f64((*produced + block) as f64 / *sample_rate as f64);
                if let Some(wait) = due.checked_duration_since(Instant::now()) {
                    std::thread::sleep(wait.min(Duration::from_millis(10)));
                    return Ok(Pull::Waited);
                }
                *produced += block;
                self.mono.clear();
                self.mono.resize(block as usize, 0.0);
                self.input_samples += block;
                self.resample_in.push(&self.mono);
                Ok(Pull::Data)
            }
        }
    }

    /// Model output to the WAV file (24 kHz mono) and the speaker ring (device rate).
    fn emit_audio(&mut self) -> anyhow::Result<()> {
        if let Some(w) = self.wav_out.as_mut() {
            w.write(&self.out.pcm)?;
        }
        let (Some(spk), Some(rs)) = (self.speaker.as_mut(), self.resample_out.as_mut()) else {
            return Ok(());
        };
        rs.push(&self.out.pcm);
        self.spk_mono.resize(rs.available(), 0.0);
        let n = rs.pop(&mut self.spk_mono);
        let ch = spk.format.channels as usize;
        self.spk_inter.clear();
        for &s in &self.spk_mono[..n] {
            for _ in 0..ch {
                self.spk_inter.push(s);
            }
        }
        let mut pushed = spk.prod.push_slice(&self.spk_inter);
        if pushed < self.spk_inter.len() {
            if self.input.is_realtime() {
                // The speaker runs slower than the microphone clock: drop, count.
                self.meters.xruns_out.fetch_add(1, Ordering::Relaxed);
            } else {
                // A file read as fast as possible is paced by the speaker instead.
                let deadline = Instant::now() + Duration::from_secs(2);
                while pushed < self.spk_inter.len() && Instant::now() < deadline {
                    std::thread::sleep(Duration::from_millis(5));
                    pushed += spk.prod.push_slice(&self.spk_inter[pushed..]);
                }
            }
        }
        Ok(())
    }

    fn dump_step(&mut self, step: u64) -> anyhow::Result<()> {
        if let Some(d) = self.dump.as_mut() {
            let line = serde_json::json!({
                "step": step,
                "text_token": self.out.text_token,
                "audio_codes": self.out.audio_codes,
            });
            writeln!(d, "{line}")?;
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pull {
    Data,
    Waited,
    Ended,
}
