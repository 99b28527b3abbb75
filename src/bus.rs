//! The shared vocabulary: what crosses between layers (events, notices, device
//! status, load progress, model facts). A leaf: it imports no other module of ours,
//! and every layer may import it. It holds data, not wording: the front-ends (TUI,
//! headless) say things to the user.

use serde::Serialize;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// Sampling settings; the persona and the CLI both produce these.
#[derive(Debug, Clone, PartialEq)]
pub struct Sampling {
    /// Audio-token temperature; 0 means greedy (fully deterministic).
    pub temperature: f64,
    /// Text-token temperature; 0 means greedy.
    pub text_temperature: f64,
    pub top_k: usize,
    pub seed: u64,
}

impl Default for Sampling {
    fn default() -> Self {
        Self {
            temperature: 0.8,
            text_temperature: 0.7,
            top_k: 250,
            seed: 299_792_458,
        }
    }
}

/// Facts about a loaded model, shown in the header and written to the stats.
#[derive(Debug, Clone, PartialEq, Default, serde::Serialize)]
pub struct ModelInfo {
    pub name: String,
    /// "cpu", "cuda:0", "metal".
    pub device: String,
    /// "f32", "bf16", "q8".
    pub dtype: String,
}

/// What the user is told about the model's place in memory.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub enum Residency {
    Unloaded,
    Loading,
    /// In memory and stepping. `degraded` says why it runs somewhere worse than asked
    /// (e.g. "running on CPU (CUDA out of memory)").
    Ready {
        device: String,
        degraded: Option<String>,
    },
    Unloading,
    Failed(String),
}

/// Which weights speak.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum Weights {
    /// Whatever the command line chose (no reload).
    Default,
    /// A Hugging Face repo: `moshiko`, `moshika` or `hf:OWNER/REPO`.
    Repo(String),
    /// A checkpoint directory in the official layout.
    Dir(PathBuf),
    /// The built-in demo model.
    Demo,
}

pub const MOSHIKO: &str = "kyutai/moshiko-candle-q8";
pub const MOSHIKA: &str = "kyutai/moshika-candle-q8";

impl Weights {
    /// `dir` anchors a relative directory (the persona file's own).
    pub fn parse(s: &str, dir: Option<&Path>) -> Option<Self> {
        let s = s.trim();
        Some(match s {
            "" => return None,
            "default" => Self::Default,
            "moshiko" => Self::Repo(MOSHIKO.into()),
            "moshika" => Self::Repo(MOSHIKA.into()),
            "demo" => Self::Demo,
            _ => match s.strip_prefix("hf:") {
                Some(repo) if !repo.is_empty() => Self::Repo(repo.into()),
                _ => {
                    let p = PathBuf::from(s);
                    Self::Dir(match dir {
                        Some(d) if p.is_relative() => d.join(p),
                        _ => p,
                    })
                }
            },
        })
    }

    pub fn describe(&self) -> String {
        match self {
            Self::Default => "the command line's".into(),
            Self::Repo(r) => r.clone(),
            Self::Dir(d) => d.display().to_string(),
            Self::Demo => "demo".into(),
        }
    }
}

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
    /// The network path, when the model is a session on a server (`--connect`).
    pub link: Option<LinkStats>,
}

/// A remote model's network path, per step, for the status line.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize)]
pub struct LinkStats {
    /// Round trip of the last answered frame: sent to answered, the server's step included.
    pub rtt_ms: f64,
    /// The jitter buffer: how far playback lags what was sent.
    pub jitter_ms: u32,
    /// The server's answers arrive in time (real time: none late in the last 2 s; a
    /// file in lock step: the round trip is under one 80 ms frame).
    pub keeping_pace: bool,
    /// False while the connection is down and being retried.
    pub connected: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub enum EngineEvent {
    Endpoints {
        input: Endpoint,
        output: Endpoint,
    },
    Loading(LoadProgress),
    ModelReady {
        info: ModelInfo,
        load_ms: f64,
    },
    ModelFailed {
        error: String,
        remedy: String,
    },
    /// A piece of the assistant's words, in order; never dropped.
    Text(String),
    /// The assistant's turn ended (the one turn rule: `engine::turns`).
    TurnEnded,
    Step(StepStats),
    Notice {
        severity: Severity,
        message: String,
        remedy: Option<String>,
    },
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
    PersonaSwitched {
        name: String,
    },
    /// A persona's voice (other weights) failed to load in the background; the
    /// voice that was talking keeps talking.
    VoiceFailed {
        persona: String,
        error: String,
        remedy: String,
    },
    /// Where the model is: loading, ready (maybe degraded), unloaded after a silence.
    Residency(Residency),
    /// A microphone or speaker came, went or misbehaved.
    Device(DeviceStatus),
    /// The voice (weights) the engine runs from now on; sent before `ModelReady`.
    Voice(Weights),
    /// Something the engine did on its own, or could not do.
    Happened(Happening),
    /// A turn-taking model (the cascade) heard the user, changed phase or had trouble.
    Talk(Talk),
}

/// Where a turn-taking model (the cascade: STT → LLM → TTS) is in the conversation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum TalkPhase {
    /// Waiting for the user, or hearing them.
    Listening,
    /// The user's turn ended; the LLM is writing and no audio plays yet.
    Thinking,
    /// The reply plays.
    Speaking,
}

/// What a turn-taking model reports besides its audio and its own words.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub enum Talk {
    /// Words the recogniser heard from the user, in order (a word or more, with its
    /// leading space).
    UserWords(String),
    /// The user's turn ended (the recogniser's end of speech).
    UserTurnEnded,
    /// A turn the user typed, taken as their words (it ends their turn).
    Typed(String),
    Phase(TalkPhase),
    /// The user spoke over the reply: playback stopped; `heard` words of it were played.
    BargedIn {
        heard: usize,
        of: usize,
    },
    /// The reply could not be written (the LLM) or spoken (the synthesiser could not
    /// start it); the conversation goes on and the next turn tries again.
    LlmTrouble {
        message: String,
        remedy: String,
    },
    /// The LLM called a tool (src/tools): consent asked, the call running, its end.
    Tool(ToolActivity),
}

/// A tool call as the header, the feed and the journal see it. `call` numbers the
/// calls of a session; `args` is the call's JSON arguments, as the LLM wrote them.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub enum ToolActivity {
    /// The call waits for the user's yes or no; `question` says exactly what will run.
    Asking {
        call: u64,
        tool: String,
        question: String,
    },
    Running {
        call: u64,
        tool: String,
        args: String,
    },
    /// The call is over. `consent`: not needed, given or refused (and by whom);
    /// `outcome`: ok, error, refused, cancelled, timed out; `result`: what the LLM
    /// was given (bounded).
    Done {
        call: u64,
        tool: String,
        args: String,
        consent: String,
        outcome: String,
        result: String,
        ms: f64,
    },
}

/// What the engine does on its own that the user is told about; the front-ends word it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub enum Happening {
    /// Unloaded after `silent_s` of silence on both sides; process RSS before and after.
    Unloaded {
        silent_s: f64,
        rss_before: Option<u64>,
        rss_after: Option<u64>,
    },
    /// The user spoke while the model was unloaded: it reloads.
    WokeBySpeech,
    /// Back after an unload in `load_ms`; `replay_s` of audio heard meanwhile is replayed.
    Reloaded { load_ms: f64, replay_s: f64 },
    /// `r` after a failure: the engine restarts.
    Restarting,
    /// The model runs somewhere worse than asked (a CPU fallback).
    Degraded(String),
    /// Echo cancellation was switched, but nothing plays to a speaker.
    NoEcho,
    /// A new input or output could not be used.
    PortRejected { side: DeviceSide, error: String },
    /// A loaded voice cannot replace the running model.
    VoiceRejected { name: String, why: String },
    /// A loaded voice waits because no model runs (`failed`: the engine failed and waits
    /// for `r`; otherwise it is unloaded and the voice speaks when the user does).
    VoiceHeld { name: String, failed: bool },
    /// A load stopped early: the user quit, or a newer voice replaced it.
    LoadCancelled,
    /// The model is being reset and primed with a persona's prompts; input is held.
    Priming,
    /// Priming finished: `steps` prefill steps in `ms`.
    Primed { steps: usize, ms: f64 },
    /// Priming failed; the previous prompts stay.
    PrimeFailed { error: String },
    /// Another microphone or speaker: the echo canceller starts afresh and finds the
    /// new echo path's delay again.
    EchoReconverging,
    /// A typed turn the model cannot take (Moshi hears only audio).
    TypedRefused { why: String },
    /// The connection to the server dropped (`why`); retry `attempt` of `of` in
    /// `retry_in_s`. Playback is silent meanwhile; the transcript stays.
    LinkLost {
        why: String,
        attempt: u32,
        of: u32,
        retry_in_s: f64,
    },
    /// Connected again, a fresh session on the server, after `outage_s` without one.
    LinkBack { outage_s: f64 },
    /// Wake mode: no model hears the microphone until one of `phrases` is said.
    WakeWaiting { phrases: Vec<String> },
    /// A wake phrase was heard (by the spotter, with its `score` 0..1; `None`: in the
    /// cascade recogniser's words): the microphone reaches the model for one exchange.
    WakeHeard { phrase: String, score: Option<f32> },
    /// Wake mode switched off: the microphone is always heard.
    WakeOff,
    /// Wake mode was asked for, but no phrase has takes.
    WakeUnavailable { why: String },
}

impl EngineEvent {
    pub fn warning(message: impl Into<String>, remedy: Option<String>) -> Self {
        Self::Notice {
            severity: Severity::Warning,
            message: message.into(),
            remedy,
        }
    }
    pub fn info(message: impl Into<String>) -> Self {
        Self::Notice {
            severity: Severity::Info,
            message: message.into(),
            remedy: None,
        }
    }
}

/// Something the user should be told: how serious, what happened, what to do.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Notice {
    pub severity: Severity,
    pub message: String,
    pub remedy: Option<String>,
}

/// Which side of the audio a device status is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub enum DeviceSide {
    Microphone,
    Speaker,
}

/// Why a device stream was given up.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub enum LossReason {
    /// The device went away or its stream was invalidated (unplugged, server gone).
    Gone(String),
    /// Its callbacks stopped for this many seconds.
    Stalled(u64),
}

/// What the device supervisor reports about one side; the front-ends word it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub enum DeviceStatus {
    /// Open and running (first open or recovered), with the device's description.
    Ready { side: DeviceSide, name: String },
    /// Lost; reopened every `retry_every_s` seconds.
    Lost {
        side: DeviceSide,
        reason: LossReason,
        retry_every_s: u64,
    },
    /// A stream error that is neither an xrun nor a lost device; the stream stays.
    Trouble { side: DeviceSide, message: String },
    /// The user picked another device and it runs now; `open_ms`: opening it took
    /// this long (the previous device played on meanwhile).
    Switched {
        side: DeviceSide,
        name: String,
        open_ms: f64,
    },
    /// The device the user picked did not open; the previous one stays.
    SwitchFailed {
        side: DeviceSide,
        wanted: String,
        reason: String,
    },
}

/// One device as the device picker lists it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DeviceEntry {
    pub side: DeviceSide,
    /// The cpal host's name ("ALSA", "PulseAudio").
    pub host: String,
    /// `HOST:ID`, as `--input-device` takes it.
    pub selector: String,
    pub name: String,
    /// Its default config ("48000 Hz, 2 ch, f32"), or why it has none.
    pub config: String,
}

/// A flag a long operation (a download, a checkpoint load) polls so that quitting or
/// switching persona returns within a second. Cloned handles share the flag.
#[derive(Debug, Clone, Default)]
pub struct Cancel {
    own: Arc<AtomicBool>,
    parent: Option<Arc<AtomicBool>>,
}

impl Cancel {
    pub fn new() -> Self {
        Self::default()
    }
    /// A flag of its own that also reads as cancelled when this one is.
    pub fn child(&self) -> Self {
        Self {
            own: Arc::new(AtomicBool::new(false)),
            parent: Some(self.own.clone()),
        }
    }
    pub fn cancel(&self) {
        self.own.store(true, Ordering::SeqCst);
    }
    pub fn is_cancelled(&self) -> bool {
        self.own.load(Ordering::SeqCst)
            || self
                .parent
                .as_ref()
                .is_some_and(|p| p.load(Ordering::SeqCst))
    }
}

/// Sizes for people, the one byte unit: 1024-based, written B, KiB, MiB and GiB
/// (two decimals for GiB, where a tenth is 100 MiB; one below).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bytes(pub u64);

impl std::fmt::Display for Bytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        const KIB: f64 = 1024.0;
        let b = self.0 as f64;
        if b >= KIB * KIB * KIB {
            write!(f, "{:.2} GiB", b / (KIB * KIB * KIB))
        } else if b >= KIB * KIB {
            write!(f, "{:.1} MiB", b / (KIB * KIB))
        } else if b >= KIB {
            write!(f, "{:.1} KiB", b / KIB)
        } else {
            write!(f, "{} B", self.0)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_are_1024_based_with_binary_units() {
        assert_eq!(Bytes(512).to_string(), "512 B");
        assert_eq!(Bytes(1536).to_string(), "1.5 KiB");
        assert_eq!(Bytes(334_075_904).to_string(), "318.6 MiB");
        assert_eq!(Bytes(8_169_374_464).to_string(), "7.61 GiB");
    }

    #[test]
    fn cancel_is_shared_by_clones() {
        let c = Cancel::new();
        let d = c.clone();
        assert!(!d.is_cancelled());
        let child = c.child();
        child.cancel();
        assert!(!c.is_cancelled(), "a child does not cancel its parent");
        let child = c.child();
        c.cancel();
        assert!(d.is_cancelled());
        assert!(child.is_cancelled(), "a parent cancels its children");
    }
}
