//! The engine thread: owns the model (and its Device), runs the state machine of
//! `state.rs`, takes frames from the frame source, steps the model, and sends audio to
//! the output and events to whoever listens. Neither side blocks the other: when the
//! model falls behind a real-time input, the oldest frames are dropped and counted.

use super::command::Command;
use super::frames::{FrameSource, Next, Take};
use super::load::{LoadFailure, LoadRequest, Loader};
use super::model::{DuplexModel, StepOutput};
use super::output::Output;
use super::residency::{rss_bytes, IdleWatch, SILENCE_RMS};
use super::state::{decide, Action, State};
use super::stats::{Latency, RunStats};
use super::turns::TurnTracker;
use crate::audio::aec::{EchoOptions, MicPath};
use crate::audio::meters::{rms, Meters};
use crate::audio::port::{InputPort, OutputPort};
use crate::audio::wav::WavSink;
use crate::bus::{
    Cancel, DeviceSide, EngineEvent, Happening, LoadProgress, Residency, Sampling, Severity,
    StepStats, Weights,
};
use crossbeam_channel::{Receiver, Sender};
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

pub use super::load::{loader, Loaded};

pub struct EngineSetup {
    pub loader: Loader,
    /// The voice to load first; every later reload loads the voice current then.
    pub voice: Weights,
    pub input: InputPort,
    pub speaker: Option<OutputPort>,
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
    /// Set by the front-end when the user quits: a load in progress stops within a
    /// second instead of running to its end.
    pub shutdown: Cancel,
}

impl EngineSetup {
    /// A setup with no speaker, no output file, no token dump, no idle unload,
    /// no echo canceller and a backlog of 3 frames; fill in the rest with `..`.
    pub fn new(
        loader: Loader,
        input: InputPort,
        meters: Arc<Meters>,
        events: Sender<EngineEvent>,
        commands: Receiver<Command>,
    ) -> Self {
        Self {
            loader,
            voice: Weights::Default,
            input,
            speaker: None,
            wav_out: None,
            max_backlog: 3,
            dump_tokens: None,
            meters,
            events,
            commands,
            idle_unload: None,
            echo: None,
            shutdown: Cancel::new(),
        }
    }
}

/// The engine thread's name (the panic hook recognises it).
pub const THREAD_NAME: &str = "engine";

/// Start the engine thread. It returns its statistics when the input ends, on
/// `Command::Shutdown`, or on an error.
pub fn spawn(setup: EngineSetup) -> std::thread::JoinHandle<RunStats> {
    std::thread::Builder::new()
        .name(THREAD_NAME.into())
        .spawn(move || run(setup))
        .expect("spawn engine thread")
}

/// Run the engine on the current thread.
pub fn run(setup: EngineSetup) -> RunStats {
    let events = setup.events.clone();
    let mut engine = match Engine::new(setup) {
        Ok(e) => e,
        Err(e) => {
            let msg = format!("{e:#}");
            let _ = events.send(EngineEvent::Notice {
                severity: Severity::Error,
                message: msg.clone(),
                remedy: None,
            });
            let _ = events.send(EngineEvent::Stopped);
            return RunStats {
                error: Some(msg),
                ..Default::default()
            };
        }
    };
    // The header shows the canceller's state from the start.
    if let Some(p) = engine.mic_path.as_ref() {
        engine.send(EngineEvent::EchoCancel(p.aec_on()));
    }
    let mut state = Some(State::Loading);
    while let Some(s) = state {
        state = match s {
            State::Loading => engine.loading(),
            State::Running => engine.running(),
            State::Unloaded => engine.unloaded(),
            State::Failed => engine.failed(),
        };
    }
    engine.finish()
}

/// Run `f`, turning a panic into its message so the engine thread survives it.
fn contain<T>(f: impl FnOnce() -> T) -> Result<T, String> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).map_err(|p| {
        p.downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| p.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown panic".into())
    })
}

/// Silent frames kept ahead of the speech that wakes the model, so its onset is heard.
const PREROLL_FRAMES: usize = 3;

/// Model rate and frame until a model says otherwise (Moshi's).
const DEFAULT_RATE: u32 = 24_000;
const DEFAULT_FRAME: usize = 1920;

struct Engine {
    loader: Option<Loader>,
    model: Option<Box<dyn DuplexModel>>,
    /// The voice the next load loads: the running one, or the one a held swap made current.
    voice: Weights,
    /// A loaded voice waiting for a state that can take it.
    held_voice: Option<(Box<dyn DuplexModel>, Weights)>,
    /// The newest sampling asked for; every model that comes up gets it.
    sampling: Option<Sampling>,
    frames: FrameSource,
    output: Output,
    mic_path: Option<MicPath>,
    dump: Option<std::io::BufWriter<std::fs::File>>,
    meters: Arc<Meters>,
    events: Sender<EngineEvent>,
    commands: Receiver<Command>,
    idle_unload: Option<Duration>,
    shutdown: Cancel,
    /// A file read as fast as possible has nobody to press `r`: a failure ends it.
    interactive: bool,
    /// The next load wakes an unloaded model: keep what the user says meanwhile.
    waking: bool,
    rate: u32,
    frame_len: usize,
    out: StepOutput,
    step_index: u64,
    turns: TurnTracker,
    next_rss_s: f64,
    stats: RunStats,
}

/// A stepping failure: what went wrong and what to do.
struct Fault {
    message: String,
    remedy: String,
}

impl Engine {
    fn new(s: EngineSetup) -> anyhow::Result<Self> {
        let (rate, frame_len) = (DEFAULT_RATE, DEFAULT_FRAME);
        let dump = match s.dump_tokens {
            Some(p) => Some(std::io::BufWriter::new(std::fs::File::create(&p).map_err(
                |e| anyhow::anyhow!("{}: cannot create token dump: {e}", p.display()),
            )?)),
            None => None,
        };
        let interactive = s.input.is_realtime();
        Ok(Self {
            loader: Some(s.loader),
            model: None,
            voice: s.voice,
            held_voice: None,
            sampling: None,
            frames: FrameSource::new(s.input, rate, frame_len, s.max_backlog)?,
            output: Output::new(s.speaker, s.wav_out, rate, frame_len)?,
            mic_path: s
                .echo
                .map(|o| MicPath::new(o.aec, o.half_duplex))
                .transpose()?,
            dump,
            meters: s.meters,
            events: s.events,
            commands: s.commands,
            idle_unload: s.idle_unload,
            shutdown: s.shutdown,
            interactive,
            waking: false,
            rate,
            frame_len,
            out: StepOutput {
                pcm: vec![0.0; frame_len],
                ..Default::default()
            },
            step_index: 0,
            turns: TurnTracker::default(),
            next_rss_s: 0.0,
            stats: RunStats::default(),
        })
    }

    fn send(&self, e: EngineEvent) {
        let _ = self.events.send(e);
    }

    fn happened(&self, h: Happening) {
        self.send(EngineEvent::Happened(h));
    }

    fn frame_ms(&self) -> f64 {
        self.frame_len as f64 * 1000.0 / self.rate as f64
    }

    // ---- Loading ---------------------------------------------------------------

    /// Build a model for the current voice. Commands keep working meanwhile (through
    /// the progress callback); a voice that arrives meanwhile wins over this load.
    fn loading(&mut self) -> Option<State> {
        self.send(EngineEvent::Residency(Residency::Loading));
        let t_load = Instant::now();
        let cancel = self.shutdown.child();
        let mut stop = false;
        let mut loader = self.loader.take().expect("one load at a time");
        let voice = self.voice.clone();
        let result = {
            let me = &mut *self;
            let mut progress = |p: LoadProgress| me.while_loading(Some(p), &cancel, &mut stop);
            let mut req = LoadRequest {
                weights: &voice,
                progress: &mut progress,
                cancel: &cancel,
            };
            contain(|| loader(&mut req)).unwrap_or_else(|panic| {
                Err(LoadFailure {
                    message: format!("loading the model panicked: {panic}"),
                    remedy: "press r to retry; see the log file".into(),
                })
            })
        };
        self.loader = Some(loader);
        // Commands that came after the last progress report.
        self.while_loading(None, &cancel, &mut stop);
        self.stats.load_ms = t_load.elapsed().as_secs_f64() * 1000.0;
        if stop || (self.shutdown.is_cancelled() && result.is_err()) {
            self.happened(Happening::LoadCancelled);
            return None;
        }
        if let Some((model, weights)) = self.held_voice.take() {
            // A persona's voice arrived while this load ran: it is the newer choice.
            self.end_turn();
            return self.come_up(model, weights, None, Vec::new());
        }
        match result {
            Ok(l) => self.come_up(l.model, voice, l.degraded, l.notices),
            Err(f) => self.fail(f.message, f.remedy),
        }
    }

    /// During a load: forward progress, hold the user's audio, and apply commands as
    /// the table says for `Loading`.
    fn while_loading(&mut self, progress: Option<LoadProgress>, cancel: &Cancel, stop: &mut bool) {
        if let Some(p) = progress {
            self.send(EngineEvent::Loading(p));
        }
        if self.waking {
            self.frames.hold_queued();
        }
        while let Ok(c) = self.commands.try_recv() {
            match decide(State::Loading, &c) {
                Action::Stop => {
                    *stop = true;
                    cancel.cancel();
                }
                Action::Hold => {
                    if let Command::SwapModel { model, weights } = c {
                        self.voice = weights.clone();
                        self.held_voice = Some((model, weights));
                        cancel.cancel();
                    }
                }
                Action::Apply => self.apply(c),
                _ => {}
            }
        }
    }

    /// A model is ready: put it in place and tell everyone; `Running` unless it cannot run here.
    fn come_up(
        &mut self,
        model: Box<dyn DuplexModel>,
        weights: Weights,
        degraded: Option<String>,
        notices: Vec<crate::bus::Notice>,
    ) -> Option<State> {
        if let Err(e) = self.install(model, weights, true) {
            return self.fail(
                format!("{e:#}"),
                "check the model's sample rate and frame length".into(),
            );
        }
        self.stats.model = self.model.as_ref().map(|m| m.info()).unwrap_or_default();
        self.stats.error = None;
        self.send(EngineEvent::ModelReady {
            info: self.stats.model.clone(),
            load_ms: self.stats.load_ms,
        });
        self.send(EngineEvent::Residency(Residency::Ready {
            device: self.stats.model.device.clone(),
            degraded: degraded.clone(),
        }));
        if let Some(why) = degraded {
            self.happened(Happening::Degraded(why));
        }
        for n in notices {
            self.send(EngineEvent::Notice {
                severity: n.severity,
                message: n.message,
                remedy: n.remedy,
            });
        }
        if self.waking {
            self.frames.hold_queued();
            let held = self.frames.held.len();
            self.stats.residency.held_frames += held as u64;
            self.stats.residency.held_dropped += self.frames.held.dropped;
            self.happened(Happening::Reloaded {
                load_ms: self.stats.load_ms,
                replay_s: held as f64 * self.frame_ms() / 1000.0,
            });
            self.stats.residency.reloads += 1;
            self.sample_rss();
        } else {
            // Audio captured while the model first loaded is stale: start from now.
            self.frames.skip_stale();
        }
        self.waking = false;
        self.stats.latency = self.latency();
        self.stats.frame_ms = self.frame_ms();
        self.send(EngineEvent::Step(StepStats {
            latency_ms: self.stats.latency.total_ms(),
            ..Default::default()
        }));
        self.output.prefill();
        Some(State::Running)
    }

    /// Put a model in place, re-planning resampling if its rate or frame differ. A
    /// loaded model gets the newest sampling asked for; a swapped-in voice keeps the
    /// sampling its persona built it with.
    fn install(
        &mut self,
        mut model: Box<dyn DuplexModel>,
        weights: Weights,
        sampling: bool,
    ) -> anyhow::Result<()> {
        let (rate, frame_len) = (model.sample_rate(), model.frame_len());
        self.frames.set_model_shape(rate, frame_len)?;
        self.output.set_model_shape(rate, frame_len)?;
        (self.rate, self.frame_len) = (rate, frame_len);
        self.out = StepOutput {
            pcm: vec![0.0; frame_len],
            ..Default::default()
        };
        if let Some(s) = self.sampling.as_ref().filter(|_| sampling) {
            model.set_sampling(s);
        }
        self.model = Some(model);
        self.voice = weights.clone();
        self.send(EngineEvent::Voice(weights));
        Ok(())
    }

    /// The model failed: say so, and wait for `r` (or stop, for a file).
    fn fail(&mut self, message: String, remedy: String) -> Option<State> {
        tracing::error!("engine fault: {message}");
        self.end_turn();
        self.model = None;
        self.stats.error = Some(message.clone());
        self.send(EngineEvent::Residency(Residency::Failed(message.clone())));
        self.send(EngineEvent::ModelFailed {
            error: message,
            remedy,
        });
        self.interactive.then_some(State::Failed)
    }

    // ---- Settings that apply in every state --------------------------------------

    fn apply(&mut self, c: Command) {
        match c {
            Command::SetEchoCancel(on) => match self.mic_path.as_mut() {
                Some(p) => {
                    p.set_aec(on);
                    self.send(EngineEvent::EchoCancel(on));
                }
                None => self.happened(Happening::NoEcho),
            },
            Command::SetMuted(m) => {
                self.frames.muted = m;
                self.send(EngineEvent::Muted(m));
            }
            Command::SetSampling(s) => {
                if let Some(m) = self.model.as_mut() {
                    m.set_sampling(&s);
                }
                self.sampling = Some(s);
            }
            Command::ReplaceInput(port) => {
                if let Err(e) = self.frames.replace_input(port) {
                    self.happened(Happening::PortRejected {
                        side: DeviceSide::Microphone,
                        error: format!("{e:#}"),
                    });
                }
            }
            Command::ReplaceSpeaker(port) => {
                if let Err(e) = self.output.replace_port(port) {
                    self.happened(Happening::PortRejected {
                        side: DeviceSide::Speaker,
                        error: format!("{e:#}"),
                    });
                }
            }
            Command::Shutdown | Command::Reset | Command::SwapModel { .. } => {
                unreachable!("not a setting: {c:?}")
            }
        }
    }

    /// Keep a voice that arrived while no model runs; it is the current voice now.
    fn hold(&mut self, c: Command, failed: bool) {
        if let Command::SwapModel { model, weights } = c {
            self.happened(Happening::VoiceHeld {
                name: model.info().name,
                failed,
            });
            self.voice = weights.clone();
            self.held_voice = Some((model, weights));
        }
    }

    /// `r`, or speech while unloaded: a held voice comes up at once, else the current one loads.
    fn reload(&mut self) -> Option<State> {
        match self.held_voice.take() {
            Some((model, weights)) => {
                self.stats.load_ms = 0.0;
                self.come_up(model, weights, None, Vec::new())
            }
            None => Some(State::Loading),
        }
    }

    // ---- Running -----------------------------------------------------------------

    fn running(&mut self) -> Option<State> {
        match self.run_frames() {
            Ok(next) => next,
            Err(f) => self.fail(f.message, f.remedy),
        }
    }

    /// Handle queued commands while running; `Err(None)` means stop.
    fn running_commands(&mut self) -> Result<(), Option<State>> {
        while let Ok(c) = self.commands.try_recv() {
            match decide(State::Running, &c) {
                Action::Stop => return Err(None),
                Action::Apply => self.apply(c),
                Action::ResetConversation => {
                    if let Some(m) = self.model.as_mut() {
                        m.reset();
                    }
                    self.frames.reset();
                    self.end_turn();
                    self.send(EngineEvent::Reset);
                }
                Action::Install => {
                    if let Command::SwapModel { model, weights } = c {
                        self.swap(model, weights);
                    }
                }
                Action::Reload | Action::Ignore | Action::Hold => {}
            }
        }
        Ok(())
    }

    /// A persona's voice replaces the running model at this frame boundary.
    fn swap(&mut self, model: Box<dyn DuplexModel>, weights: Weights) {
        if model.sample_rate() != self.rate || model.frame_len() != self.frame_len {
            let why = format!(
                "it runs at {} Hz / {} samples, not {} Hz / {}",
                model.sample_rate(),
                model.frame_len(),
                self.rate,
                self.frame_len
            );
            self.happened(Happening::VoiceRejected {
                name: model.info().name,
                why,
            });
            return;
        }
        let info = model.info();
        if let Err(e) = self.install(model, weights, false) {
            self.happened(Happening::VoiceRejected {
                name: info.name,
                why: format!("{e:#}"),
            });
            return;
        }
        self.stats.model = info.clone();
        self.send(EngineEvent::ModelReady { info, load_ms: 0.0 });
    }

    fn run_frames(&mut self) -> Result<Option<State>, Fault> {
        let io = |e: anyhow::Error| Fault {
            message: format!("{e:#}"),
            remedy: "press r to restart the engine; details are in the log file".into(),
        };
        let mut idle = self.idle_unload.map(|d| IdleWatch::new(d.as_secs_f64()));
        loop {
            if let Err(next) = self.running_commands() {
                return Ok(next);
            }
            let t_frame = Instant::now();
            let dropped_before = self.frames.dropped;
            let fresh = match self
                .frames
                .next(Take {
                    replay_held: true,
                    bound_backlog: true,
                })
                .map_err(io)?
            {
                Next::Wait => continue,
                Next::Ended => {
                    self.send(EngineEvent::InputEnded);
                    return Ok(None);
                }
                Next::Frame { fresh } => fresh,
            };
            let dropped = self.frames.dropped - dropped_before;
            self.stats.dropped_frames += dropped;
            self.stats.frames_in += dropped + 1;
            // The canceller runs at 24 kHz, the rate of every model we have.
            if let Some(p) = self
                .mic_path
                .as_mut()
                .filter(|_| fresh && self.rate == crate::audio::aec::SAMPLE_RATE)
            {
                p.process_near(&mut self.frames.frame);
            }
            if fresh {
                self.frames.mute_if_closed();
            }
            let mic_rms = rms(&self.frames.frame);
            let work = t_frame.elapsed();

            self.out.clear(self.frame_len);
            let t_step = Instant::now();
            let model = self.model.as_mut().expect("Running has a model");
            let (frame, out) = (&self.frames.frame, &mut self.out);
            match contain(|| model.step(frame, out)) {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    return Err(Fault {
                        message: format!("the model failed: {e:#}"),
                        remedy: "press r to restart the engine".into(),
                    })
                }
                Err(panic) => {
                    return Err(Fault {
                        message: format!("the model crashed: {panic}"),
                        remedy: "press r to restart the engine; the transcript is kept".into(),
                    })
                }
            }
            let step_ms = t_step.elapsed().as_secs_f64() * 1000.0;
            if let Some(p) = self
                .mic_path
                .as_mut()
                .filter(|_| self.rate == crate::audio::aec::SAMPLE_RATE)
            {
                // The reference: exactly what goes to the speaker below.
                p.push_far(&self.out.pcm);
            }

            let t_out = Instant::now();
            self.output
                .emit(&self.out.pcm, self.frames.is_realtime(), &self.meters)
                .map_err(io)?;
            self.dump_step().map_err(io)?;
            let spoke_text = self.out.text.is_some();
            if let Some(text) = self.out.text.take() {
                self.send(EngineEvent::Text(text));
            }
            self.stats.frames_out += 1;
            self.stats.output_seconds += self.frame_len as f64 / self.rate as f64;
            let overhead_ms = (work + t_out.elapsed()).as_secs_f64() * 1000.0;
            self.stats.step_ms.push(step_ms);
            self.stats.overhead_ms.push(overhead_ms);
            let out_rms = rms(&self.out.pcm);
            self.send(EngineEvent::Step(StepStats {
                step_index: self.step_index,
                step_ms,
                overhead_ms,
                rtf: step_ms / self.stats.frame_ms,
                dropped_frames: self.stats.dropped_frames,
                xruns_in: self.meters.xruns_in(),
                xruns_out: self.meters.xruns_out(),
                latency_ms: self.stats.latency.total_ms(),
                mic_rms,
                out_rms,
            }));
            self.step_index += 1;
            if self.turns.step(spoke_text) {
                self.send(EngineEvent::TurnEnded);
            }
            self.maybe_sample_rss();
            if idle.as_mut().is_some_and(|w| {
                w.observe(
                    self.frame_len as f64 / self.rate as f64,
                    mic_rms,
                    out_rms,
                    spoke_text,
                )
            }) {
                return Ok(Some(self.unload()));
            }
        }
    }

    fn dump_step(&mut self) -> anyhow::Result<()> {
        if let Some(d) = self.dump.as_mut() {
            let line = serde_json::json!({
                "step": self.step_index,
                "text_token": self.out.text_token,
                "audio_codes": self.out.audio_codes,
            });
            writeln!(d, "{line}")?;
        }
        Ok(())
    }

    // ---- Unloaded ----------------------------------------------------------------

    fn unload(&mut self) -> State {
        self.end_turn();
        self.send(EngineEvent::Residency(Residency::Unloading));
        let before = rss_bytes();
        self.sample_rss();
        self.model = None;
        self.stats.residency.unloads += 1;
        let after = rss_bytes();
        self.sample_rss();
        self.send(EngineEvent::Residency(Residency::Unloaded));
        let silent_s = self.idle_unload.map_or(0.0, |d| d.as_secs_f64());
        self.happened(Happening::Unloaded {
            silent_s,
            rss_before: before,
            rss_after: after,
        });
        State::Unloaded
    }

    /// No model: listen until the user speaks, keeping a short pre-roll. Silence consumed
    /// here still goes to the output file as silence, so its timeline stays aligned with
    /// the input.
    fn unloaded(&mut self) -> Option<State> {
        self.frames.held = Default::default();
        loop {
            while let Ok(c) = self.commands.try_recv() {
                match decide(State::Unloaded, &c) {
                    Action::Stop => return None,
                    Action::Reload => return self.wake(),
                    Action::Hold => self.hold(c, false),
                    Action::Apply => self.apply(c),
                    _ => {}
                }
            }
            match self.frames.next(Take {
                replay_held: false,
                bound_backlog: false,
            }) {
                Err(e) => {
                    return self.fail(format!("{e:#}"), "press r to restart the engine".into())
                }
                Ok(Next::Wait) => std::thread::sleep(Duration::from_millis(5)),
                Ok(Next::Ended) => {
                    // The file ended in silence: what the pre-roll held was silence too.
                    while self.frames.held.pop().is_some() {
                        if let Err(e) = self.silent_output() {
                            return self.fail(format!("{e:#}"), "check the output path".into());
                        }
                    }
                    self.send(EngineEvent::InputEnded);
                    return None;
                }
                Ok(Next::Frame { .. }) => {
                    self.frames.mute_if_closed();
                    self.stats.frames_in += 1;
                    self.maybe_sample_rss();
                    let level = rms(&self.frames.frame);
                    let frame = std::mem::take(&mut self.frames.frame);
                    self.frames.held.push(&frame);
                    self.frames.frame = frame;
                    if level >= SILENCE_RMS {
                        self.happened(Happening::WokeBySpeech);
                        return self.wake();
                    }
                    if self.frames.held.len() > PREROLL_FRAMES {
                        self.frames.held.pop();
                        if let Err(e) = self.silent_output() {
                            return self.fail(format!("{e:#}"), "check the output path".into());
                        }
                    }
                }
            }
        }
    }

    fn wake(&mut self) -> Option<State> {
        self.waking = true;
        self.reload()
    }

    fn silent_output(&mut self) -> anyhow::Result<()> {
        self.output.silence_to_file()?;
        self.stats.frames_out += 1;
        self.stats.output_seconds += self.frame_len as f64 / self.rate as f64;
        Ok(())
    }

    // ---- Failed ------------------------------------------------------------------

    /// Keep audio flowing (and the UI responsive) until the user restarts or quits.
    fn failed(&mut self) -> Option<State> {
        loop {
            match self.commands.recv_timeout(Duration::from_millis(20)) {
                Ok(c) => match decide(State::Failed, &c) {
                    Action::Stop => return None,
                    Action::Reload => {
                        self.happened(Happening::Restarting);
                        return self.reload();
                    }
                    Action::Hold => self.hold(c, true),
                    Action::Apply => self.apply(c),
                    _ => {}
                },
                Err(crossbeam_channel::RecvTimeoutError::Disconnected) => return None,
                Err(crossbeam_channel::RecvTimeoutError::Timeout) => {}
            }
            self.frames.drain();
        }
    }

    // ---- Bookkeeping -------------------------------------------------------------

    fn latency(&self) -> Latency {
        Latency {
            frame_ms: self.frame_ms(),
            resampler_in_ms: self.frames.resampler_delay_ms(),
            resampler_out_ms: self.output.resampler_delay_ms(),
            ring_prefill_ms: self.output.prefill_ms(),
            echo_canceller_ms: self.mic_path.as_ref().map_or(0.0, |p| {
                p.latency_samples() as f64 * 1000.0 / self.rate as f64
            }),
            model_delay_ms: self.model.as_ref().map_or(0, |m| m.delay_frames()) as f64
                * self.frame_ms(),
        }
    }

    /// Record RSS against input time every 10 s of input.
    fn maybe_sample_rss(&mut self) {
        if self.frames.input_seconds() >= self.next_rss_s {
            self.next_rss_s = self.frames.input_seconds() + 10.0;
            self.sample_rss();
        }
    }

    fn sample_rss(&mut self) {
        if let Some(b) = rss_bytes() {
            let t = self.frames.input_seconds();
            self.stats.residency.rss_mb.push((
                (t * 1000.0).round() / 1000.0,
                (b as f64 / 1e5).round() / 10.0,
            ));
        }
    }

    /// Close the assistant's turn, if one is open.
    fn end_turn(&mut self) {
        if self.turns.close() {
            self.send(EngineEvent::TurnEnded);
        }
    }

    fn finish(mut self) -> RunStats {
        self.end_turn();
        if let Err(e) = self.output.finish() {
            self.stats
                .error
                .get_or_insert(format!("writing the output WAV: {e:#}"));
        }
        if let Some(mut d) = self.dump.take() {
            let _ = d.flush();
        }
        self.stats.input_seconds = self.frames.input_seconds();
        self.stats.xruns_in = self.meters.xruns_in();
        self.stats.xruns_out = self.meters.xruns_out();
        self.send(EngineEvent::Stopped);
        self.stats
    }
}
