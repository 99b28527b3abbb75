//! What crosses between the engine thread and the UI: events one way, commands the other.

use super::model::{DuplexModel, ModelInfo, Sampling};
use serde::Serialize;

/// Units for load progress: bytes while downloading or reading, tensors while building.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum ProgressUnit {
    Bytes,
    Tensors,
}

/// Real progress of one load stage (a file download, a checkpoint read).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LoadProgress {
    /// What is loading, e.g. "model.q8.gguf".
    pub stage: String,
    pub done: u64,
    pub total: u64,
    pub unit: ProgressUnit,
    /// Seconds since this stage started, for rate and ETA.
    pub elapsed_s: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Severity {
    Info,
    Warning,
    Error,
}

/// Where audio comes from or goes to, as the user should see it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub enum Endpoint {
    /// A sound device, by its description.
    Device(String),
    /// A WAV file.
    File(String),
    /// Nothing usable; the reason says why.
    Missing(String),
    /// Deliberately none (e.g. headless with no output file).
    Off,
}

/// Per-step timing and health, sent after every model step.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize)]
pub struct StepStats {
    pub step_index: u64,
    pub step_ms: f64,
    /// Engine-loop time outside `model.step` for this frame.
    pub overhead_ms: f64,
    /// step time / frame time.
    pub rtf: f64,
    pub dropped_frames: u64,
    pub xruns_in: u64,
    pub xruns_out: u64,
    pub latency_ms: f64,
    /// RMS of what the model heard and said this frame (after mute).
    pub mic_rms: f32,
    pub out_rms: f32,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub enum EngineEvent {
    Endpoints { input: Endpoint, output: Endpoint },
    Loading(LoadProgress),
    ModelReady { info: ModelInfo, load_ms: f64 },
    ModelFailed { error: String, remedy: String },
    /// A piece of the assistant's words, in order; never dropped.
    Text(String),
    Step(StepStats),
    Notice { severity: Severity, message: String, remedy: Option<String> },
    Muted(bool),
    /// Echo cancellation was switched on or off (`e`), for the header.
    EchoCancel(bool),
    /// The conversation was reset.
    Reset,
    /// A file input reached its end.
    InputEnded,
    /// The engine thread finished.
    Stopped,
    /// The UI switched persona (sent by the UI so the journal records it).
    PersonaSwitched { name: String },
    /// A persona's voice (other weights) failed to load in the background; the
    /// voice that was talking keeps talking.
    VoiceFailed { persona: String, error: String, remedy: String },
    /// Where the model is: loading, ready (maybe degraded), unloaded after a silence.
    Residency(crate::engine::residency::Residency),
}

impl EngineEvent {
    pub fn warning(message: impl Into<String>, remedy: Option<String>) -> Self {
        Self::Notice { severity: Severity::Warning, message: message.into(), remedy }
    }
    pub fn info(message: impl Into<String>) -> Self {
        Self::Notice { severity: Severity::Info, message: message.into(), remedy: None }
    }
}

/// Commands from the UI to the engine thread.
pub enum Command {
    SetMuted(bool),
    /// Echo cancellation on or off (`e`).
    SetEchoCancel(bool),
    Reset,
    SetSampling(Sampling),
    /// Swap in another model at the next frame boundary.
    SwapModel(Box<dyn DuplexModel>),
    /// A (re)opened or lost microphone: the device supervisor swaps the input.
    ReplaceInput(crate::audio::source::InputPort),
    /// A (re)opened or lost speaker.
    ReplaceSpeaker(Option<crate::engine::runner::Speaker>),
    Shutdown,
}

impl std::fmt::Debug for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::SetMuted(m) => write!(f, "SetMuted({m})"),
            Self::SetEchoCancel(on) => write!(f, "SetEchoCancel({on})"),
            Self::Reset => write!(f, "Reset"),
            Self::SetSampling(s) => write!(f, "SetSampling({s:?})"),
            Self::SwapModel(m) => write!(f, "SwapModel({})", m.info().name),
            Self::ReplaceInput(p) => write!(f, "ReplaceInput({:?})", p.format()),
            Self::ReplaceSpeaker(s) => write!(f, "ReplaceSpeaker({:?})", s.as_ref().map(|s| s.format)),
            Self::Shutdown => write!(f, "Shutdown"),
        }
    }
}
