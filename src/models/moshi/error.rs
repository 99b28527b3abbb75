//! The one error type of model loading: what went wrong (file, tensor, expectation) and
//! what the user can do about it.

use std::fmt;

#[derive(Debug, Clone, PartialEq)]
pub struct ModelLoadError {
    /// What failed, naming the file, the tensor and what was expected where they apply.
    pub message: String,
    /// What the user can do about it.
    pub remedy: String,
    cancelled: bool,
}

impl ModelLoadError {
    pub fn new(message: impl Into<String>, remedy: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            remedy: remedy.into(),
            cancelled: false,
        }
    }

    /// The load stopped because its cancel flag was set (the user quit, or picked
    /// another voice): nothing failed, and there is nothing to fix.
    pub fn cancelled() -> Self {
        Self {
            message: "loading was cancelled".into(),
            remedy: String::new(),
            cancelled: true,
        }
    }

    pub fn is_cancelled(&self) -> bool {
        self.cancelled
    }
}

impl fmt::Display for ModelLoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.message, self.remedy)
    }
}

impl std::error::Error for ModelLoadError {}

/// Remedy shared by every problem inside a checkpoint directory.
pub(crate) const REMEDY_CHECKPOINT: &str = "check the checkpoint directory against the official \
     layout (model.safetensors or model.q8.gguf, tokenizer-e351c8d8-checkpoint125.safetensors, \
     tokenizer_spm_32k_3.model), download it again, or run with --demo";

/// A problem inside a checkpoint directory.
pub(crate) fn checkpoint_error(message: impl Into<String>) -> ModelLoadError {
    ModelLoadError::new(message, REMEDY_CHECKPOINT)
}

/// A candle error's message without the backtrace candle attaches when RUST_BACKTRACE is
/// set: the user needs the file and tensor, not our stack.
pub(crate) fn candle_message(e: &moshi::candle::Error) -> String {
    use moshi::candle::Error;
    match e {
        Error::WithBacktrace { inner, .. } => candle_message(inner),
        Error::WithPath { inner, path } => format!("{}: {}", path.display(), candle_message(inner)),
        Error::Context { inner, context } => format!("{context}: {}", candle_message(inner)),
        e => e.to_string(),
    }
}
