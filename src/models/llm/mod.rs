//! The cascade's LLM part: an OpenAI-compatible server over HTTP (`openai`), or a GGUF
//! chat model run in-process (`gguf`, the default, so the mode works with no server);
//! either runs on a thread of its own (`worker`).
//!
//! May import `models::parts`, `models::cpu_share`, `models::moshi` (the Hugging Face
//! cache), `tools` (the tool loop) and `bus`.

pub mod bpe;
pub mod gguf;
pub mod openai;
pub mod qwen2;
pub mod qwen_tools;
pub mod sse;
pub mod synthetic;
pub mod tool_loop;
pub mod worker;

pub use gguf::{GgufLlm, GgufLlmOptions};
pub use openai::{OpenAiLlm, OpenAiOptions, DEFAULT_API_KEY_ENV};

use crate::bus::{Cancel, LoadProgress};
use crate::models::moshi::discovery::{download_files, DownloadError, Hub};
use crate::models::moshi::Discovery;
use crate::models::parts::LlmError;
use std::path::PathBuf;

/// The GGUF to load: `--llm-gguf`, else the default in the Hugging Face cache, else
/// downloaded into it from `discovery`'s hub (progress and cancel as for Moshi's
/// checkpoints; `Discovery::from_env()` for the user's cache and hub).
pub fn locate_gguf(
    options: &GgufLlmOptions,
    discovery: &Discovery,
    progress: &mut dyn FnMut(LoadProgress),
    cancel: &Cancel,
) -> Result<PathBuf, LlmError> {
    if let Some(p) = gguf::find_gguf(options, discovery.hf_cache.as_deref()) {
        return Ok(p);
    }
    let missing = |why: &str| LlmError {
        message: format!(
            "{} is not in the Hugging Face cache, and {why}.",
            options.file
        ),
        remedy: "Give --llm-gguf a GGUF chat model, or allow the download (unset HF_HUB_OFFLINE)."
            .into(),
        transient: false,
    };
    let cache = discovery.hf_cache.as_deref().ok_or_else(|| {
        missing("there is no cache directory to download it into (HOME is unset)")
    })?;
    let endpoint = discovery
        .endpoint
        .as_deref()
        .ok_or_else(|| missing("downloads are off (HF_HUB_OFFLINE)"))?;
    let hub = Hub {
        endpoint,
        cache,
        chunk_bytes: discovery.chunk_bytes,
    };
    // Moshi's hf-hub download, asked for this one file.
    let file = options.file.as_str();
    let choose = |listed: &dyn Fn(&str) -> bool| {
        if listed(file) {
            Ok(vec![file.to_string()])
        } else {
            Err(format!("it has no {file}"))
        }
    };
    let complete = |dir: &std::path::Path| dir.join(file).is_file();
    match download_files(&hub, &options.repo, &choose, &complete, progress, cancel) {
        Ok(snapshot) => Ok(snapshot.join(file)),
        Err(DownloadError::Cancelled) => Err(LlmError {
            message: format!("Downloading {file} was cancelled."),
            remedy: String::new(),
            transient: true,
        }),
        Err(DownloadError::Failed(e)) => Err(LlmError {
            message: format!("Downloading {} from {endpoint} failed: {e}.", options.file),
            remedy: "Check the network (or HF_ENDPOINT), or download the file yourself and give \
                     its path with --llm-gguf."
                .into(),
            transient: true,
        }),
    }
}

/// Which LLM the cascade talks to.
#[derive(Debug, Clone, PartialEq)]
pub enum LlmChoice {
    /// An OpenAI-compatible server (`--llm-url`, `--llm-model`).
    Server(OpenAiOptions),
    /// A GGUF chat model in-process (the default; `--llm-gguf`).
    Gguf(GgufLlmOptions),
}

/// Open the chosen LLM: a server client at once (nothing is contacted until the first
/// reply), or the GGUF found or downloaded (`locate_gguf`) and loaded onto `device`.
pub fn open_llm(
    choice: &LlmChoice,
    discovery: &Discovery,
    device: &moshi::candle::Device,
    progress: &mut dyn FnMut(LoadProgress),
    cancel: &Cancel,
) -> Result<std::sync::Arc<dyn crate::models::parts::Llm>, LlmError> {
    match choice {
        LlmChoice::Server(o) => Ok(std::sync::Arc::new(OpenAiLlm::new(o.clone())?)),
        LlmChoice::Gguf(o) => {
            let path = locate_gguf(o, discovery, progress, cancel)?;
            Ok(std::sync::Arc::new(GgufLlm::load(
                &path, device, o, cancel,
            )?))
        }
    }
}
