//! The engine thread: owns the model (and its Device), runs the state machine of
//! `state.rs`, takes frames from the frame source, steps the model, and sends audio to
//! the output and events to whoever listens. Neither side blocks the other: when the
//! model falls behind a real-time input, the oldest frames are dropped and counted.

use super::command::Command;
use super::frames::FrameSource;
use super::load::Loader;
use super::output::Output;
use super::residency::rss_bytes;
use super::state::{Setting, State};
use super::stats::{Latency, RunStats};
use super::turns::TurnTracker;
use crate::audio::aec::{EchoOptions, MicPath};
use crate::audio::meters::Meters;
use crate::audio::port::{InputPort, OutputPort};
use crate::audio::wav::WavSink;
use crate::bus::{Cancel, DeviceSide, EngineEvent, Happening, Sampling, Severity, Weights};
use crate::models::duplex::{DuplexModel, StepOutput};
use crossbeam_channel::{Receiver, Sender};
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

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
pub(super) fn contain<T>(f: impl FnOnce() -> T) -> Result<T, String> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).map_err(|p| {
        p.downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| p.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown panic".into())
    })
}

/// Silent frames kept ahead of the speech that wakes the model, so its onset is heard.
pub(super) const PREROLL_FRAMES: usize = 3;

/// Model rate and frame until a model says otherwise (Moshi's).
const DEFAULT_RATE: u32 = 24_000;
const DEFAULT_FRAME: usize = 1920;

pub(super) struct Engine {
    pub(super) loader: Option<Loader>,
    pub(super) model: Option<Box<dyn DuplexModel>>,
    /// The voice the next load loads: the running one, or the one a held swap made current.
    pub(super) voice: Weights,
    /// A loaded voice waiting for a state that can take it.
    pub(super) held_voice: Option<(Box<dyn DuplexModel>, Weights)>,
    /// A persona's prompts that arrived while no model ran: primed when one comes up.
    pub(super) pending_prompt: Option<crate::models::duplex::Prompt>,
    /// Turns typed while no model ran: the next model that comes up answers them.
    pub(super) pending_typed: Vec<String>,
    /// The newest sampling asked for; every model that comes up gets it.
    pub(super) sampling: Option<Sampling>,
    pub(super) frames: FrameSource,
    pub(super) output: Output,
    pub(super) mic_path: Option<MicPath>,
    pub(super) dump: Option<std::io::BufWriter<std::fs::File>>,
    pub(super) meters: Arc<Meters>,
    pub(super) events: Sender<EngineEvent>,
    pub(super) commands: Receiver<Command>,
    pub(super) idle_unload: Option<Duration>,
    pub(super) shutdown: Cancel,
    /// A file read as fast as possible has nobody to press `r`: a failure ends it.
    pub(super) interactive: bool,
    /// The next load wakes an unloaded model: keep what the user says meanwhile.
    pub(super) waking: bool,
    pub(super) rate: u32,
    pub(super) frame_len: usize,
    pub(super) out: StepOutput,
    pub(super) step_index: u64,
    pub(super) turns: TurnTracker,
    pub(super) next_rss_s: f64,
    pub(super) stats: RunStats,
    /// The wake gate on the microphone (`--wake`), once the app installs it.
    pub(super) wake: Option<super::wake_gate::WakeGate>,
}

/// A stepping failure: what went wrong and what to do.
pub(super) struct Fault {
    pub(super) message: String,
    pub(super) remedy: String,
}

impl Engine {
    pub(super) fn new(s: EngineSetup) -> anyhow::Result<Self> {
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
            pending_prompt: None,
            pending_typed: Vec::new(),
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
            wake: None,
        })
    }

    pub(super) fn send(&self, e: EngineEvent) {
        let _ = self.events.send(e);
    }

    pub(super) fn happened(&self, h: Happening) {
        self.send(EngineEvent::Happened(h));
    }

    pub(super) fn frame_ms(&self) -> f64 {
        self.frame_len as f64 * 1000.0 / self.rate as f64
    }

    pub(super) fn apply(&mut self, s: Setting) {
        match s {
            Setting::EchoCancel(on) => match self.mic_path.as_mut() {
                Some(p) => {
                    p.set_aec(on);
                    self.send(EngineEvent::EchoCancel(on));
                }
                None => self.happened(Happening::NoEcho),
            },
            Setting::HalfDuplex(on) => match self.mic_path.as_mut() {
                Some(p) => p.set_half_duplex(on),
                None => self.happened(Happening::NoEcho),
            },
            Setting::InstallWake(o) => {
                let frame_s = self.frame_len as f64 / self.rate as f64;
                let gate = super::wake_gate::WakeGate::new(*o, frame_s);
                if gate.enabled() {
                    self.happened(gate.waiting());
                }
                self.wake = Some(gate);
            }
            Setting::Wake(on) => match self.wake.as_mut() {
                Some(g) => {
                    let h = g.set_enabled(on);
                    self.happened(h);
                }
                None if on => self.happened(Happening::WakeUnavailable {
                    why: "no wake phrase has takes".into(),
                }),
                None => {}
            },
            Setting::WakeActive(phrases) => {
                if let Some(g) = self.wake.as_mut() {
                    g.set_active(phrases);
                }
            }
            Setting::WakeThreshold(t) => {
                if let Some(g) = self.wake.as_mut() {
                    g.set_threshold(t);
                }
            }
            Setting::Muted(m) => {
                self.frames.muted = m;
                self.send(EngineEvent::Muted(m));
            }
            Setting::Sampling(s) => {
                if let Some(m) = self.model.as_mut() {
                    m.set_sampling(&s);
                }
                self.sampling = Some(s);
            }
            Setting::Type(text) => self.type_text(text),
            Setting::ReplaceInput(port) => {
                let live = matches!(port, crate::audio::port::InputPort::Ring { .. });
                match self.frames.replace_input(port) {
                    Ok(()) if live => self.restart_echo_canceller(),
                    Ok(()) => {}
                    Err(e) => self.happened(Happening::PortRejected {
                        side: DeviceSide::Microphone,
                        error: format!("{e:#}"),
                    }),
                }
            }
            Setting::ReplaceSpeaker(port) => {
                let live = port.is_some();
                match self.output.replace_port(port) {
                    Ok(()) if live => self.restart_echo_canceller(),
                    Ok(()) => {}
                    Err(e) => self.happened(Happening::PortRejected {
                        side: DeviceSide::Speaker,
                        error: format!("{e:#}"),
                    }),
                }
            }
        }
    }

    /// Another device: the old echo path's delay and filter mean nothing now.
    fn restart_echo_canceller(&mut self) {
        if let Some(p) = self.mic_path.as_mut() {
            match p.restart() {
                Ok(()) => self.happened(Happening::EchoReconverging),
                Err(e) => tracing::warn!("echo canceller restart: {e}"),
            }
        }
    }

    /// Hand a typed turn to the model, or keep it for the next one to come up.
    pub(super) fn type_text(&mut self, text: String) {
        let Some(model) = self.model.as_mut() else {
            self.pending_typed.push(text);
            return;
        };
        let name = model.info().name;
        let result = if model.takes_text() {
            model.type_text(&text)
        } else {
            Err(anyhow::anyhow!("{name} takes no typed text"))
        };
        if let Err(e) = result {
            self.happened(Happening::TypedRefused {
                why: format!("{e:#}"),
            });
        }
    }

    /// Keep a voice that arrived while no model runs; it is the current voice now.
    pub(super) fn hold(&mut self, model: Box<dyn DuplexModel>, weights: Weights, failed: bool) {
        self.happened(Happening::VoiceHeld {
            name: model.info().name,
            failed,
        });
        self.voice = weights.clone();
        self.held_voice = Some((model, weights));
    }

    /// Reset the model and prefill a persona's prompts, as fast as the device allows.
    /// What the user says meanwhile is held and replayed first, so none of it is lost.
    pub(super) fn prime(&mut self, prompt: &crate::models::duplex::Prompt) {
        if !self.model.as_ref().is_some_and(|m| m.takes_prompt()) {
            return; // a model that takes no prompt: the persona card says so
        }
        self.happened(Happening::Priming);
        let model = self.model.as_mut().expect("checked above");
        let result = contain(|| model.prime(prompt));
        self.frames.hold_queued();
        match result {
            Ok(Ok(p)) => {
                self.end_turn();
                self.happened(Happening::Primed {
                    steps: p.steps,
                    ms: p.elapsed.as_secs_f64() * 1000.0,
                });
            }
            Ok(Err(e)) => self.happened(Happening::PrimeFailed {
                error: format!("{e:#}"),
            }),
            Err(panic) => self.happened(Happening::PrimeFailed {
                error: format!("priming panicked: {panic}"),
            }),
        }
    }

    /// `r`, or speech while unloaded: a held voice comes up at once, else the current one loads.
    pub(super) fn reload(&mut self) -> Option<State> {
        match self.held_voice.take() {
            Some((model, weights)) => {
                self.stats.load_ms = 0.0;
                self.come_up(model, weights, None, Vec::new())
            }
            None => Some(State::Loading),
        }
    }

    pub(super) fn latency(&self) -> Latency {
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
    pub(super) fn maybe_sample_rss(&mut self) {
        if self.frames.input_seconds() >= self.next_rss_s {
            self.next_rss_s = self.frames.input_seconds() + 10.0;
            self.sample_rss();
        }
    }

    pub(super) fn sample_rss(&mut self) {
        if let Some(b) = rss_bytes() {
            let t = self.frames.input_seconds();
            self.stats.residency.rss_mb.push((
                (t * 1000.0).round() / 1000.0,
                (b as f64 / 1e5).round() / 10.0,
            ));
        }
    }

    /// Close the assistant's turn, if one is open.
    pub(super) fn end_turn(&mut self) {
        if self.turns.close() {
            self.send(EngineEvent::TurnEnded);
        }
    }

    /// The prefill steps the model ran since the last dump (a prime, or a reset that
    /// replayed one), one line each, marked as prefill with their phase.
    pub(super) fn dump_prefill(&mut self) -> std::io::Result<()> {
        let (Some(d), Some(m)) = (self.dump.as_mut(), self.model.as_mut()) else {
            return Ok(());
        };
        for p in m.take_prefill() {
            let line = serde_json::json!({
                "step": self.step_index,
                "prefill": true,
                "phase": p.phase,
                "position": p.position,
                "text_token": p.text_token,
                "audio_codes": p.audio_codes,
                "user_codes": p.user_codes,
            });
            writeln!(d, "{line}")?;
        }
        Ok(())
    }

    pub(super) fn finish(mut self) -> RunStats {
        self.end_turn();
        let _ = self.dump_prefill();
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
