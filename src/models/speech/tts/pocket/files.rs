//! Finding Pocket TTS's files as the other speech parts do: `--tts-model-dir`, then
//! the Hugging Face cache, then a download (`languages/<model>/` of
//! `kyutai/pocket-tts-without-voice-cloning`: the weights, the tokenizer, and the
//! predefined voice asked for, from `embeddings/`).

use super::model::{REPO, WEIGHTS_FILE};
use super::synth::PocketSampling;
use super::voice::{self, DEFAULT_VOICE};
use crate::bus::{Cancel, LoadProgress};
use crate::models::moshi::discovery;
use crate::models::moshi::{Discovery, ModelLoadError};
use crate::models::speech::files::fetch;
use std::path::{Path, PathBuf};

/// Where Pocket TTS comes from and how it speaks: plain options (the command line
/// fills them).
#[derive(Debug, Clone, PartialEq)]
pub struct PocketOptions {
    /// `--tts-model-dir`: a directory holding `model.safetensors`, the tokenizer, and
    /// optionally `config.yaml` and `embeddings/<voice>.safetensors`.
    pub model_dir: Option<PathBuf>,
    pub hf_repo: String,
    /// The model's folder in the repo (`languages/<model>/`) and its built-in config:
    /// `english` (default) or `english_18m_2026-10`.
    pub model: String,
    /// `--tts-voice`: a predefined voice name (`alba`, …) or a voice-state file.
    pub voice: Option<String>,
    pub sampling: PocketSampling,
    /// The flow LM's transformer in q8_0.
    pub q8: bool,
    /// Words to wait for before speaking a sentence that is not finished yet, when a
    /// comma (or ; :) ends them; 0 waits for whole sentences.
    pub eager_words: usize,
}

impl Default for PocketOptions {
    fn default() -> Self {
        Self {
            model_dir: None,
            hf_repo: REPO.into(),
            model: "english".into(),
            voice: None,
            sampling: PocketSampling::default(),
            q8: false,
            eager_words: super::tts::EAGER_WORDS,
        }
    }
}

fn err(message: impl Into<String>, remedy: impl Into<String>) -> ModelLoadError {
    ModelLoadError::new(message, remedy)
}

fn folder(model: &str) -> String {
    format!("languages/{model}")
}

/// A directory with the weights and a tokenizer.
pub fn complete(dir: &Path) -> bool {
    dir.join(WEIGHTS_FILE).is_file()
        && (dir.join("tokenizer.json").is_file() || dir.join("tokenizer.model").is_file())
}

/// The model directory: `--tts-model-dir`, else the HF cache, else a download.
pub fn find_dir(
    opts: &PocketOptions,
    disc: &Discovery,
    progress: &mut dyn FnMut(LoadProgress),
    cancel: &Cancel,
) -> Result<PathBuf, ModelLoadError> {
    if let Some(d) = &opts.model_dir {
        if !d.is_dir() {
            return Err(err(
                format!("--tts-model-dir {}: no such directory", d.display()),
                format!("give a directory holding {WEIGHTS_FILE} and the tokenizer (languages/<name>/ of {REPO})"),
            ));
        }
        return Ok(d.clone());
    }
    let sub = folder(&opts.model);
    if let Some(d) = disc
        .hf_cache
        .as_deref()
        .and_then(|c| discovery::find_snapshot(c, &opts.hf_repo, &|d| complete(&d.join(&sub))))
    {
        return Ok(d.join(&sub));
    }
    let want_voice = format!(
        "{sub}/embeddings/{}.safetensors",
        opts.voice
            .as_deref()
            .filter(|v| voice::is_predefined(v))
            .unwrap_or(DEFAULT_VOICE)
    );
    let s = sub.clone();
    let choose = move |listed: &dyn Fn(&str) -> bool| -> Result<Vec<String>, String> {
        let weights = format!("{s}/{WEIGHTS_FILE}");
        if !listed(&weights) {
            return Err(format!("it has no {weights}"));
        }
        let tok = ["tokenizer.json", "tokenizer.model"]
            .iter()
            .map(|t| format!("{s}/{t}"))
            .find(|t| listed(t))
            .ok_or_else(|| format!("it has no {s}/tokenizer.json"))?;
        let mut files = vec![tok];
        for extra in [format!("{s}/config.yaml"), want_voice.clone()] {
            if listed(&extra) {
                files.push(extra);
            }
        }
        files.push(weights);
        Ok(files)
    };
    let s = sub.clone();
    let done = move |d: &Path| complete(&d.join(&s));
    match fetch(disc, &opts.hf_repo, &choose, &done, progress, cancel)? {
        Ok(snapshot) => Ok(snapshot.join(&sub)),
        Err(why) => Err(err(
            format!("{} ({sub}) is not on this machine: {why}", opts.hf_repo),
            format!(
                "run again with the network up (a download resumes where it stopped), or download {sub}/ of {} yourself and pass --tts-model-dir DIR",
                opts.hf_repo
            ),
        )),
    }
}

/// What a `--tts-voice` names.
#[derive(Debug, Clone, PartialEq)]
pub enum VoiceSource {
    /// A voice-state file.
    State(PathBuf),
    /// An audio file to clone (needs the encoder).
    Audio(PathBuf),
    /// None asked for and the default not to be had: the model's voice-less start.
    Empty,
}

/// Resolve a voice: a file, else a name in `<dir>/embeddings/`, else (a predefined
/// name, or the default) a download of it. `None` asks for the default voice.
pub fn find_voice(
    dir: &Path,
    name: Option<&str>,
    opts: &PocketOptions,
    disc: &Discovery,
    progress: &mut dyn FnMut(LoadProgress),
    cancel: &Cancel,
) -> Result<VoiceSource, ModelLoadError> {
    if let Some(v) = name {
        if let Some(s) = local_voice(dir, v) {
            return Ok(s);
        }
    }
    let wanted = name.unwrap_or(DEFAULT_VOICE);
    if let Some(s) = local_voice(dir, wanted) {
        return Ok(s);
    }
    if voice::is_predefined(wanted) {
        let sub = folder(&opts.model);
        let file = format!("{sub}/embeddings/{wanted}.safetensors");
        let f = file.clone();
        let choose = move |listed: &dyn Fn(&str) -> bool| -> Result<Vec<String>, String> {
            if listed(&f) {
                Ok(vec![f.clone()])
            } else {
                Err(format!("it has no {f}"))
            }
        };
        let f = file.clone();
        let done = move |d: &Path| d.join(&f).is_file();
        let cached = disc
            .hf_cache
            .as_deref()
            .and_then(|c| discovery::find_snapshot(c, &opts.hf_repo, &done));
        let got = match cached {
            Some(d) => Ok(d),
            None => fetch(disc, &opts.hf_repo, &choose, &done, progress, cancel)?,
        };
        match got {
            Ok(d) => return Ok(VoiceSource::State(d.join(&file))),
            Err(why) if name.is_some() => {
                return Err(err(
                    format!("voice {wanted}: not in {}, and {why}", dir.join("embeddings").display()),
                    "run again with the network up, or give a voice-state file (*.safetensors, as the package's export-voice writes)".to_string(),
                ))
            }
            Err(why) => {
                tracing::warn!("no default Pocket TTS voice ({why}); speaking without a voice prompt");
                return Ok(VoiceSource::Empty);
            }
        }
    }
    match name {
        None => Ok(VoiceSource::Empty),
        Some(v) => Err(unknown_voice(v, dir)),
    }
}

pub fn unknown_voice(v: &str, dir: &Path) -> ModelLoadError {
    err(
        format!(
            "unknown voice {v:?}: not a file, not in {}, and not a predefined voice",
            dir.join("embeddings").display()
        ),
        format!(
            "use a predefined voice ({}) or a voice-state .safetensors file",
            voice::PREDEFINED.join(", ")
        ),
    )
}

/// A voice that is a file, or `<dir>/embeddings/<name>.safetensors`.
pub fn local_voice(dir: &Path, v: &str) -> Option<VoiceSource> {
    let p = Path::new(v);
    if p.is_file() {
        let ext = p
            .extension()
            .and_then(|e| e.to_str())
            .unwrap_or("")
            .to_ascii_lowercase();
        return Some(if ext == "safetensors" {
            VoiceSource::State(p.to_path_buf())
        } else {
            VoiceSource::Audio(p.to_path_buf())
        });
    }
    let e = dir.join("embeddings").join(format!("{v}.safetensors"));
    e.is_file().then_some(VoiceSource::State(e))
}
