//! PersonaPlex voice prompts by what names them: a WAV, one of NVIDIA's `.pt` voice files,
//! or a voice name (`NATF2`, `NATF2.pt`) looked up in a voices directory, the one
//! NVIDIA's `voices.tgz` unpacks to. And the `.pt` files themselves, read without Python.
//!
//! A `.pt` voice is what NVIDIA's `LMGen._step_voice_prompt_core` saves with
//! `save_voice_prompt_embeddings`: `torch.save({"embeddings": E, "cache": C})`, where `E`
//! stacks the LM input embedding of every voice-prompt step that ran the model
//! (`[steps, 1, 1, d_model]`, the model's dtype; step 0 runs none) and `C` is the
//! token cache once the voice prompt is in (`[1, 1 + dep_q, max_delay + 3]`, int64).
//! Replaying it feeds `E` to the temporal transformer step by step, then copies `C`.

use anyhow::{anyhow, bail, Result};
use moshi::candle::{DType, Device, Tensor};
use std::path::{Path, PathBuf};

/// Where NVIDIA's `voices.tgz` unpacks, inside the checkpoint directory by default.
pub const VOICES_SUBDIR: &str = "voices";

/// A voice prompt, found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VoiceSource {
    /// Audio of the voice: resampled, loudness-normalised and Mimi-encoded at priming.
    Wav(PathBuf),
    /// NVIDIA's precomputed voice (`.pt`): embeddings replayed, then the token cache.
    Embeddings(PathBuf),
}

impl VoiceSource {
    pub fn path(&self) -> &Path {
        match self {
            Self::Wav(p) | Self::Embeddings(p) => p,
        }
    }

    fn of(path: PathBuf) -> Self {
        let pt = path
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("pt"));
        if pt {
            Self::Embeddings(path)
        } else {
            Self::Wav(path)
        }
    }
}

/// Who asked: the user's own files and flags may name any path; a remote client (the
/// server's `voice_prompt` query parameter) only a voice inside the voices directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VoiceOrigin {
    Local,
    Remote,
}

/// Is `spec` one plain file name (no directory part, not `.` or `..`)?
fn is_plain_name(spec: &str) -> bool {
    !spec.is_empty()
        && !spec.contains(['/', '\\'])
        && spec != "."
        && spec != ".."
        && !spec.starts_with('.')
}

/// The voice names (file stems of `.pt` and `.wav` files) a directory offers, sorted.
pub fn voice_names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let p = e.path();
            let ext = p.extension()?.to_str()?.to_ascii_lowercase();
            (ext == "pt" || ext == "wav").then(|| p.file_stem()?.to_str().map(String::from))?
        })
        .collect();
    names.sort();
    names.dedup();
    names
}

/// What a `voice_prompt` (persona file, `--voice-prompt`, the server's query parameter)
/// names. A plain name is looked up in `voices_dir` as given, then with `.pt`, then with
/// `.wav` (so `NATF2` and NVIDIA's client's `NATF2.pt` both work); locally, anything else
/// is a file path. A path ending in `.pt` is a precomputed voice, anything else a WAV
/// (its reader refuses other formats). Errors name what was looked for, where, and the fix.
pub fn resolve_voice(
    spec: &str,
    voices_dir: Option<&Path>,
    origin: VoiceOrigin,
) -> Result<VoiceSource> {
    let spec = spec.trim();
    if spec.is_empty() {
        bail!("the voice prompt is empty: give a voice name (such as NATF2), a .pt voice file or a WAV");
    }
    let plain = is_plain_name(spec);
    if origin == VoiceOrigin::Remote && !plain {
        bail!(
            "voice prompt {spec:?}: a client may only name a voice (such as NATF2.pt), not a path"
        );
    }
    if plain {
        if let Some(dir) = voices_dir {
            let mut candidates = vec![dir.join(spec)];
            if Path::new(spec).extension().is_none() {
                candidates.push(dir.join(format!("{spec}.pt")));
                candidates.push(dir.join(format!("{spec}.wav")));
            }
            if let Some(found) = candidates.into_iter().find(|c| c.is_file()) {
                return Ok(VoiceSource::of(found));
            }
        }
    }
    let path = PathBuf::from(spec);
    if origin == VoiceOrigin::Local && path.is_file() {
        return Ok(VoiceSource::of(path));
    }
    let looks_like_name = plain && Path::new(spec).extension().is_none_or(|e| e == "pt");
    if !looks_like_name {
        bail!(
            "voice prompt {}: no such file; give the path of a WAV (a few seconds of one speaker) or a .pt voice file",
            path.display()
        );
    }
    match voices_dir {
        None => bail!(
            "unknown voice {spec:?}: no voices directory to look it up in; pass --voices-dir DIR (where NVIDIA's voices.tgz unpacks) or give a WAV path"
        ),
        Some(dir) if !dir.is_dir() => bail!(
            "unknown voice {spec:?}: the voices directory {} does not exist; unpack NVIDIA's voices.tgz there (from nvidia/personaplex-7b-v1) or pass --voices-dir DIR",
            dir.display()
        ),
        Some(dir) => {
            let names = voice_names(dir);
            let there = if names.is_empty() {
                "it holds no .pt or .wav voices".to_string()
            } else {
                format!("it has {}", names.join(", "))
            };
            bail!(
                "unknown voice {spec:?}: not in {} ({there}); use one of those names, or a WAV path",
                dir.display()
            )
        }
    }
}

/// NVIDIA's precomputed voice, read from its `.pt`.
#[derive(Debug, Clone)]
pub struct VoiceEmbeddings {
    /// One LM input embedding per voice step that ran the model: `[steps, d_model]`, f32.
    pub embeddings: Tensor,
    /// The token cache after the voice prompt: `1 + dep_q` streams of `max_delay + 3`
    /// positions (negative values, never-generated tokens, as `None`).
    pub cache: Vec<Vec<Option<u32>>>,
}

impl VoiceEmbeddings {
    pub fn steps(&self) -> usize {
        self.embeddings.dims().first().copied().unwrap_or(0)
    }

    pub fn d_model(&self) -> usize {
        self.embeddings.dims().get(1).copied().unwrap_or(0)
    }
}

/// Read one of NVIDIA's `.pt` voice files (a `torch.save` zip of a dict with
/// `embeddings` and `cache`) with candle's pickle reader. Errors name the file.
pub fn read_voice_pt(path: &Path) -> Result<VoiceEmbeddings> {
    let shown = path.display();
    let fix = "use one of NVIDIA's voice files (voices.tgz from nvidia/personaplex-7b-v1) or a WAV";
    if !path.is_file() {
        bail!("voice prompt {shown}: no such file; {fix}");
    }
    let pth = moshi::candle::pickle::PthTensors::new(path, None).map_err(|e| {
        anyhow!("voice prompt {shown}: not a PyTorch file as torch.save writes it ({e}); {fix}")
    })?;
    let get = |name: &str| -> Result<Option<Tensor>> {
        pth.get(name)
            .map_err(|e| anyhow!("voice prompt {shown}: tensor `{name}` unreadable ({e}); {fix}"))
    };
    let (Some(emb), Some(cache)) = (get("embeddings")?, get("cache")?) else {
        let mut held: Vec<&str> = pth.tensor_infos().keys().map(String::as_str).collect();
        held.sort();
        let held = if held.is_empty() {
            "no tensors".to_string()
        } else {
            held.join(", ")
        };
        bail!(
            "voice prompt {shown}: a PyTorch file but not a PersonaPlex voice (it holds {held}; a voice holds `embeddings` and `cache`); {fix}"
        );
    };
    let dims = emb.dims().to_vec();
    let d = *dims.last().unwrap_or(&0);
    let steps = dims.first().copied().unwrap_or(0);
    if dims.len() < 2 || d == 0 || dims.iter().product::<usize>() != steps * d {
        bail!("voice prompt {shown}: `embeddings` has shape {dims:?} where [steps, 1, 1, d_model] was expected; {fix}");
    }
    let embeddings = emb
        .to_dtype(DType::F32)?
        .reshape((steps, d))?
        .to_device(&Device::Cpu)?;
    let cdims = cache.dims().to_vec();
    if cdims.len() != 3 || cdims[0] != 1 || !cache.dtype().is_int() {
        bail!(
            "voice prompt {shown}: `cache` is {:?} of shape {cdims:?} where integer tokens [1, streams, positions] were expected; {fix}",
            cache.dtype()
        );
    }
    let rows: Vec<Vec<i64>> = cache.to_dtype(DType::I64)?.squeeze(0)?.to_vec2()?;
    let cache = rows
        .into_iter()
        .map(|r| r.into_iter().map(|t| u32::try_from(t).ok()).collect())
        .collect();
    Ok(VoiceEmbeddings { embeddings, cache })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_paths_and_remote_clients() {
        let dir = tempfile::tempdir().unwrap();
        let voices = dir.path().join("voices");
        std::fs::create_dir(&voices).unwrap();
        std::fs::write(voices.join("NATF2.pt"), b"x").unwrap();
        std::fs::write(voices.join("mine.wav"), b"x").unwrap();
        let v = Some(voices.as_path());
        let local = VoiceOrigin::Local;
        assert_eq!(
            resolve_voice("NATF2", v, local).unwrap(),
            VoiceSource::Embeddings(voices.join("NATF2.pt"))
        );
        assert_eq!(
            resolve_voice("NATF2.pt", v, VoiceOrigin::Remote).unwrap(),
            VoiceSource::Embeddings(voices.join("NATF2.pt"))
        );
        assert_eq!(
            resolve_voice("mine", v, local).unwrap(),
            VoiceSource::Wav(voices.join("mine.wav"))
        );
        let e = resolve_voice("NATM9", v, local).unwrap_err().to_string();
        assert!(e.contains("NATM9") && e.contains("NATF2, mine"), "{e}");
        let wav = dir.path().join("a.wav");
        std::fs::write(&wav, b"x").unwrap();
        let p = wav.to_str().unwrap();
        assert_eq!(
            resolve_voice(p, v, local).unwrap(),
            VoiceSource::Wav(wav.clone())
        );
        assert!(resolve_voice(p, v, VoiceOrigin::Remote)
            .unwrap_err()
            .to_string()
            .contains("not a path"));
        assert!(resolve_voice("../voices/NATF2.pt", v, VoiceOrigin::Remote).is_err());
        let e = resolve_voice("NATF2", None, local).unwrap_err().to_string();
        assert!(e.contains("--voices-dir"), "{e}");
        let e = resolve_voice("/no/such.wav", v, local)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("/no/such.wav") && e.contains("no such file"),
            "{e}"
        );
    }
}
