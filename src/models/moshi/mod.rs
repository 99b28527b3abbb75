//! The Moshi speech model through Kyutai's `moshi` crate: loading (checkpoint directory,
//! Hugging Face cache, download, demo fallback), the demo model and export; PersonaPlex,
//! its fine-tune, in `personaplex`. (`bench model` and `bench gpu` are in `app::bench`.)
//!
//! May import `models::duplex`, `audio` and `bus`.

pub mod batch_check;
pub mod batched;
pub mod checkpoint;
pub mod config;
pub mod demo;
pub mod device;
pub mod discovery;
mod error;
pub mod export;
pub mod files;
pub mod gguf_write;
pub mod lm_sources;
mod model;
pub mod personaplex;
pub mod placed_lm;
pub mod placement;
pub mod random_init;
pub mod sampling;
pub mod sizing;
pub mod stepper;
pub mod synthetic;
pub mod text;
mod weights_report;

pub use error::ModelLoadError;
pub use export::{export_demo, LmFormat};
pub use model::MoshiModel;
pub use weights_report::{
    weights_findings, weights_report, WeightsFinding, WeightsOrigin, WeightsReport,
};

use crate::bus::Sampling;
use crate::bus::{Cancel, LoadProgress, ProgressUnit, Severity, Weights};
use crate::models::duplex::{DuplexModel, Prompt};
pub use device::DeviceChoice;
use std::path::PathBuf;
use std::time::Instant;

/// Something the user should know about the load (a fallback, a speed warning).
pub type LoadNotice = crate::bus::Notice;

pub struct LoadedModel {
    pub model: Box<dyn DuplexModel>,
    pub notices: Vec<LoadNotice>,
    /// Set when the preferred device failed and the model runs on the CPU instead.
    pub degraded: Option<String>,
    /// No weights were found, so the demo model stands in (the first notice says why).
    pub fell_back_to_demo: bool,
}

/// What to load, where, and how it samples: plain options (the command line converts its
/// flags into these at the edge; tests build them directly).
#[derive(Debug, Clone, PartialEq)]
pub struct ModelOptions {
    /// The built-in demo model, whatever weights are present.
    pub demo: bool,
    /// A checkpoint directory in the official layout; nothing else is searched.
    pub model_dir: Option<PathBuf>,
    /// The Hugging Face repo looked for in the cache, then downloaded.
    pub hf_repo: String,
    pub device: DeviceChoice,
    pub sampling: Sampling,
    /// LM context in 80 ms steps (the KV cache size); `None`: the checkpoint's, cut to
    /// what fits the device's free memory.
    pub context: Option<usize>,
    /// Most memory the model may take on its device, in GiB; `None`: all that is free.
    pub max_memory_gib: Option<f64>,
    /// The role text and voice prompt a model that takes them (PersonaPlex) is primed
    /// with once loaded; other models ignore it.
    pub prompt: Prompt,
    /// Where voice names (`NATF2`) are looked up; `None`: the checkpoint's `voices/`.
    pub voices_dir: Option<PathBuf>,
    /// Sessions that will share the weights (`serve --max-sessions`): the memory plan
    /// sizes a KV cache for each.
    pub sessions: usize,
    /// `serve --batch`: one LM whose batched transformer has a slot for each of the
    /// `sessions`; its forks take the slots and step together (`batched`).
    pub batch: bool,
}

impl Default for ModelOptions {
    fn default() -> Self {
        Self {
            demo: false,
            model_dir: None,
            hf_repo: crate::bus::MOSHIKO.into(),
            device: DeviceChoice::Auto,
            sampling: Sampling::default(),
            context: None,
            max_memory_gib: None,
            prompt: Prompt::default(),
            voices_dir: None,
            sessions: 1,
            batch: false,
        }
    }
}

impl ModelOptions {
    /// These options with a voice's weights in place (`Weights::Default` keeps them).
    pub fn with_weights(&self, w: &Weights) -> Self {
        let mut o = self.clone();
        match w {
            Weights::Default => {}
            Weights::Repo(r) => o.hf_repo = r.clone(),
            Weights::Dir(d) => o.model_dir = Some(d.clone()),
            Weights::Demo => o.demo = true,
        }
        o
    }
}

/// Where to look for weights besides `--model-dir`, and where to download them from;
/// `from_env` is what the program uses, tests point it elsewhere.
#[derive(Debug, Clone)]
pub struct Discovery {
    /// The Hugging Face hub cache (`$HF_HOME/hub`): searched first, downloads go there.
    pub hf_cache: Option<PathBuf>,
    /// The hub to download from; `None` never downloads.
    pub endpoint: Option<String>,
    /// Bytes per download request; a download resumes from the last whole one.
    pub chunk_bytes: usize,
}

impl Default for Discovery {
    fn default() -> Self {
        Self {
            hf_cache: None,
            endpoint: None,
            chunk_bytes: discovery::CHUNK_BYTES,
        }
    }
}

impl Discovery {
    /// HF_HUB_CACHE / HF_HOME / XDG_CACHE_HOME for the cache, HF_ENDPOINT for the hub
    /// (none with HF_HUB_OFFLINE).
    pub fn from_env() -> Self {
        Self {
            hf_cache: discovery::hf_hub_cache(),
            endpoint: discovery::endpoint_from_env(),
            chunk_bytes: discovery::CHUNK_BYTES,
        }
    }
}

/// Load the model the options ask for. Call it on the thread that will step the model
/// (it creates the Device). `progress` gets real bytes as they download and load;
/// `cancel` is polled throughout (at least every 50 ms while downloading, per tensor
/// while reading), and a cancelled load returns `ModelLoadError::cancelled()`.
pub fn load_model(
    opts: &ModelOptions,
    progress: &mut dyn FnMut(LoadProgress),
    cancel: &Cancel,
) -> Result<LoadedModel, ModelLoadError> {
    load_model_with(opts, &Discovery::from_env(), progress, cancel)
}

pub fn load_model_with(
    opts: &ModelOptions,
    disc: &Discovery,
    progress: &mut dyn FnMut(LoadProgress),
    cancel: &Cancel,
) -> Result<LoadedModel, ModelLoadError> {
    check_cancel(cancel)?;
    let mut loaded = load_on_device(opts.device, cancel, |d, n| {
        load_on(opts, disc, d, n, progress, cancel)
    })?;
    if let Some(d) = &opts.voices_dir {
        loaded.model.set_voices_dir(d);
    }
    prime_loaded(&mut loaded, &opts.prompt)?;
    Ok(loaded)
}

/// Prime a model that takes a prompt with the options' prompt (a role text is needed).
fn prime_loaded(loaded: &mut LoadedModel, prompt: &Prompt) -> Result<(), ModelLoadError> {
    if !loaded.model.takes_prompt() || prompt.text.trim().is_empty() {
        return Ok(());
    }
    let primed = loaded.model.prime(prompt).map_err(|e| {
        ModelLoadError::new(
            format!(
                "priming {} with the persona's prompts: {e:#}",
                loaded.model.info().name
            ),
            "fix the voice prompt (a WAV of a few seconds of one speaker, a .pt voice, or a voice name: unpack NVIDIA's voices.tgz into the model directory or pass --voices-dir) or the role text",
        )
    })?;
    loaded.notices.push(primed_notice(prompt, &primed));
    Ok(())
}

/// What a load (or a served session) tells the user once a persona's prompts are in.
pub fn primed_notice(prompt: &Prompt, primed: &crate::models::duplex::Primed) -> LoadNotice {
    LoadNotice {
        severity: Severity::Info,
        message: format!(
            "primed with the role text{}: {} steps in {:.2} s",
            if prompt.voice.is_some() {
                " and the voice prompt"
            } else {
                ""
            },
            primed.steps,
            primed.elapsed.as_secs_f64()
        ),
        remedy: None,
    }
}

/// Stop a load the user no longer wants.
pub fn check_cancel(cancel: &Cancel) -> Result<(), ModelLoadError> {
    if cancel.is_cancelled() {
        return Err(ModelLoadError::cancelled());
    }
    Ok(())
}

/// Load onto the chosen device with `attempt(device, its name)`, falling back to the CPU
/// (`with_cpu_fallback`); however it failed, a set cancel flag means the user stopped it.
pub fn load_on_device(
    choice: DeviceChoice,
    cancel: &Cancel,
    mut attempt: impl FnMut(&moshi::candle::Device, &str) -> Result<LoadedModel, ModelLoadError>,
) -> Result<LoadedModel, ModelLoadError> {
    let preferred = device::select(choice)?;
    let cpu = (moshi::candle::Device::Cpu, "cpu".to_string());
    let result = with_cpu_fallback(&preferred.1, |on_cpu| {
        let (d, n) = if on_cpu { &cpu } else { &preferred };
        attempt(d, n)
    });
    match result {
        Err(_) if cancel.is_cancelled() => Err(ModelLoadError::cancelled()),
        r => r,
    }
}

/// Try the preferred device; if that fails (a GPU out of memory, a driver error), try
/// the CPU and say why in `degraded`. `attempt(true)` is the CPU attempt. On the CPU
/// already, there is nothing to fall back to.
pub fn with_cpu_fallback(
    preferred: &str,
    mut attempt: impl FnMut(bool) -> Result<LoadedModel, ModelLoadError>,
) -> Result<LoadedModel, ModelLoadError> {
    if preferred == "cpu" {
        return attempt(true);
    }
    match attempt(false) {
        Ok(m) => Ok(m),
        Err(e) if e.is_cancelled() => Err(e),
        Err(gpu) => {
            tracing::warn!(
                "loading on {preferred} failed, retrying on the CPU: {}",
                gpu.message
            );
            let mut m = attempt(true).map_err(|cpu| {
                ModelLoadError::new(
                    format!(
                        "{preferred}: {}; and on the CPU: {}",
                        gpu.message, cpu.message
                    ),
                    cpu.remedy,
                )
            })?;
            let first_line = gpu.message.lines().next().unwrap_or_default();
            let short: String = first_line.chars().take(160).collect();
            m.degraded = Some(format!("running on CPU ({preferred} failed: {short})"));
            Ok(m)
        }
    }
}

fn load_on(
    opts: &ModelOptions,
    disc: &Discovery,
    device: &moshi::candle::Device,
    device_name: &str,
    progress: &mut dyn FnMut(LoadProgress),
    cancel: &Cancel,
) -> Result<LoadedModel, ModelLoadError> {
    let sampling = &opts.sampling;
    let (device, device_name) = (device.clone(), device_name.to_string());
    let mut notices = Vec::new();
    let batch = opts.batch.then_some(opts.sessions.max(1));
    if opts.demo {
        return load_demo(
            sampling,
            batch,
            (&device, &device_name),
            notices,
            progress,
            cancel,
        );
    }
    let from_dir = |dir: &std::path::Path,
                    notices: Vec<LoadNotice>,
                    progress: &mut dyn FnMut(LoadProgress)| {
        check_cancel(cancel)?;
        load_dir(
            dir,
            sampling,
            (&device, &device_name),
            (opts.context, opts.max_memory_gib, opts.sessions, opts.batch),
            notices,
            progress,
            cancel,
        )
    };
    if let Some(dir) = &opts.model_dir {
        return from_dir(dir, notices, progress);
    }
    let repo = &opts.hf_repo;
    if let Some(dir) = disc
        .hf_cache
        .as_deref()
        .and_then(|c| discovery::find_in_hf_cache(c, repo))
    {
        return from_dir(&dir, notices, progress);
    }
    let looked = match &disc.hf_cache {
        Some(c) => format!("{repo} is not in the Hugging Face cache ({})", c.display()),
        None => format!("{repo}: no Hugging Face cache directory (set HF_HOME)"),
    };
    let why = match (&disc.endpoint, &disc.hf_cache) {
        (Some(endpoint), Some(cache)) => {
            let hub = discovery::Hub {
                endpoint,
                cache,
                chunk_bytes: disc.chunk_bytes,
            };
            match discovery::download(&hub, repo, progress, cancel) {
                Ok(dir) => return from_dir(&dir, notices, progress),
                Err(discovery::DownloadError::Cancelled) => return Err(ModelLoadError::cancelled()),
                Err(discovery::DownloadError::Failed(e)) => {
                    format!("{looked}, and the download failed: {e}")
                }
            }
        }
        _ => looked,
    };
    notices.push(LoadNotice {
        severity: Severity::Warning,
        message: format!("{why}. Using the demo model: tiny, random weights, it only babbles"),
        remedy: Some(format!("run again with the network up (a download resumes where it stopped), or download {repo} (or kyutai/moshika-candle-q8) yourself and pass --model-dir DIR, or run with --demo to skip the search")),
    });
    let mut m = load_demo(
        sampling,
        batch,
        (&device, &device_name),
        notices,
        progress,
        cancel,
    )?;
    m.fell_back_to_demo = true;
    Ok(m)
}

fn load_demo(
    sampling: &Sampling,
    batch: Option<usize>,
    (device, device_name): (&moshi::candle::Device, &str),
    notices: Vec<LoadNotice>,
    progress: &mut dyn FnMut(LoadProgress),
    cancel: &Cancel,
) -> Result<LoadedModel, ModelLoadError> {
    check_cancel(cancel)?;
    let start = Instant::now();
    let model = match batch {
        None => demo::demo_model(sampling, device, device_name),
        Some(n) => demo::demo_model_batched(sampling, device, device_name, n),
    }
    .map_err(|e| {
        ModelLoadError::new(
            format!("building the demo model: {e}"),
            "this is a bug; please report it",
        )
    })?;
    progress(LoadProgress {
        stage: "demo model".into(),
        done: 1,
        total: 1,
        unit: ProgressUnit::Tensors,
        elapsed_s: start.elapsed().as_secs_f64(),
    });
    Ok(LoadedModel {
        model: Box::new(model),
        notices,
        degraded: None,
        fell_back_to_demo: false,
    })
}

fn load_dir(
    dir: &std::path::Path,
    sampling: &Sampling,
    (device, device_name): (&moshi::candle::Device, &str),
    (context, max_memory, sessions, batch): (Option<usize>, Option<f64>, usize, bool),
    mut notices: Vec<LoadNotice>,
    progress: &mut dyn FnMut(LoadProgress),
    cancel: &Cancel,
) -> Result<LoadedModel, ModelLoadError> {
    let mut ck = checkpoint::inspect(dir)?;
    ck.sessions = sessions.max(1);
    ck.batch = batch;
    if let Some(n) = size_context(&mut ck, device, device_name, context, max_memory)? {
        notices.push(n);
    }
    let real_mimi = !dir.join(config::MIMI_CONFIG_FILE).is_file();
    // What a step streams, on the device and on the host: the plan knows (the CPU always
    // has one); without one (Metal), the file's size.
    let streamed = match &ck.plan {
        Some(p) => device::Streamed {
            device: p.weights.device_streamed,
            host: p.weights.host_streamed,
        },
        None => device::Streamed {
            device: ck.lm_bytes,
            host: 0,
        },
    };
    if batch && personaplex::model::is_personaplex(&ck.config.lm) {
        return Err(ModelLoadError::new(
            format!(
                "--batch does not serve PersonaPlex ({}): its sessions' voice and text prompts are prefilled step by step through the unbatched LM",
                dir.display()
            ),
            "run serve without --batch (its sessions still share the weights), or serve a Moshi checkpoint",
        ));
    }
    let model: Box<dyn DuplexModel> = if personaplex::model::is_personaplex(&ck.config.lm) {
        Box::new(personaplex::model::PersonaPlexModel::load(
            ck,
            sampling,
            device,
            device_name,
            progress,
            cancel,
        )?)
    } else {
        Box::new(checkpoint::load(
            ck,
            sampling,
            device,
            device_name,
            progress,
            cancel,
        )?)
    };
    if let Some(w) = device::realtime_warning(device.is_cpu(), streamed, real_mimi) {
        notices.push(LoadNotice {
            severity: Severity::Warning,
            message: w,
            remedy: Some("use a GPU build (--features cuda or metal) and --device auto".into()),
        });
    }
    Ok(LoadedModel {
        model,
        notices,
        degraded: None,
        fell_back_to_demo: false,
    })
}

/// Place the LM and size its context (its KV cache) to the device's free memory, capped by
/// `--max-memory`. Refusing here beats a CUDA out-of-memory in the first step.
fn size_context(
    ck: &mut checkpoint::Checkpoint,
    device: &moshi::candle::Device,
    device_name: &str,
    context: Option<usize>,
    max_memory: Option<f64>,
) -> Result<Option<LoadNotice>, ModelLoadError> {
    size_context_for(
        ck,
        sizing::Backend::of(device),
        device_name,
        context,
        sizing::device_budget(device, max_memory),
    )
}

/// `size_context` with the budget given (tests pass one). Without a budget (Metal) the
/// checkpoint's context, or `--context`, is used as it is.
///
/// A PersonaPlex checkpoint is planned under the names it loads as: its depformer in
/// the crate's slices (embeddings on the host), an 8-slice file widened to 16.
pub fn size_context_for(
    ck: &mut checkpoint::Checkpoint,
    backend: sizing::Backend,
    device_name: &str,
    context: Option<usize>,
    budget: Option<u64>,
) -> Result<Option<LoadNotice>, ModelLoadError> {
    let on_cpu = backend == sizing::Backend::Cpu;
    if let Some(steps) = context {
        ck.config.lm.transformer.context = steps.max(1);
    }
    let Some(budget) = budget else {
        return Ok(None);
    };
    let headers = checkpoint::lm_headers(ck)?;
    let table = sizing::table_from_headers(&planned_headers(ck, &headers)?);
    let compute_bytes = if ck.quantized {
        4
    } else {
        checkpoint::compute_dtype(&headers, on_cpu).size_in_bytes() as u64
    };
    // Quantized models attend (and cache) in moshi's `matmul_dtype`: bf16 on CUDA.
    let kv_bytes = if ck.quantized && backend == sizing::Backend::Cuda {
        2
    } else {
        compute_bytes
    };
    let split = !on_cpu;
    let host_budget = if split {
        sizing::free_memory(&moshi::candle::Device::Cpu)
    } else {
        None
    };
    let mimi_bytes = sizing::mimi_bytes(&ck.config.mimi).unwrap_or_else(|_| {
        std::fs::metadata(ck.dir.join(files::MIMI_FILE)).map_or(0, |m| m.len())
    });
    let wanted = ck.config.lm.transformer.context;
    let target = sizing::Target {
        compute_bytes,
        kv_bytes,
        split,
        mimi_bytes,
        budget,
        host_budget,
        context: wanted,
        exact: context.is_some(),
        sessions: ck.sessions.max(1) as u64,
    };
    let p = sizing::plan(&ck.config.lm, &table, target).map_err(|why| {
        ModelLoadError::new(
            format!("out of memory on {device_name}: {why}"),
            "free memory, use a smaller --context, or a smaller model",
        )
    })?;
    ck.config.lm.transformer.context = p.context;
    ck.placement = p.placement;
    tracing::info!("memory plan on {device_name}: {}", p.explain());
    ck.plan = Some(p.clone());
    let mut why = Vec::new();
    if p.placement.host_layers > 0 {
        why.push(format!(
            "{} of {} LM layers run on the CPU, which slows every step",
            p.placement.host_layers, p.layers
        ));
    }
    if p.context < wanted {
        why.push(format!(
            "the LM context is cut from {wanted} to {} steps ({:.0} s)",
            p.context,
            p.context as f64 * 0.08
        ));
    }
    Ok((!why.is_empty()).then(|| LoadNotice {
        severity: Severity::Warning,
        message: format!(
            "to fit {device_name}, {}: {}",
            why.join(" and "),
            p.explain()
        ),
        remedy: Some(
            "free memory on the device (or raise --max-memory), or set --context STEPS yourself"
                .into(),
        ),
    }))
}

/// An error from a model command (export, benchmarks) in words: candle's own errors are
/// made readable.
pub fn describe_error(e: &anyhow::Error) -> String {
    match e.downcast_ref::<moshi::candle::Error>() {
        Some(ce) => error::candle_message(ce),
        None => format!("{e:#}"),
    }
}

/// The samplers `MoshiModel` builds from a `Sampling`, for tests that drive a `Stepper`.
#[doc(hidden)]
pub fn sampling_for_tests(s: &Sampling) -> sampling::Samplers {
    sampling::Samplers::new(s)
}

/// The LM's tensors as the loader will hold them: PersonaPlex's PyTorch depformer names
/// renamed (and widened) into the crate's, anything else as stored.
fn planned_headers(
    ck: &checkpoint::Checkpoint,
    headers: &std::collections::BTreeMap<String, files::TensorHeader>,
) -> Result<std::collections::BTreeMap<String, files::TensorHeader>, ModelLoadError> {
    if ck.quantized || !personaplex::names::is_pytorch_layout(headers) {
        return Ok(headers.clone());
    }
    let slices = ck.config.lm.depformer.as_ref().map_or(0, |d| d.num_slices);
    personaplex::names::plan(headers, slices)
        .map(|(renamed, _)| renamed)
        .map_err(|e| {
            ModelLoadError::new(
                format!("{}: {e}", ck.lm_file.display()),
                "use a PersonaPlex checkpoint whose depformer matches lm_config.toml",
            )
        })
}
