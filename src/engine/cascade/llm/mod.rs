//! The cascade's LLM part: an OpenAI-compatible server over HTTP (`openai`), or a GGUF
//! chat model run in-process (`gguf`, the default, so the mode works with no server).

pub mod bpe;
pub mod download;
pub mod gguf;
pub mod openai;
pub mod qwen2;
pub mod sse;
pub mod synthetic;

pub use gguf::{GgufLlm, GgufLlmOptions};
pub use openai::{OpenAiLlm, OpenAiOptions, DEFAULT_API_KEY_ENV};

use crate::bus::{Cancel, LoadProgress};
use crate::engine::cascade::parts::LlmError;
use std::path::PathBuf;

/// The GGUF to load: `--llm-gguf`, else the default in the Hugging Face cache, else
/// downloaded into it (progress and cancel as for Moshi's checkpoints).
pub fn locate_gguf(
    options: &GgufLlmOptions,
    progress: &mut dyn FnMut(LoadProgress),
    cancel: &Cancel,
) -> Result<PathBuf, LlmError> {
    match gguf::find_gguf(options) {
        Some(p) => Ok(p),
        None => download::download_file(&options.repo, &options.file, progress, cancel),
    }
}
