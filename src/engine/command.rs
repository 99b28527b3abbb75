//! Commands to the engine thread (from the UI, the device supervisor, the app).

use crate::bus::{Sampling, Weights};
use crate::models::duplex::DuplexModel;

/// Commands to the engine thread; `state::decide` says what each does in each state.
pub enum Command {
    SetMuted(bool),
    /// Echo cancellation on or off (`e`).
    SetEchoCancel(bool),
    /// The half-duplex gate on or off (settings).
    SetHalfDuplex(bool),
    /// Wake mode on or off (`w`): the microphone reaches the model only after a wake
    /// phrase.
    SetWake(bool),
    /// The wake spotter, built by the app from the user's takes (`--wake`).
    InstallWake(Box<super::wake_gate::WakeOptions>),
    /// The wake spotter's threshold (the settings overlay), 0..1.
    SetWakeThreshold(f32),
    /// The active persona's wake phrases (another persona's name needs a higher score).
    SetWakeActive(Vec<String>),
    Reset,
    SetSampling(Sampling),
    /// A persona's voice loaded in the background: swap it in at the next frame
    /// boundary, or hold it until the engine can take it (see `state::decide`).
    SwapModel {
        model: Box<dyn DuplexModel>,
        weights: Weights,
    },
    /// A persona's prompts (role text, voice WAV): a model that takes prompts is reset
    /// and primed with them at the next frame boundary, input held meanwhile. A model
    /// that takes none only starts a fresh conversation, and only if `fresh`.
    Prime {
        prompt: crate::models::duplex::Prompt,
        fresh: bool,
    },
    /// A turn the user typed: a model that takes text answers it as the user's words;
    /// one that takes none says so. Kept for the model that comes up, if none runs.
    Type(String),
    /// A (re)opened or lost microphone: the device supervisor swaps the input.
    ReplaceInput(crate::audio::port::InputPort),
    /// A (re)opened or lost speaker.
    ReplaceSpeaker(Option<crate::audio::port::OutputPort>),
    Shutdown,
}

impl std::fmt::Debug for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::SetMuted(m) => write!(f, "SetMuted({m})"),
            Self::SetEchoCancel(on) => write!(f, "SetEchoCancel({on})"),
            Self::SetHalfDuplex(on) => write!(f, "SetHalfDuplex({on})"),
            Self::SetWake(on) => write!(f, "SetWake({on})"),
            Self::InstallWake(o) => write!(f, "InstallWake(enabled: {})", o.enabled),
            Self::SetWakeThreshold(t) => write!(f, "SetWakeThreshold({t})"),
            Self::SetWakeActive(p) => write!(f, "SetWakeActive({p:?})"),
            Self::Reset => write!(f, "Reset"),
            Self::SetSampling(s) => write!(f, "SetSampling({s:?})"),
            Self::SwapModel { model, weights } => {
                write!(f, "SwapModel({}, {weights:?})", model.info().name)
            }
            Self::ReplaceInput(p) => write!(f, "ReplaceInput({:?})", p.format()),
            Self::ReplaceSpeaker(s) => {
                write!(f, "ReplaceSpeaker({:?})", s.as_ref().map(|s| s.format))
            }
            Self::Prime { prompt, fresh } => write!(f, "Prime({prompt:?}, fresh: {fresh})"),
            Self::Type(t) => write!(f, "Type({t:?})"),
            Self::Shutdown => write!(f, "Shutdown"),
        }
    }
}
