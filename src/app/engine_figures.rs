//! The sizes and speeds the engine choice rests on, in one table. Each figure says where
//! it comes from: measured here, published by its makers, or estimated from measured
//! parts. Correct them here as the parts are measured; the choice, `doctor`, the header
//! and the first-start chooser all read them from this file.

use crate::models::llm::gguf;
use crate::models::speech::files::WHISPER_REPO;

/// The real-time budget of one step: one 80 ms frame of audio.
pub const FRAME_MS: f64 = 80.0;

/// Cores of the development machine the CPU figures were measured on.
pub const MEASURED_CORES: usize = 2;
/// A CPU step reads every weight once, so memory bandwidth bounds it: more cores than
/// the measured two help, up to this factor.
pub const MAX_CORE_SPEEDUP: f64 = 3.0;

/// Where a figure comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// Measured on the 2-core development machine (README, FACTS).
    Measured,
    /// From the memory plan (`models::moshi::sizing`) and a bandwidth estimate.
    Planned,
    /// Estimated from measured parts; to be replaced by a measurement.
    Estimated,
}

impl Source {
    pub fn word(self) -> &'static str {
        match self {
            Source::Measured => "measured",
            Source::Planned => "planned",
            Source::Estimated => "estimate",
        }
    }
}

/// A time per 80 ms step, on the 2-core machine unless said otherwise.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StepFigure {
    pub ms: f64,
    pub source: Source,
    /// What was measured or how it was estimated.
    pub basis: &'static str,
}

/// One part to download: where from, how big, and its memory once loaded.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Part {
    pub what: &'static str,
    pub repo: &'static str,
    /// Bytes to download (the files a load fetches).
    pub download: u64,
    /// Bytes in memory once loaded on the CPU.
    pub memory: u64,
}

/// Moshi 7B q8 (`kyutai/moshiko-candle-q8`): `model.q8.gguf` 8.17 GB, Mimi 385 MB,
/// the tokenizer. Its memory comes from the plan, not from here.
pub const MOSHI_Q8_DOWNLOAD: u64 = 8_560_000_000;

/// Moshi 7B q8's LM step on the CPU, at full size with random weights (README,
/// "moshiko q8 at full size"): eight times the budget before Mimi adds its 108 ms.
pub const MOSHI_Q8_CPU_STEP: StepFigure = StepFigure {
    ms: 657.0,
    source: Source::Measured,
    basis: "moshiko q8 at full size, random weights, LM step on 2 cores",
};

/// The published Mimi on the CPU, per frame: encode 52 ms and decode 56 ms (README).
/// Moshi runs both every step, beside its LM.
pub const MIMI_CPU_STEP: StepFigure = StepFigure {
    ms: 108.0,
    source: Source::Measured,
    basis: "real-size Mimi, random weights, encode and decode of one frame on 2 cores",
};
/// A small Mimi (a test checkpoint's own `mimi_config.toml`): the demo's codec cost.
pub const SMALL_MIMI_CPU_STEP_MS: f64 = 2.8;

/// The CPU cascade's recogniser: Whisper base.en (74M parameters, f32 safetensors
/// 290 MB), streaming on a thread of its own. Kyutai's STT 1B does not keep up on two
/// cores even in q4 (150-385 ms a step, README).
pub const CPU_STT: Part = Part {
    what: "Whisper base.en",
    repo: WHISPER_REPO,
    download: 290_000_000,
    memory: 400_000_000,
};

/// Qwen2.5-0.5B-Instruct q4_k_m in-process (`gguf::memory_bytes` at a 4096 context).
pub const CPU_LLM: Part = Part {
    what: "Qwen2.5-0.5B q4_k_m",
    repo: gguf::DEFAULT_REPO,
    download: 491_000_000,
    memory: 650_000_000,
};

/// Kyutai's Pocket TTS (about 100M parameters with its codec), f32 on the CPU.
pub const POCKET_TTS_REPO: &str = "kyutai/pocket-tts-without-voice-cloning";
pub const CPU_TTS: Part = Part {
    what: "Pocket TTS",
    repo: POCKET_TTS_REPO,
    download: 300_000_000,
    memory: 500_000_000,
};

/// The CPU cascade's parts, in the order a load fetches them.
pub const CPU_CASCADE: [Part; 3] = [CPU_STT, CPU_LLM, CPU_TTS];

/// The cascade's real-time step: what the engine thread does for each 80 ms frame while
/// the assistant speaks, Pocket TTS's frame (flow LM 34.8 ms and decoder 18.2 ms, f32,
/// `assistant bench pocket`, load 1.7) and the recogniser's frame (0.1 ms: Whisper
/// transcribes on a thread of its own). The LLM writes on its own thread beside it.
pub const CPU_CASCADE_STEP: StepFigure = StepFigure {
    ms: 53.0,
    source: Source::Measured,
    basis: "Pocket TTS frame (f32) and the recogniser's frame step on 2 cores",
};

/// The demo model per step: encode 1.3 ms, LM 1.2 ms, decode 1.5 ms (README).
pub const DEMO_STEP: StepFigure = StepFigure {
    ms: 4.0,
    source: Source::Measured,
    basis: "demo model per step",
};
/// The demo model in memory: a tiny LM and Mimi built in memory.
pub const DEMO_MEMORY: u64 = 40 << 20;

/// The CPU cascade's download and memory, all parts together.
pub fn cpu_cascade_totals() -> (u64, u64) {
    CPU_CASCADE
        .iter()
        .fold((0, 0), |(d, m), p| (d + p.download, m + p.memory))
}

/// A 2-core CPU figure on a machine with `cores` cores.
pub fn cpu_step_ms(figure: StepFigure, cores: usize) -> f64 {
    let speedup = (cores.max(1) as f64 / MEASURED_CORES as f64).clamp(0.5, MAX_CORE_SPEEDUP);
    figure.ms / speedup
}
