//! Loading the cascade: its three parts on one device, found the way Moshi's weights
//! are (a directory given, the Hugging Face cache, a download), or the built-in tiny
//! parts with `--demo`. One load, one progress display, one cancel flag, and one CPU
//! fallback for the three together.

use super::machine::{Cascade, TurnSettings};
use crate::bus::{Cancel, LoadProgress};
use crate::models::llm::{self, LlmChoice};
use crate::models::moshi::{self, DeviceChoice, Discovery, LoadedModel, ModelLoadError};
use crate::models::parts::LlmError;
use crate::models::speech::files::{self as speech_files, SttOptions, TtsOptions};
use crate::models::speech::synthetic as synthetic_speech;
use crate::models::speech::tts::kyutai::KyutaiTts;
use crate::models::speech::tts::worker::TtsThread;
use std::path::{Path, PathBuf};

/// Everything `--engine cascade` needs, as plain options.
#[derive(Debug, Clone, PartialEq)]
pub struct CascadeOptions {
    /// The built-in tiny parts (random weights, written once to the cache directory):
    /// the whole mode runs with no download, and says nothing sensible.
    pub demo: bool,
    pub device: DeviceChoice,
    pub stt: SttOptions,
    /// Kyutai's TTS, used when `pocket` is `None`.
    pub tts: TtsOptions,
    /// Pocket TTS (the default synthesiser).
    pub pocket: Option<crate::models::speech::tts::pocket::PocketOptions>,
    pub llm: LlmChoice,
    pub settings: TurnSettings,
    /// The session's tools (src/tools), offered to an OpenAI-compatible server's model.
    pub tools: crate::tools::SharedTools,
}

fn llm_failure(e: LlmError) -> ModelLoadError {
    ModelLoadError::new(e.message, e.remedy)
}

/// Where `--demo` keeps its tiny parts: written on first use, reused after.
pub fn demo_dir() -> PathBuf {
    std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .or_else(|| directories::BaseDirs::new().map(|d| d.cache_dir().to_path_buf()))
        .unwrap_or_else(std::env::temp_dir)
        .join("assistant")
        .join("cascade-demo")
}

/// Write the tiny parts under `dir` unless they are there; the options that load them.
pub fn write_demo(dir: &Path, opts: &CascadeOptions) -> Result<CascadeOptions, ModelLoadError> {
    let failed = |what: &str, e: anyhow::Error| {
        ModelLoadError::new(
            format!("{}: cannot write the demo {what}: {e:#}", dir.display()),
            "check free space and permissions of the cache directory (XDG_CACHE_HOME)",
        )
    };
    let (stt, tts, voice, gguf) = (
        dir.join("stt"),
        dir.join("tts"),
        dir.join("voice.safetensors"),
        dir.join("llm.gguf"),
    );
    if !speech_files::stt_complete(&stt) {
        synthetic_speech::write_stt(&stt, 1).map_err(|e| failed("recogniser", e))?;
    }
    if !speech_files::tts_complete(&tts) {
        synthetic_speech::write_tts(&tts, 2).map_err(|e| failed("synthesiser", e))?;
    }
    if !voice.exists() {
        synthetic_speech::write_voice(&voice, 3).map_err(|e| failed("voice", e))?;
    }
    if llm::gguf::check_file(&gguf).is_err() {
        llm::synthetic::write_tiny_qwen2(&gguf, &Default::default())
            .map_err(|e| failed("LLM", e))?;
    }
    let mut o = opts.clone();
    // The demo's tiny synthesiser is Kyutai's layout.
    o.pocket = None;
    o.stt.model_dir = Some(stt);
    o.tts.model_dir = Some(tts);
    // The tiny TTS has one voice: personas' voices are names in Kyutai's voices repo.
    o.tts.voice = Some(voice.display().to_string());
    if let LlmChoice::Gguf(g) = &mut o.llm {
        g.gguf.get_or_insert(gguf);
    }
    Ok(o)
}

/// Load the three parts and the turn machine over them.
pub fn load_cascade(
    opts: &CascadeOptions,
    disc: &Discovery,
    progress: &mut dyn FnMut(LoadProgress),
    cancel: &Cancel,
) -> Result<LoadedModel, ModelLoadError> {
    let mut opts = if opts.demo {
        write_demo(&demo_dir(), opts)?
    } else {
        opts.clone()
    };
    // Find (or download) the GGUF before loading anything, so a missing model fails
    // at once; a server needs no weights and is first contacted by the first reply.
    if let LlmChoice::Gguf(g) = &mut opts.llm {
        g.gguf = Some(llm::locate_gguf(g, disc, progress, cancel).map_err(llm_failure)?);
    }
    moshi::load_on_device(opts.device, cancel, |d, n| {
        let stt = crate::models::speech::stt::recogniser::open(
            &opts.stt,
            disc,
            d,
            crate::models::speech::stt::whisper::Threading::Worker,
            progress,
            cancel,
        )?;
        let tts: Box<dyn crate::models::parts::TextToSpeech> = match &opts.pocket {
            Some(p) => Box::new(crate::models::speech::tts::pocket::PocketTts::open(
                p, disc, d, progress, cancel,
            )?),
            None => Box::new(KyutaiTts::open(&opts.tts, disc, d, progress, cancel)?),
        };
        // On a CPU its steps are slow and uneven: off the engine thread.
        let tts = if d.is_cpu() {
            Box::new(TtsThread::spawn(tts).map_err(|e| {
                ModelLoadError::new(
                    format!("cannot start the synthesiser's thread: {e}"),
                    "free some memory or threads and try again",
                )
            })?)
        } else {
            tts
        };
        let llm: std::sync::Arc<dyn crate::models::parts::Llm> = match (&opts.llm, &opts.tools.0) {
            (LlmChoice::Server(o), Some(tools)) if tools.any_for_some_persona() => {
                let server = llm::OpenAiLlm::new(o.clone()).map_err(llm_failure)?;
                std::sync::Arc::new(llm::tool_loop::ToolUsingLlm::new(server, tools.clone()))
            }
            // Qwen2.5 in-process, through its chat template's tool format.
            (LlmChoice::Gguf(g), Some(tools)) if tools.any_for_some_persona() => {
                let path = llm::locate_gguf(g, disc, progress, cancel).map_err(llm_failure)?;
                let model = llm::GgufLlm::load(&path, d, g, cancel).map_err(llm_failure)?;
                std::sync::Arc::new(llm::tool_loop::ToolUsingLlm::new(model, tools.clone()))
            }
            _ => llm::open_llm(&opts.llm, disc, d, progress, cancel).map_err(llm_failure)?,
        };
        let mut model = Cascade::new(stt, tts, llm, n, opts.settings.clone())
            .with_dtype(speech_files::compute_dtype(d).as_str())
            .with_fixed_voice(opts.demo);
        if let Some(tools) = &opts.tools.0 {
            model = model.with_consent(tools.desk().clone());
        }
        Ok(LoadedModel {
            model: Box::new(model),
            notices: Vec::new(),
            degraded: None,
            fell_back_to_demo: false,
        })
    })
}
