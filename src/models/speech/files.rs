//! Finding the speech checkpoints: a directory given on the command line, then the
//! Hugging Face cache, then a download into it (through the Moshi loader's hf-hub code);
//! and the checks that turn a missing, cut or foreign file into an error that names it.

use crate::bus::{Cancel, LoadProgress};
use crate::models::moshi::discovery::{self, DownloadError, Hub};
use crate::models::moshi::files::{check_safetensors, TensorHeader};
use crate::models::moshi::{Discovery, ModelLoadError};
use crate::models::speech::config::{SttConfig, TtsConfig};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub const STT_REPO: &str = "kyutai/stt-1b-en_fr-candle";
/// The CPU cascade's recogniser: Whisper base.en in the Hugging Face layout.
pub const WHISPER_REPO: &str = "openai/whisper-base.en";
pub const TTS_REPO: &str = "kyutai/tts-1.6b-en_fr";
pub const VOICES_REPO: &str = "kyutai/tts-voices";
pub const CONFIG_FILE: &str = "config.json";
pub use crate::models::speech::config::STT_LM_FILE;
/// The published repos' other files, fetched by a download.
pub const STT_FILES: [&str; 3] = [
    "tokenizer_en_fr_audio_8000.model",
    "mimi-pytorch-e351c8d8@125.safetensors",
    STT_LM_FILE,
];
pub const TTS_FILES: [&str; 3] = [
    "tokenizer_spm_8k_en_fr_audio.model",
    "tokenizer-e351c8d8-checkpoint125.safetensors",
    "dsm_tts_1e68beda@240.safetensors",
];
/// The voice Kyutai's TTS scripts use when none is asked for.
pub const DEFAULT_VOICE: &str = "expresso/ex03-ex01_happy_001_channel1_334s.wav";

/// Where the STT comes from: plain options (the command line fills them).
#[derive(Debug, Clone, PartialEq)]
pub struct SttOptions {
    /// `--stt-model-dir`: this directory and nothing else.
    pub model_dir: Option<PathBuf>,
    /// Looked for in the HF cache, then downloaded.
    pub hf_repo: String,
}

impl Default for SttOptions {
    fn default() -> Self {
        Self {
            model_dir: None,
            hf_repo: STT_REPO.into(),
        }
    }
}

/// Where the TTS and its voice come from.
#[derive(Debug, Clone, PartialEq)]
pub struct TtsOptions {
    /// `--tts-model-dir`: this directory and nothing else.
    pub model_dir: Option<PathBuf>,
    pub hf_repo: String,
    /// `--tts-voice`: a voice embedding file, or a name in the voices repo
    /// (`expresso/ex03-ex01_happy_001_channel1_334s.wav`, with or without the model's
    /// `.1e68beda@240.safetensors` suffix). `None`: `DEFAULT_VOICE` if it can be found,
    /// else no voice (the model's neutral speaker).
    pub voice: Option<String>,
    /// A local copy of the voices repo; else its HF cache snapshot.
    pub voices_dir: Option<PathBuf>,
    pub voices_repo: String,
}

impl Default for TtsOptions {
    fn default() -> Self {
        Self {
            model_dir: None,
            hf_repo: TTS_REPO.into(),
            voice: None,
            voices_dir: None,
            voices_repo: VOICES_REPO.into(),
        }
    }
}

fn err(message: impl Into<String>, remedy: impl Into<String>) -> ModelLoadError {
    ModelLoadError::new(message, remedy)
}

/// Read and parse a checkpoint's config.json.
fn read_json<T: serde::de::DeserializeOwned>(
    dir: &Path,
    layout: &str,
) -> Result<T, ModelLoadError> {
    let path = dir.join(CONFIG_FILE);
    let text = std::fs::read_to_string(&path).map_err(|e| {
        err(
            format!("{}: cannot read: {e}", path.display()),
            format!("point the directory at a checkpoint in the layout of {layout} (it has a config.json)"),
        )
    })?;
    serde_json::from_str(&text).map_err(|e| {
        err(
            format!(
                "{}: not a config of the {layout} layout: {e}",
                path.display()
            ),
            format!(
                "use the config.json that comes with {layout}, or download the checkpoint again"
            ),
        )
    })
}

/// The STT's config, checked.
pub fn stt_config(dir: &Path) -> Result<SttConfig, ModelLoadError> {
    let c: SttConfig = read_json(dir, STT_REPO)?;
    c.validate().map_err(|e| {
        err(
            format!("{}: {e}", dir.join(CONFIG_FILE).display()),
            format!("use the config.json of {STT_REPO}"),
        )
    })?;
    Ok(c)
}

/// The TTS's config, checked, including what the `moshi` crate can run.
pub fn tts_config(dir: &Path) -> Result<TtsConfig, ModelLoadError> {
    let c: TtsConfig = read_json(dir, TTS_REPO)?;
    let path = dir.join(CONFIG_FILE);
    c.validate().map_err(|e| {
        err(
            format!("{}: {e}", path.display()),
            format!("use the config.json of {TTS_REPO}"),
        )
    })?;
    if let Some(why) = c.unsupported() {
        return Err(err(
            format!(
                "{}: this checkpoint needs {why}, which this synthesiser does not implement \
                 (neither the moshi crate's streaming TTS nor the published-layout loop)",
                path.display()
            ),
            format!("use the config.json and weights of {TTS_REPO}"),
        ));
    }
    Ok(c)
}

/// A file the checkpoint needs: present, and (safetensors) whole. Returns its header.
pub fn check_weights(
    dir: &Path,
    name: &str,
    repo: &str,
) -> Result<BTreeMap<String, TensorHeader>, ModelLoadError> {
    let path = dir.join(name);
    if !path.is_file() {
        return Err(missing(&path, repo));
    }
    check_safetensors(&path).map_err(|e| {
        err(
            e,
            format!("download {name} from {repo} again (a partial download is resumed), or delete it so it is fetched"),
        )
    })
}

pub fn missing(path: &Path, repo: &str) -> ModelLoadError {
    err(
        format!("{} is missing", path.display()),
        format!(
            "copy it from {repo} (every file of that repo in one directory), or leave out the directory to use the Hugging Face cache"
        ),
    )
}

/// The STT directory holds its config and the files it names.
pub fn stt_complete(dir: &Path) -> bool {
    use crate::models::speech::stt::whisper::{is_whisper_dir, TOKENIZER_FILE, WEIGHTS_FILE};
    if is_whisper_dir(dir) {
        return dir.join(WEIGHTS_FILE).is_file() && dir.join(TOKENIZER_FILE).is_file();
    }
    stt_config(dir).is_ok_and(|c| {
        [c.lm_file(), &c.mimi_name, &c.tokenizer_name]
            .iter()
            .all(|f| dir.join(f).is_file())
    })
}

pub fn tts_complete(dir: &Path) -> bool {
    read_json::<TtsConfig>(dir, TTS_REPO).is_ok_and(|c| {
        [&c.moshi_name, &c.mimi_name, &c.tokenizer_name]
            .iter()
            .all(|f| dir.join(f).is_file())
    })
}

/// What to look for: a repo's files, how to tell a complete snapshot, and the check of
/// its config that runs before the large files are downloaded.
struct Layout<'a> {
    repo: &'a str,
    files: &'a [&'a str],
    complete: &'a dyn Fn(&Path) -> bool,
    check: &'a dyn Fn(&Path) -> Result<(), ModelLoadError>,
    flag: &'a str,
}

/// The STT's directory: `--stt-model-dir`, else the HF cache, else a download.
pub fn find_stt_dir(
    opts: &SttOptions,
    disc: &Discovery,
    progress: &mut dyn FnMut(LoadProgress),
    cancel: &Cancel,
) -> Result<PathBuf, ModelLoadError> {
    let layout = Layout {
        repo: &opts.hf_repo,
        files: &STT_FILES,
        complete: &stt_complete,
        check: &|d| stt_config(d).map(|_| ()),
        flag: "--stt-model-dir",
    };
    find_dir(opts.model_dir.as_deref(), &layout, disc, progress, cancel)
}

/// The TTS's directory: `--tts-model-dir`, else the HF cache, else a download. A
/// checkpoint the `moshi` crate cannot run is refused once its config.json is in, before
/// its weights are downloaded.
pub fn find_tts_dir(
    opts: &TtsOptions,
    disc: &Discovery,
    progress: &mut dyn FnMut(LoadProgress),
    cancel: &Cancel,
) -> Result<PathBuf, ModelLoadError> {
    let layout = Layout {
        repo: &opts.hf_repo,
        files: &TTS_FILES,
        complete: &tts_complete,
        check: &|d| tts_config(d).map(|_| ()),
        flag: "--tts-model-dir",
    };
    find_dir(opts.model_dir.as_deref(), &layout, disc, progress, cancel)
}

/// A Whisper checkpoint's directory (`hf_repo` such as openai/whisper-base.en): the HF
/// cache, else a download. `--stt-model-dir` is read as it is, whichever kind it holds.
pub fn find_whisper_dir(
    opts: &SttOptions,
    disc: &Discovery,
    progress: &mut dyn FnMut(LoadProgress),
    cancel: &Cancel,
) -> Result<PathBuf, ModelLoadError> {
    use crate::models::speech::stt::whisper::{is_whisper_dir, TOKENIZER_FILE, WEIGHTS_FILE};
    let complete = |d: &Path| {
        is_whisper_dir(d) && d.join(WEIGHTS_FILE).is_file() && d.join(TOKENIZER_FILE).is_file()
    };
    let check = |d: &Path| {
        if is_whisper_dir(d) {
            Ok(())
        } else {
            Err(err(
                format!("{}: not a Whisper config", d.join(CONFIG_FILE).display()),
                "give a Whisper repo in the Hugging Face layout, e.g. openai/whisper-base.en",
            ))
        }
    };
    let layout = Layout {
        repo: &opts.hf_repo,
        files: &[WEIGHTS_FILE, TOKENIZER_FILE],
        complete: &complete,
        check: &check,
        flag: "--stt-model-dir",
    };
    find_dir(opts.model_dir.as_deref(), &layout, disc, progress, cancel)
}

fn find_dir(
    dir: Option<&Path>,
    l: &Layout,
    disc: &Discovery,
    progress: &mut dyn FnMut(LoadProgress),
    cancel: &Cancel,
) -> Result<PathBuf, ModelLoadError> {
    let (repo, files, complete, flag) = (l.repo, l.files, l.complete, l.flag);
    if let Some(d) = dir {
        if !d.is_dir() {
            return Err(err(
                format!("{flag} {}: no such directory", d.display()),
                format!("give the directory holding {repo}'s files"),
            ));
        }
        return Ok(d.to_path_buf());
    }
    if let Some(d) = disc
        .hf_cache
        .as_deref()
        .and_then(|c| discovery::find_snapshot(c, repo, complete))
    {
        return Ok(d);
    }
    // The config first: a checkpoint we cannot run is refused before gigabytes come.
    let just_config = |listed: &dyn Fn(&str) -> bool| -> Result<Vec<String>, String> {
        if listed(CONFIG_FILE) {
            Ok(vec![CONFIG_FILE.to_string()])
        } else {
            Err(format!("it has no {CONFIG_FILE}"))
        }
    };
    let has_config = |d: &Path| d.join(CONFIG_FILE).is_file();
    match fetch(disc, repo, &just_config, &has_config, progress, cancel)? {
        Ok(snapshot) => (l.check)(&snapshot)?,
        Err(why) => {
            return Err(err(
                format!("{repo} is not on this machine: {why}"),
                format!("run again with the network up (a download resumes where it stopped), or download {repo} yourself and pass {flag} DIR"),
            ))
        }
    }
    let choose = |listed: &dyn Fn(&str) -> bool| -> Result<Vec<String>, String> {
        let wanted: Vec<String> = std::iter::once(CONFIG_FILE)
            .chain(files.iter().copied())
            .map(String::from)
            .collect();
        if let Some(f) = wanted.iter().find(|f| !listed(f)) {
            return Err(format!("it has no {f}"));
        }
        // A Mimi of another size comes with its config (as for Moshi checkpoints).
        Ok(std::iter::once(MIMI_CONFIG_FILE.to_string())
            .filter(|f| listed(f))
            .chain(wanted)
            .collect())
    };
    let why = match fetch(disc, repo, &choose, complete, progress, cancel)? {
        Ok(dir) => return Ok(dir),
        Err(why) => why,
    };
    Err(err(
        format!("{repo} is not on this machine: {why}"),
        format!("run again with the network up (a download resumes where it stopped), or download {repo} yourself and pass {flag} DIR"),
    ))
}

/// Download through the Moshi loader's hf-hub code: the snapshot, or why there is none;
/// `Err` only when cancelled.
pub(crate) fn fetch(
    disc: &Discovery,
    repo: &str,
    choose: &discovery::ChooseFiles,
    complete: &dyn Fn(&Path) -> bool,
    progress: &mut dyn FnMut(LoadProgress),
    cancel: &Cancel,
) -> Result<Result<PathBuf, String>, ModelLoadError> {
    let (Some(endpoint), Some(cache)) = (&disc.endpoint, &disc.hf_cache) else {
        return Ok(Err(match &disc.hf_cache {
            Some(c) => format!(
                "not in the Hugging Face cache ({}), and downloads are off (HF_HUB_OFFLINE)",
                c.display()
            ),
            None => "no Hugging Face cache directory (set HF_HOME)".into(),
        }));
    };
    let hub = Hub {
        endpoint,
        cache,
        chunk_bytes: disc.chunk_bytes,
    };
    match discovery::download_files(&hub, repo, choose, complete, progress, cancel) {
        Ok(dir) => Ok(Ok(dir)),
        Err(DownloadError::Cancelled) => Err(ModelLoadError::cancelled()),
        Err(DownloadError::Failed(e)) => Ok(Err(format!(
            "not in the Hugging Face cache, and the download failed: {e}"
        ))),
    }
}

/// The embedding file of a voice: a path to a file, else a name in the voices directory
/// or the voices repo's cache snapshot (with the model's suffix added if needed).
pub fn voice_in(voice: &str, voices_dir: Option<&Path>, suffix: Option<&str>) -> Option<PathBuf> {
    let p = Path::new(voice);
    if p.is_file() {
        return Some(p.to_path_buf());
    }
    let dir = voices_dir?;
    let mut names = vec![voice.to_string()];
    if let Some(s) = suffix {
        names.push(format!("{voice}{s}"));
    }
    names.push(format!("{voice}.safetensors"));
    names.into_iter().map(|n| dir.join(n)).find(|p| p.is_file())
}

/// The voices directory the options point at: `voices_dir`, else the voices repo's snapshot
/// in the HF cache (any snapshot: the repo is downloaded a voice at a time).
pub fn voices_dir(opts: &TtsOptions, disc: &Discovery) -> Option<PathBuf> {
    if let Some(d) = &opts.voices_dir {
        return Some(d.clone());
    }
    discovery::find_snapshot(disc.hf_cache.as_deref()?, &opts.voices_repo, &|d| {
        d.is_dir()
    })
}

/// The voice the options ask for, as a file: found locally, else downloaded (one file of
/// the voices repo). `None` when no voice was asked for and the default is not to be had.
pub fn find_voice(
    opts: &TtsOptions,
    suffix: Option<&str>,
    disc: &Discovery,
    progress: &mut dyn FnMut(LoadProgress),
    cancel: &Cancel,
) -> Result<Option<PathBuf>, ModelLoadError> {
    let (name, asked) = match &opts.voice {
        Some(v) => (v.as_str(), true),
        None => (DEFAULT_VOICE, false),
    };
    let local = voices_dir(opts, disc);
    if let Some(p) = voice_in(name, local.as_deref(), suffix) {
        return Ok(Some(p));
    }
    let file = match suffix {
        Some(s) if !name.ends_with(".safetensors") => format!("{name}{s}"),
        _ => name.to_string(),
    };
    let f = file.clone();
    let choose = move |listed: &dyn Fn(&str) -> bool| -> Result<Vec<String>, String> {
        if listed(&f) {
            Ok(vec![f.clone()])
        } else {
            Err(format!("it has no voice {f}"))
        }
    };
    let wanted = file.clone();
    let complete = move |d: &Path| d.join(&wanted).is_file();
    let why = match fetch(
        disc,
        &opts.voices_repo,
        &choose,
        &complete,
        progress,
        cancel,
    )? {
        Ok(dir) => return Ok(Some(dir.join(&file))),
        Err(why) => why,
    };
    if !asked {
        tracing::warn!("no default voice ({why}); the TTS speaks with its neutral speaker");
        return Ok(None);
    }
    Err(err(
        format!("voice {name}: not a file, not in the voices directory, and {why}"),
        format!(
            "give a voice embedding file (*.safetensors from {}) or a name in it, e.g. {DEFAULT_VOICE}",
            opts.voices_repo
        ),
    ))
}

// ---------------------------------------------------------------- loading helpers

use crate::models::moshi::config::{MimiToml, MIMI_CONFIG_FILE};
use crate::models::moshi::text::Vocab;
use moshi::candle::{DType, Device};

/// bf16 on a GPU (the published dtype), f32 on the CPU (its bf16 matmuls are slow).
pub fn compute_dtype(device: &Device) -> DType {
    if device.is_cpu() {
        DType::F32
    } else {
        DType::BF16
    }
}

/// A candle error in words, naming the file it came from.
pub fn candle_error(path: &Path, e: moshi::candle::Error, remedy: &str) -> ModelLoadError {
    let what = crate::models::moshi::describe_error(&anyhow::Error::from(e));
    err(format!("{}: {what}", path.display()), remedy)
}

/// The Mimi of a speech checkpoint: the published one, or the size `mimi_config.toml`
/// gives (tiny test checkpoints).
pub fn load_mimi(
    dir: &Path,
    file: &str,
    n_q: usize,
    repo: &str,
    device: &Device,
) -> Result<moshi::mimi::Mimi, ModelLoadError> {
    check_weights(dir, file, repo)?;
    let cfg = mimi_config(dir, n_q)?;
    let path = dir.join(file);
    let remedy = format!("download {file} from {repo} again");
    // SAFETY: the file is memory-mapped read-only; a file changed under us is the
    // user's doing, as for every mmaped checkpoint.
    let vb = unsafe {
        moshi::candle_nn::VarBuilder::from_mmaped_safetensors(&[&path], DType::F32, device)
    }
    .map_err(|e| candle_error(&path, e, &remedy))?;
    moshi::mimi::Mimi::new(cfg, vb).map_err(|e| candle_error(&path, e, &remedy))
}

/// The Mimi's config: the published one, or the size `mimi_config.toml` gives.
pub fn mimi_config(dir: &Path, n_q: usize) -> Result<moshi::mimi::Config, ModelLoadError> {
    let toml_path = dir.join(MIMI_CONFIG_FILE);
    if !toml_path.is_file() {
        return Ok(moshi::mimi::Config::v0_1(Some(n_q)));
    }
    let bad = |e: String| {
        err(
            format!("{}: {e}", toml_path.display()),
            "remove it to use the published Mimi",
        )
    };
    let text = std::fs::read_to_string(&toml_path).map_err(|e| bad(e.to_string()))?;
    let t: MimiToml = toml::from_str(&text).map_err(|e| bad(e.to_string()))?;
    t.validate().map_err(bad)?;
    let mut c = t.to_mimi();
    c.quantizer_n_q = n_q;
    Ok(c)
}

/// What the STT in `dir` takes in memory on `device` (its config and file headers only).
pub fn stt_memory_in(
    dir: &Path,
    device: &Device,
) -> Result<crate::models::speech::config::SpeechMemory, ModelLoadError> {
    if crate::models::speech::stt::whisper::is_whisper_dir(dir) {
        // Whisper's weights are read as f32 whatever the file holds.
        let w = crate::models::speech::stt::whisper::WEIGHTS_FILE;
        let headers = check_weights(dir, w, crate::models::speech::stt::whisper::WHISPER_LAYOUT)?;
        let weights: u64 = headers
            .values()
            .map(|h| h.shape.iter().product::<usize>() as u64 * 4)
            .sum();
        return Ok(crate::models::speech::config::SpeechMemory {
            weights,
            mimi: 0,
            kv_cache: 0,
            // An encoder pass over 20 s: 1000 positions of activations and attention.
            working: weights / 4,
        });
    }
    let cfg = stt_config(dir)?;
    let lm_path = dir.join(cfg.lm_file());
    let quantized = cfg.lm_file().ends_with(".gguf");
    let headers = if quantized {
        crate::models::speech::stt::quant::gguf_headers(&lm_path)?
    } else {
        check_weights(dir, cfg.lm_file(), STT_REPO)?
    };
    let heads = pause_heads(&headers);
    let mimi = mimi_config(dir, cfg.n_q)?;
    let mut m = crate::models::speech::config::stt_memory(
        &cfg,
        heads,
        &mimi,
        compute_dtype(device).size_in_bytes() as u64,
    )
    .map_err(|e| {
        err(
            format!("{}: {e}", dir.display()),
            format!("use the config.json of {STT_REPO}"),
        )
    })?;
    if quantized {
        // The matrices stay quantized (the file's size); the crate dequantizes the
        // embedding tables to f32 at load.
        let emb: u64 = headers
            .iter()
            .filter(|(k, _)| k.starts_with("emb.") || k.starts_with("text_emb"))
            .map(|(_, h)| h.shape.iter().product::<usize>() as u64 * 4)
            .sum();
        m.weights = std::fs::metadata(&lm_path).map_or(0, |f| f.len()) + emb;
    }
    Ok(m)
}

/// What the TTS in `dir` takes in memory on `device` (its config only).
pub fn tts_memory_in(
    dir: &Path,
    device: &Device,
) -> Result<crate::models::speech::config::SpeechMemory, ModelLoadError> {
    let cfg = tts_config(dir)?;
    let mimi = mimi_config(dir, cfg.dep_q)?;
    crate::models::speech::config::tts_memory(
        &cfg,
        &mimi,
        compute_dtype(device).size_in_bytes() as u64,
    )
    .map_err(|e| {
        err(
            format!("{}: {e}", dir.display()),
            format!("use the config.json of {TTS_REPO}"),
        )
    })
}

/// Report reading a file as one progress stage (it is memory-mapped, so the bytes come
/// as the first steps touch them); stops here if the load was cancelled.
pub fn reading(
    dir: &Path,
    file: &str,
    progress: &mut dyn FnMut(LoadProgress),
    cancel: &Cancel,
) -> Result<(), ModelLoadError> {
    let n = std::fs::metadata(dir.join(file)).map_or(0, |m| m.len());
    let mut m = crate::models::moshi::files::Meter::new(file, n, progress, cancel)?;
    m.add(n)
}

/// The SentencePiece model, read whole (decoding and encoding both need only its table).
pub fn read_tokenizer(dir: &Path, file: &str, repo: &str) -> Result<Vec<u8>, ModelLoadError> {
    let path = dir.join(file);
    let bytes = std::fs::read(&path).map_err(|_| missing(&path, repo))?;
    Vocab::from_bytes(&bytes).map_err(|e| {
        err(
            format!("{}: {e}", path.display()),
            format!("download {file} from {repo} again"),
        )
    })?;
    Ok(bytes)
}

/// Check a tensor the config implies is in the LM file with its shape: a file of another
/// model, or the wrong size, fails here with a sentence rather than in candle.
pub fn expect_tensor(
    headers: &BTreeMap<String, TensorHeader>,
    path: &Path,
    name: &str,
    shape: &[usize],
    repo: &str,
) -> Result<(), ModelLoadError> {
    let fix = format!("the directory must hold {repo}'s files, with its own config.json");
    match headers.get(name) {
        None => Err(err(
            format!(
                "{}: no tensor `{name}`: not a checkpoint in the layout of {repo}",
                path.display()
            ),
            fix,
        )),
        Some(h) if h.shape != shape => Err(err(
            format!(
                "{}: tensor `{name}` is {:?} but config.json implies {shape:?}",
                path.display(),
                h.shape
            ),
            fix,
        )),
        Some(_) => Ok(()),
    }
}

/// "kyutai/stt-1b-en_fr-candle" for a snapshot in the HF cache, else the directory's name.
pub fn display_name(dir: &Path) -> String {
    for c in dir.ancestors() {
        if let Some(n) = c.file_name().and_then(|n| n.to_str()) {
            if let Some(rest) = n.strip_prefix("models--") {
                return rest.replacen("--", "/", 1);
            }
        }
    }
    dir.file_name().map_or_else(
        || dir.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    )
}

/// The pause heads the weights hold (`extra_heads.N.weight`), as the config to build.
pub(crate) fn pause_heads(
    headers: &BTreeMap<String, TensorHeader>,
) -> Option<moshi::lm::ExtraHeadsConfig> {
    let mut n = 0;
    while headers.contains_key(&format!("extra_heads.{n}.weight")) {
        n += 1;
    }
    let dim = headers
        .get("extra_heads.0.weight")?
        .shape
        .first()
        .copied()?;
    Some(moshi::lm::ExtraHeadsConfig { num_heads: n, dim })
}
