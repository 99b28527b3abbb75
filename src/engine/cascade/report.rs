//! What `doctor` says about the cascade's three parts: where each would load from,
//! and the memory the three take together (they share one device).

use super::load::CascadeOptions;
use crate::models::llm::{gguf, LlmChoice};
use crate::models::moshi::discovery::find_snapshot;
use crate::models::moshi::Discovery;
use crate::models::speech::files::{self as speech_files, TTS_REPO};
use std::path::PathBuf;

/// Where one part comes from.
#[derive(Debug, Clone, PartialEq)]
pub enum PartSource {
    /// On disk, with its memory estimate when it could be read.
    Found {
        path: PathBuf,
        memory: Result<u64, String>,
    },
    /// Not here; the first run downloads it from this repository.
    Download { repo: String },
    /// Not here and cannot be fetched (offline), or the path given is not usable.
    Missing { what: String, fix: String },
    /// A server: no weights here.
    Server { url: String },
    /// `--demo`: the built-in tiny part.
    Demo,
}

#[derive(Debug, Clone, PartialEq)]
pub struct CascadeReport {
    pub stt: PartSource,
    pub tts: PartSource,
    pub llm: PartSource,
}

impl CascadeReport {
    /// The three parts' memory together, when all three estimates are known.
    pub fn total_memory(&self) -> Option<u64> {
        [&self.stt, &self.tts, &self.llm]
            .iter()
            .map(|p| match p {
                PartSource::Found { memory: Ok(m), .. } => Some(*m),
                PartSource::Server { .. } | PartSource::Demo => Some(0),
                _ => None,
            })
            .sum()
    }
}

fn speech(
    dir: &Option<PathBuf>,
    repo: &str,
    disc: &Discovery,
    complete: fn(&std::path::Path) -> bool,
    memory: impl Fn(&std::path::Path) -> Result<u64, String>,
) -> PartSource {
    let found = match dir {
        Some(d) if complete(d) => Some(d.clone()),
        Some(d) => {
            return PartSource::Missing {
                what: format!(
                    "{} is not a checkpoint in the layout of {repo}",
                    d.display()
                ),
                fix: format!("point the flag at a directory holding {repo}'s files"),
            }
        }
        None => disc
            .hf_cache
            .as_deref()
            .and_then(|c| find_snapshot(c, repo, &complete)),
    };
    match found {
        Some(path) => PartSource::Found {
            memory: memory(&path),
            path,
        },
        None if disc.endpoint.is_some() => PartSource::Download { repo: repo.into() },
        None => PartSource::Missing {
            what: format!("{repo} is not in the Hugging Face cache and downloads are off"),
            fix: "unset HF_HUB_OFFLINE, or give its directory with the flag".into(),
        },
    }
}

/// Pocket TTS: its directory, or `languages/<model>/` in the cache; memory about its
/// weights file (f32, as loaded).
fn pocket_source(
    p: &crate::models::speech::tts::pocket::PocketOptions,
    disc: &Discovery,
) -> PartSource {
    use crate::models::speech::tts::pocket::files::complete;
    let sub = format!("languages/{}", p.model);
    let found = match &p.model_dir {
        Some(d) if complete(d) => Some(d.clone()),
        Some(d) => {
            return PartSource::Missing {
                what: format!("{} holds no model.safetensors and tokenizer", d.display()),
                fix: format!("point --tts-model-dir at {sub}/ of {}", p.hf_repo),
            }
        }
        None => disc
            .hf_cache
            .as_deref()
            .and_then(|c| find_snapshot(c, &p.hf_repo, &|d| complete(&d.join(&sub))))
            .map(|d| d.join(&sub)),
    };
    match found {
        Some(path) => PartSource::Found {
            memory: std::fs::metadata(
                path.join(crate::models::speech::tts::pocket::model::WEIGHTS_FILE),
            )
            .map(|m| m.len())
            .map_err(|e| e.to_string()),
            path,
        },
        None if disc.endpoint.is_some() => PartSource::Download {
            repo: format!("{} ({sub})", p.hf_repo),
        },
        None => PartSource::Missing {
            what: format!(
                "{} ({sub}) is not in the Hugging Face cache and downloads are off",
                p.hf_repo
            ),
            fix: "unset HF_HUB_OFFLINE, or give its directory with --tts-model-dir".into(),
        },
    }
}

pub fn cascade_report(opts: &CascadeOptions, disc: &Discovery) -> CascadeReport {
    if opts.demo {
        return CascadeReport {
            stt: PartSource::Demo,
            tts: PartSource::Demo,
            llm: match &opts.llm {
                LlmChoice::Server(o) => PartSource::Server { url: o.url.clone() },
                LlmChoice::Gguf(_) => PartSource::Demo,
            },
        };
    }
    let cpu = ::moshi::candle::Device::Cpu;
    let stt = speech(
        &opts.stt.model_dir,
        &opts.stt.hf_repo,
        disc,
        speech_files::stt_complete,
        |d| {
            speech_files::stt_memory_in(d, &cpu)
                .map(|m| m.total())
                .map_err(|e| e.message)
        },
    );
    let tts = match &opts.pocket {
        Some(p) => pocket_source(p, disc),
        None => speech(
            &opts.tts.model_dir,
            TTS_REPO,
            disc,
            speech_files::tts_complete,
            |d| {
                speech_files::tts_memory_in(d, &cpu)
                    .map(|m| m.total())
                    .map_err(|e| e.message)
            },
        ),
    };
    let llm = match &opts.llm {
        LlmChoice::Server(o) => PartSource::Server { url: o.url.clone() },
        LlmChoice::Gguf(g) => match gguf::find_gguf(g, disc.hf_cache.as_deref()) {
            Some(path) => PartSource::Found {
                memory: gguf::check_file(&path)
                    .map(|s| gguf::memory_bytes(&s, g.context))
                    .map_err(|e| e.message),
                path,
            },
            None if disc.endpoint.is_some() => PartSource::Download {
                repo: format!("{}/{}", g.repo, g.file),
            },
            None => PartSource::Missing {
                what: format!(
                    "{} is not in the Hugging Face cache and downloads are off",
                    g.file
                ),
                fix: "give --llm-gguf a GGUF chat model, or --llm-url a server".into(),
            },
        },
    };
    CascadeReport { stt, tts, llm }
}
