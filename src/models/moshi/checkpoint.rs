//! Loading a checkpoint directory in the official layout, with every failure turned into
//! an error that names the file, the tensor and what was expected.

use super::config::{MimiToml, ModelConfig, LM_CONFIG_FILE, MIMI_CONFIG_FILE};
use super::error::{candle_message, checkpoint_error, ModelLoadError};
use super::files::{self, Meter, TensorHeader, LM_GGUF, LM_SAFETENSORS, MIMI_FILE, TOKENIZER_FILE};
use super::lm_sources;
use super::model::MoshiModel;
use super::placed_lm::PlacedLm;
use super::placement::{Home, Placement};
use super::sizing::MemoryPlan;
use super::text::{TextAssembler, Vocab};
use crate::bus::{Cancel, LoadProgress};
use crate::bus::{ModelInfo, Sampling};
use crate::models::moshi::personaplex::names as personaplex_names;
use moshi::candle::safetensors::MmapedSafetensors;
use moshi::candle::{DType, Device, Error, Shape, Tensor};
use moshi::candle_nn::var_builder::SimpleBackend;
use moshi::candle_nn::{Init, VarBuilder};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::mpsc::RecvTimeoutError;

/// What a directory holds, once its files and configs have been checked.
pub struct Checkpoint {
    pub dir: PathBuf,
    pub lm_file: PathBuf,
    pub quantized: bool,
    pub config: ModelConfig,
    /// Where the LM config came from, for error messages.
    pub lm_config_origin: String,
    pub vocab: Vocab,
    pub lm_bytes: u64,
    /// Where the LM's tensors go; `mod.rs` sets it from the memory plan.
    pub placement: Placement,
    /// The plan that chose it, when the device's free memory was known.
    pub plan: Option<MemoryPlan>,
    /// Conversations that will share these weights (`serve --max-sessions`): the plan
    /// holds a KV cache and activations for each.
    pub sessions: usize,
    /// `serve --batch`: build the LM batched, a slot for each of the `sessions`.
    pub batch: bool,
}

fn err(message: String) -> ModelLoadError {
    checkpoint_error(message)
}

/// Find the files and read the configs and the tokenizer; no weights are read yet.
pub fn inspect(dir: &Path) -> Result<Checkpoint, ModelLoadError> {
    if !dir.is_dir() {
        return Err(ModelLoadError::new(
            format!("--model-dir {}: not a directory", dir.display()),
            "pass a checkpoint directory, or run with --demo",
        ));
    }
    let (lm_file, quantized) = if dir.join(LM_GGUF).is_file() {
        (dir.join(LM_GGUF), true)
    } else if dir.join(LM_SAFETENSORS).is_file() {
        (dir.join(LM_SAFETENSORS), false)
    } else {
        return Err(err(format!(
            "{}: no LM weights: expected {LM_SAFETENSORS} or {LM_GGUF}",
            dir.display()
        )));
    };
    for f in [MIMI_FILE, TOKENIZER_FILE] {
        if !dir.join(f).is_file() {
            return Err(err(format!(
                "{}: missing {f} (the {} file of the official layout)",
                dir.join(f).display(),
                if f == MIMI_FILE {
                    "Mimi codec"
                } else {
                    "SentencePiece tokenizer"
                }
            )));
        }
    }

    let lm_cfg_path = dir.join(LM_CONFIG_FILE);
    let (lm, lm_config_origin) = if lm_cfg_path.is_file() {
        let text = std::fs::read_to_string(&lm_cfg_path)
            .map_err(|e| err(format!("{}: {e}", lm_cfg_path.display())))?;
        let cfg: moshi::lm::Config = toml::from_str(&text).map_err(|e| {
            err(format!(
                "{}: not a moshi::lm::Config: {e}",
                lm_cfg_path.display()
            ))
        })?;
        (cfg, lm_cfg_path.display().to_string())
    } else if !quantized && pytorch_depformer_slices(&lm_file) == Some(16) {
        // PersonaPlex ships no LM config: moshiko's, with the 16-step depformer.
        (
            moshi::lm::Config::v0_1_streaming(16),
            format!(
                "the PersonaPlex config (PyTorch depformer names, 16 slices, no {LM_CONFIG_FILE} in {})",
                dir.display()
            ),
        )
    } else {
        (
            moshi::lm::Config::v0_1_streaming(8),
            format!(
                "the official moshiko config (no {LM_CONFIG_FILE} in {})",
                dir.display()
            ),
        )
    };
    let mimi_cfg_path = dir.join(MIMI_CONFIG_FILE);
    let mimi_origin = if mimi_cfg_path.is_file() {
        mimi_cfg_path.display().to_string()
    } else {
        "the published Mimi config".into()
    };
    let mimi = if mimi_cfg_path.is_file() {
        let text = std::fs::read_to_string(&mimi_cfg_path)
            .map_err(|e| err(format!("{}: {e}", mimi_cfg_path.display())))?;
        let m: MimiToml =
            toml::from_str(&text).map_err(|e| err(format!("{}: {e}", mimi_cfg_path.display())))?;
        m.validate()
            .map_err(|e| err(format!("{}: {e}", mimi_cfg_path.display())))?;
        m.to_mimi()
    } else {
        moshi::mimi::Config::v0_1(Some(8))
    };
    let config = ModelConfig::from_parts(lm, mimi);
    config.check_consistency().map_err(|e| err(format!("{}: inconsistent configs: {e} (LM config: {lm_config_origin}; Mimi config: {mimi_origin})", dir.display())))?;

    let tok_path = dir.join(TOKENIZER_FILE);
    let bytes =
        std::fs::read(&tok_path).map_err(|e| err(format!("{}: {e}", tok_path.display())))?;
    let vocab =
        Vocab::from_bytes(&bytes).map_err(|e| err(format!("{}: {e}", tok_path.display())))?;
    if vocab.len() != config.lm.text_out_vocab_size {
        return Err(err(format!(
            "{}: the tokenizer has {} pieces but the LM ({}) predicts {} text tokens (text_out_vocab_size in {lm_config_origin}); \
             tokenizer and model do not belong together",
            tok_path.display(),
            vocab.len(),
            lm_file.display(),
            config.lm.text_out_vocab_size
        )));
    }
    let lm_bytes = std::fs::metadata(&lm_file).map(|m| m.len()).unwrap_or(0);
    Ok(Checkpoint {
        dir: dir.to_path_buf(),
        lm_file,
        quantized,
        config,
        lm_config_origin,
        vocab,
        lm_bytes,
        placement: Placement::default(),
        plan: None,
        sessions: 1,
        batch: false,
    })
}

/// The depformer slices of a safetensors LM in PyTorch's layout (`depformer_in.N`);
/// `None` for the crate's layout or an unreadable header (loading reports that).
fn pytorch_depformer_slices(lm_file: &Path) -> Option<usize> {
    let headers = files::check_safetensors(lm_file).ok()?;
    if !personaplex_names::is_pytorch_layout(&headers) {
        return None;
    }
    Some(
        headers
            .keys()
            .filter(|k| k.starts_with("depformer_in.") && k.ends_with(".weight"))
            .count(),
    )
}

/// Read the weights and build the model; `cancel` is polled per tensor.
pub fn load(
    ck: Checkpoint,
    sampling: &Sampling,
    device: &Device,
    device_name: &str,
    progress: &mut dyn FnMut(LoadProgress),
    cancel: &Cancel,
) -> Result<MoshiModel, ModelLoadError> {
    let (mimi, lm, dtype) = load_parts(&ck, device, progress, cancel)?;
    let name = ck.dir.file_name().map_or_else(
        || ck.dir.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    );
    // Layers moved to the host show where the device is named (header, headless log).
    let shown = match lm.placement().host_layers {
        0 => device_name.to_string(),
        k => format!(
            "{device_name} + {k}/{} layers on cpu",
            ck.config.lm.transformer.num_layers
        ),
    };
    let info = ModelInfo {
        name,
        device: shown,
        dtype: dtype.into(),
    };
    let text = TextAssembler::new(
        ck.vocab,
        ck.config.gen.text_pad_token,
        ck.config.gen.text_eop_token,
    );
    if lm.batch_size().is_some() {
        return MoshiModel::batched(
            mimi,
            lm,
            ck.config.gen,
            text,
            sampling.clone(),
            info,
            device.clone(),
        )
        .map_err(|e| err(format!("starting the batch stepper: {e:#}")));
    }
    Ok(MoshiModel::new(
        mimi,
        lm,
        ck.config.gen,
        text,
        sampling.clone(),
        info,
        device.clone(),
    ))
}

/// Mimi, the LM, and the LM's weight dtype ("f32", "bf16", "q8"). Each file is read
/// once, tensor by tensor, and that read is what `progress` counts.
pub fn load_parts(
    ck: &Checkpoint,
    device: &Device,
    progress: &mut dyn FnMut(LoadProgress),
    cancel: &Cancel,
) -> Result<(moshi::mimi::Mimi, PlacedLm, &'static str), ModelLoadError> {
    let mimi_path = ck.dir.join(MIMI_FILE);
    let mimi_headers = files::check_safetensors(&mimi_path).map_err(err)?;
    let mimi_origin = if ck.dir.join(MIMI_CONFIG_FILE).is_file() {
        ck.dir.join(MIMI_CONFIG_FILE).display().to_string()
    } else {
        "the published Mimi config".into()
    };
    let on_device = |_: &str| (DType::F32, device.clone());
    let vb = preloaded_var_builder(
        &mimi_path,
        mimi_headers,
        &mimi_origin,
        (DType::F32, device),
        &on_device,
        None,
        (MIMI_FILE, &mut *progress, cancel),
    )?;
    let mimi =
        moshi::mimi::Mimi::new(ck.config.mimi.clone(), vb).map_err(|e| err(candle_message(&e)))?;

    let lm_name = if ck.quantized {
        LM_GGUF
    } else {
        LM_SAFETENSORS
    };
    let headers = lm_headers(ck)?;
    // PersonaPlex's PyTorch depformer names are planned into ours before anything is read.
    let renaming = if !ck.quantized && personaplex_names::is_pytorch_layout(&headers) {
        let slices = ck.config.lm.depformer.as_ref().map_or(0, |d| d.num_slices);
        let (renamed, plan) = personaplex_names::plan(&headers, slices).map_err(|e| {
            err(format!(
                "{}: {e} (config: {})",
                ck.lm_file.display(),
                ck.lm_config_origin
            ))
        })?;
        Some((renamed, plan))
    } else {
        None
    };
    check_layer_counts(ck, renaming.as_ref().map_or(&headers, |(h, _)| h))?;
    let (sources, dtype) = if ck.quantized {
        (
            if ck.batch {
                // The batched transformer is built from one builder of all its layers.
                lm_sources::split_gguf_sources(
                    &ck.lm_file,
                    ck.placement,
                    ck.config.lm.transformer.num_layers,
                    ck.config.lm.transformer.num_layers,
                    device,
                    lm_name,
                    progress,
                    cancel,
                )?
            } else {
                lm_sources::gguf_sources(
                    &ck.lm_file,
                    ck.placement,
                    &ck.config.lm,
                    device,
                    lm_name,
                    progress,
                    cancel,
                )?
            },
            "q8",
        )
    } else {
        let file_bf16 = is_bf16(&headers);
        let compute = compute_dtype(&headers, device.is_cpu());
        // Each tensor is read straight to where it lives: embeddings (and host layers)
        // in f32 on the host, the rest in the compute dtype on the device.
        let placement = ck.placement;
        let home = move |name: &str| match placement.home(name).0 {
            Home::Host => (DType::F32, Device::Cpu),
            Home::Device => (compute, device.clone()),
        };
        let vb = preloaded_var_builder(
            &ck.lm_file,
            headers,
            &ck.lm_config_origin,
            (compute, device),
            &home,
            renaming,
            (lm_name, &mut *progress, cancel),
        )?;
        (
            lm_sources::dense_sources(vb, ck.placement, ck.config.lm.transformer.num_layers),
            if file_bf16 { "bf16" } else { "f32" },
        )
    };
    let built = if ck.batch {
        PlacedLm::new_batched(&ck.config.lm, sources, ck.sessions)
    } else {
        PlacedLm::new(&ck.config.lm, sources)
    };
    let lm = built.map_err(|e| {
        let e = candle_message(&e);
        // The quantized loader's own messages do not say which file.
        if e.contains(&ck.lm_file.display().to_string()) {
            err(e)
        } else {
            err(format!(
                "{}: {e} (config: {})",
                ck.lm_file.display(),
                ck.lm_config_origin
            ))
        }
    })?;
    Ok((mimi, lm, dtype))
}

fn is_bf16(headers: &BTreeMap<String, TensorHeader>) -> bool {
    headers
        .get("text_emb.weight")
        .is_some_and(|h| h.dtype == "BF16")
}

/// The dtype dense LM weights compute in: bf16 matmuls are fast on GPUs only, so on the
/// CPU compute in f32. (q8 always computes in f32.)
pub fn compute_dtype(headers: &BTreeMap<String, TensorHeader>, on_cpu: bool) -> DType {
    if is_bf16(headers) && !on_cpu {
        DType::BF16
    } else {
        DType::F32
    }
}

/// The LM file's tensor headers, checked.
pub fn lm_headers(ck: &Checkpoint) -> Result<BTreeMap<String, TensorHeader>, ModelLoadError> {
    if ck.quantized {
        files::check_gguf(&ck.lm_file)
    } else {
        files::check_safetensors(&ck.lm_file)
    }
    .map_err(err)
}

/// Tensor shapes catch a wrong width; a file with more layers than the config would load
/// silently and produce garbage, so count them.
fn check_layer_counts(
    ck: &Checkpoint,
    headers: &BTreeMap<String, TensorHeader>,
) -> Result<(), ModelLoadError> {
    let count = |prefix: &str| {
        headers
            .keys()
            .filter_map(|k| {
                k.strip_prefix(prefix)?
                    .split('.')
                    .next()?
                    .parse::<usize>()
                    .ok()
            })
            .max()
            .map_or(0, |m| m + 1)
    };
    let file = ck.lm_file.display();
    let layers = count("transformer.layers.");
    if layers != ck.config.lm.transformer.num_layers {
        return Err(err(format!(
            "{file}: has {layers} transformer layers (transformer.layers.N.*) but {} expects {}",
            ck.lm_config_origin, ck.config.lm.transformer.num_layers
        )));
    }
    let slices = count("depformer.");
    let expected = ck.config.lm.depformer.as_ref().map_or(0, |d| d.num_slices);
    if slices != expected {
        return Err(err(format!(
            "{file}: has {slices} depformer slices (depformer.N.*) but {} expects {expected}",
            ck.lm_config_origin
        )));
    }
    Ok(())
}

/// Read every tensor of a safetensors file to where `home` says it lives (dtype and
/// device), counting bytes for `stage` and stopping between tensors when cancelled; the
/// var builder then serves them with errors that name the file, the tensor and what was
/// expected. `default` is the builder's own dtype and device.
fn preloaded_var_builder(
    path: &Path,
    headers: BTreeMap<String, TensorHeader>,
    origin: &str,
    default: (DType, &Device),
    home: &dyn Fn(&str) -> (DType, Device),
    renaming: Option<(BTreeMap<String, TensorHeader>, personaplex_names::Plan)>,
    (stage, progress, cancel): (&str, &mut dyn FnMut(LoadProgress), &Cancel),
) -> Result<VarBuilder<'static>, ModelLoadError> {
    let file = path.display().to_string();
    // SAFETY: the file is only read; a concurrent writer would be the user's own doing,
    // the same contract as candle's `from_mmaped_safetensors`.
    let st = unsafe { MmapedSafetensors::new(path) }
        .map_err(|e| err(format!("{file}: {}", candle_message(&e))))?;
    let total = headers.values().map(TensorHeader::bytes).sum();
    let mut meter = Meter::new(stage, total, progress, cancel)?;
    // A helper reads (and converts) on the host, one tensor ahead; this thread puts each
    // where it lives, and polls the cancel flag while a large tensor comes off the disk.
    // Cancelled, it returns at once; the helper stops at its next tensor.
    let plan: Vec<(String, DType, Device)> = headers
        .keys()
        .map(|n| {
            let (dtype, dev) = home(n);
            (n.clone(), dtype, dev)
        })
        .collect();
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    let reader = plan
        .iter()
        .map(|(n, d, _)| (n.clone(), *d))
        .collect::<Vec<_>>();
    std::thread::Builder::new()
        .name("tensor-reader".into())
        .spawn(move || {
            for (name, dtype) in reader {
                let t = st.load(&name, &Device::Cpu).and_then(|t| t.to_dtype(dtype));
                if tx.send(t).is_err() {
                    return;
                }
            }
        })
        .map_err(|e| err(format!("cannot start a loader thread: {e}")))?;
    let mut tensors = HashMap::with_capacity(headers.len());
    for (name, _, dev) in &plan {
        let t = loop {
            match rx.recv_timeout(files::REPORT_EVERY) {
                Ok(t) => break t,
                Err(RecvTimeoutError::Timeout) => meter.tick()?,
                Err(RecvTimeoutError::Disconnected) => {
                    return Err(err(format!("{file}: reading stopped at tensor `{name}`")))
                }
            }
        };
        let t = t
            .and_then(|t| t.to_device(dev))
            .map_err(|e| err(format!("{file}: tensor `{name}`: {}", candle_message(&e))))?;
        tensors.insert(name.clone(), t);
        meter.add(headers[name].bytes())?;
    }
    let (tensors, headers) = match renaming {
        Some((renamed, plan)) => (
            personaplex_names::apply(&plan, tensors)
                .map_err(|e| err(format!("{file}: {}", candle_message(&e))))?,
            renamed,
        ),
        None => (tensors, headers),
    };
    let backend = Preloaded {
        tensors,
        headers,
        file,
        origin: origin.to_string(),
    };
    Ok(VarBuilder::from_backend(
        Box::new(backend),
        default.0,
        default.1.clone(),
    ))
}

/// A file's tensors, read already, served with errors that say which file, which tensor,
/// and what was expected.
struct Preloaded {
    tensors: HashMap<String, Tensor>,
    headers: BTreeMap<String, TensorHeader>,
    file: String,
    origin: String,
}

impl Preloaded {
    fn tensor(&self, name: &str) -> moshi::candle::Result<&Tensor> {
        self.tensors
            .get(name)
            .ok_or_else(|| Error::Msg(format!("{}: tensor `{name}` is missing", self.file)))
    }
}

impl SimpleBackend for Preloaded {
    fn get(
        &self,
        s: Shape,
        name: &str,
        _: Init,
        dtype: DType,
        dev: &Device,
    ) -> moshi::candle::Result<Tensor> {
        let Some(h) = self.headers.get(name) else {
            return Err(Error::Msg(format!(
                "{}: tensor `{name}` is missing: {} expects it with shape {:?}",
                self.file,
                self.origin,
                s.dims()
            )));
        };
        if h.shape != s.dims() {
            return Err(Error::Msg(format!(
                "{}: tensor `{name}` has shape {:?} but {} expects {:?}",
                self.file,
                h.shape,
                self.origin,
                s.dims()
            )));
        }
        // Already where it belongs, in the usual case: these are then cheap clones.
        self.tensor(name)?.to_dtype(dtype)?.to_device(dev)
    }

    fn get_unchecked(
        &self,
        name: &str,
        dtype: DType,
        dev: &Device,
    ) -> moshi::candle::Result<Tensor> {
        self.tensor(name)?.to_dtype(dtype)?.to_device(dev)
    }

    fn contains_tensor(&self, name: &str) -> bool {
        self.headers.contains_key(name)
    }
}

/// The config a checkpoint claims, for the bench and tests.
pub fn config_of(dir: &Path) -> Result<ModelConfig, ModelLoadError> {
    inspect(dir).map(|c| c.config)
}
