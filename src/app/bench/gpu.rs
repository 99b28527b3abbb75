//! `assistant bench gpu`: the measurements of the one-shot GPU check (`scripts/gpu-check`),
//! the same code on CUDA and on the CPU. The script runs one `--section` per process, so
//! a failure in one leaves the others' figures standing; each measurement prints one
//! line `gpu-check NAME: ...` and, with `--report`, appends one JSON line.
//!
//! - `write`: synthetic checkpoints in the official layout (`synthetic`), q8 and bf16.
//! - `free`: the free-memory query the memory plan starts from.
//! - `q8`, `bf16`: load time, the memory plan against what the driver (on the CPU: the
//!   process) reports after loading and after the first steps, and ms per step of Mimi
//!   encode, the temporal transformer, the depformer and Mimi decode, with the RTF. q8 is
//!   loaded for the whole device and again with `--max-memory 7.6` (an 8 GiB card).
//! - `placed`: `PlacedLm` with 0, 2 and 6 layers on the host against moshi's own
//!   `LmModel` on the device, same f32 weights, teacher-forced greedy steps.
//! - `fallback`: the model loaded while the device cannot hold it, through the CPU fallback.
//! - `personaplex`: the PersonaPlex shape (16 depformer slices), random weights: prefill
//!   steps per second for a voice's codes and for a replayed `.pt` voice, and the step.

use crate::bus::Cancel;
use crate::cli::{GpuArgs, Section, Size};
use crate::models::duplex::{Sampling, StepOutput};
use crate::models::moshi::checkpoint;
use crate::models::moshi::config::{self, ModelConfig};
use crate::models::moshi::device::{self, DeviceChoice};
use crate::models::moshi::files::MIMI_FILE;
use crate::models::moshi::lm_sources::dense_sources;
use crate::models::moshi::placed_lm::PlacedLm;
use crate::models::moshi::placement::Placement;
use crate::models::moshi::random_init::FastRandomBackend;
use crate::models::moshi::sizing::{self, size, Backend, MemoryPlan};
use crate::models::moshi::synthetic::{self, LmFile, Synthetic};
use crate::models::moshi::{
    load_model_with, size_context_for, with_cpu_fallback, Discovery, LoadedModel, ModelLoadError,
    ModelOptions,
};
use anyhow::{Context, Result};
use candle_transformers::generation::{LogitsProcessor, Sampling as Pick};
use moshi::candle::{DType, Device, IndexOp, Tensor};
use moshi::candle_nn::VarBuilder;
use moshi::nn::MaybeQuantizedVarBuilder;
use serde_json::{json, Value};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

const SEED: u64 = 0x6c0c_4ec6;
const WARMUP: usize = 3;
const FRAME_MS: f64 = 80.0;
/// The memory of an 8 GiB card once its CUDA context is made (the README's case).
const SMALL_CARD_GIB: f64 = 7.6;
/// What another program leaves free when it holds the card: less than moshiko's
/// non-layer weights and Mimi, so no placement fits.
const LEFT_FREE: u64 = 300 << 20;
/// Host layers of the `placed` comparison.
const HOST_LAYERS: [usize; 3] = [0, 2, 6];
/// Relative tolerance of the `placed` comparison: f32 logits, host layers computed by
/// the CPU's kernels rather than the GPU's.
const LOGIT_TOLERANCE: f32 = 1e-3;

/// The model of each size, as `write` writes it.
pub fn model_for(size: Size) -> Synthetic {
    match size {
        Size::Full => Synthetic {
            config: ModelConfig::moshiko(),
            mimi_toml: None,
            lm_toml: false,
        },
        Size::Small => {
            let mimi = config::demo_mimi();
            let lm = config::lm_config(256, 4, 8, 3000, 128, 4, 1, 2000, config::DEMO_AUDIO_BINS);
            Synthetic {
                config: ModelConfig::from_parts(lm, mimi.to_mimi()),
                mimi_toml: Some(mimi),
                lm_toml: true,
            }
        }
    }
}

/// The checkpoint directory of each LM file under the work directory.
pub fn checkpoint_dir(work: &Path, lm: LmFile) -> PathBuf {
    work.join(match lm {
        LmFile::Q8 => "q8",
        LmFile::Bf16 => "bf16",
    })
}

struct Report<'a> {
    out: &'a mut dyn Write,
    file: Option<std::fs::File>,
    device: String,
    size: Size,
    failed: Vec<String>,
}

impl Report<'_> {
    /// One measurement: a line of figures, and a JSON line with `fields`.
    fn emit(&mut self, check: &str, ok: bool, text: &str, fields: Value) -> Result<()> {
        writeln!(
            self.out,
            "gpu-check {check}: {text}{}",
            if ok { "" } else { "  [FAILED]" }
        )?;
        self.out.flush()?;
        if let Some(f) = &mut self.file {
            let size = format!("{:?}", self.size).to_lowercase();
            let mut obj = json!({ "check": check, "ok": ok, "device": self.device, "size": size, "text": text });
            if let (Some(o), Value::Object(extra)) = (obj.as_object_mut(), fields) {
                o.extend(extra);
            }
            writeln!(f, "{obj}")?;
        }
        if !ok {
            self.failed.push(check.to_string());
        }
        Ok(())
    }
}

/// Run the sections asked for; an error in one is reported and the next still runs.
/// Fails when any measurement failed its check.
pub fn run(args: &GpuArgs, opts: &ModelOptions, out: &mut dyn Write) -> Result<()> {
    let (dev, name) = device::select(opts.device)?;
    let work = args
        .work
        .clone()
        .unwrap_or_else(|| std::env::temp_dir().join("assistant-gpu-check"));
    let file = match &args.report {
        Some(p) => Some(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(p)
                .with_context(|| format!("opening {}", p.display()))?,
        ),
        None => None,
    };
    let mut r = Report {
        out,
        file,
        device: name.clone(),
        size: args.size,
        failed: Vec::new(),
    };
    let sections = match args.section {
        Section::All => vec![
            Section::Write,
            Section::Free,
            Section::Warmup,
            Section::Q8,
            Section::Bf16,
            Section::Placed,
            Section::Fallback,
            Section::Personaplex,
            Section::Batch,
        ],
        s => vec![s],
    };
    for s in sections {
        let result = match s {
            Section::Write => write(&mut r, &work, args.size),
            Section::Free => free(&mut r, &dev, &name),
            Section::Warmup => warmup(&mut r, &dev, &name, &work),
            Section::Q8 => model_section(&mut r, &dev, &name, &work, LmFile::Q8, args.steps),
            Section::Bf16 => model_section(&mut r, &dev, &name, &work, LmFile::Bf16, args.steps),
            Section::Placed => placed(&mut r, &dev, args.size, args.steps),
            Section::Fallback => fallback(&mut r, (&dev, &name, opts.device), &work),
            Section::Headless => headless(&mut r, args.stats.as_deref(), &name),
            Section::Personaplex => personaplex(&mut r, &dev, args.size, args.steps),
            Section::Batch => batch(&mut r, &dev, &work, args.steps),
            Section::All => unreachable!("expanded above"),
        };
        if let Err(e) = result {
            let check = format!("{s:?}").to_lowercase();
            r.emit(
                &check,
                false,
                &format!("error: {e:#}"),
                json!({ "error": format!("{e:#}") }),
            )?;
        }
    }
    match r.failed.as_slice() {
        [] => Ok(()),
        f => anyhow::bail!("gpu check failed: {}", f.join(", ")),
    }
}

fn gib(b: u64) -> f64 {
    b as f64 / (1u64 << 30) as f64
}

/// `/proc/self/status` field in bytes (the process's anonymous memory: what tensors take).
fn proc_status(field: &str) -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let kib: u64 = s
        .lines()
        .find(|l| l.starts_with(field))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()?;
    Some(kib * 1024)
}

fn host_used() -> Option<u64> {
    proc_status("RssAnon:")
}

/// (free, total) of the device as its driver reports them; the host's for the CPU.
fn device_memory(dev: &Device) -> Option<(u64, u64)> {
    match dev {
        Device::Cuda(_) => cuda_memory(dev),
        _ => {
            let mut sys = sysinfo::System::new();
            sys.refresh_memory();
            Some((sys.available_memory(), sys.total_memory()))
        }
    }
}

#[cfg(feature = "cuda")]
fn cuda_memory(dev: &Device) -> Option<(u64, u64)> {
    let cuda = dev.as_cuda_device().ok()?;
    cuda.cuda_stream().context().bind_to_thread().ok()?;
    let (free, total) = moshi::candle::cuda_backend::cudarc::driver::result::mem_get_info().ok()?;
    Some((free as u64, total as u64))
}

#[cfg(not(feature = "cuda"))]
fn cuda_memory(_: &Device) -> Option<(u64, u64)> {
    None
}

/// Memory in use where the model's device part lives: the driver's figure on CUDA, the
/// process's anonymous memory on the CPU.
fn device_used(dev: &Device) -> Option<u64> {
    match dev {
        Device::Cuda(_) => cuda_memory(dev).map(|(free, total)| total - free),
        _ => host_used(),
    }
}

fn write(r: &mut Report, work: &Path, size: Size) -> Result<()> {
    let model = model_for(size);
    let q8 = checkpoint_dir(work, LmFile::Q8);
    for lm in [LmFile::Q8, LmFile::Bf16] {
        let dir = checkpoint_dir(work, lm);
        let mimi_from = (lm == LmFile::Bf16).then(|| q8.join(MIMI_FILE));
        let t = Instant::now();
        let bytes = synthetic::write_checkpoint(&dir, &model, lm, SEED, mimi_from.as_deref())?;
        let secs = t.elapsed().as_secs_f64();
        // The loader accepts it, and it holds what the memory plan counts for the config.
        let ck = checkpoint::inspect(&dir)?;
        let table = sizing::table_from_headers(&checkpoint::lm_headers(&ck)?);
        let stored: u64 = table.iter().map(|t| t.stored.bytes(t.elems)).sum();
        let counted: u64 = sizing::census(&model.config.lm, lm == LmFile::Q8, 2)
            .map_err(anyhow::Error::msg)?
            .iter()
            .map(|t| t.stored.bytes(t.elems))
            .sum();
        let ok = stored == counted;
        let kind = format!("{lm:?}").to_lowercase();
        r.emit(
            &format!("write {kind}"),
            ok,
            &format!("{}: LM file {:.2} GB written in {secs:.1} s ({:.2} GB/s); {} tensors, {stored} bytes of data (census: {counted})", dir.display(), bytes as f64 / 1e9, bytes as f64 / 1e9 / secs, table.len()),
            json!({ "dir": dir, "lm_bytes": bytes, "seconds": secs, "tensors": table.len(), "data_bytes": stored, "census_bytes": counted }),
        )?;
    }
    Ok(())
}

fn free(r: &mut Report, dev: &Device, name: &str) -> Result<()> {
    let t = Instant::now();
    let first = sizing::free_memory(dev);
    let first_ms = t.elapsed().as_secs_f64() * 1e3;
    let t = Instant::now();
    let again = sizing::free_memory(dev);
    let again_ms = t.elapsed().as_secs_f64() * 1e3;
    let total = device_memory(dev).map(|(_, total)| total);
    let capped = sizing::device_budget(dev, Some(SMALL_CARD_GIB));
    let ok =
        matches!((first, again, total), (Some(f), Some(a), Some(t)) if f > 0 && f <= t && a <= t);
    let show = |b: Option<u64>| b.map_or("unknown".to_string(), |b| format!("{:.2} GiB", gib(b)));
    r.emit(
        "free",
        ok,
        &format!("{name}: {} free of {} (query {first_ms:.3} ms, again {again_ms:.3} ms: {}); budget with --max-memory {SMALL_CARD_GIB}: {}", show(first), show(total), show(again), show(capped)),
        json!({ "free_bytes": first, "again_bytes": again, "total_bytes": total, "query_ms": first_ms, "again_ms": again_ms, "budget_small_card": capped }),
    )
}

fn warmup(r: &mut Report, dev: &Device, name: &str, work: &Path) -> Result<()> {
    let dir = work.join("warmup");
    synthetic::write_checkpoint(&dir, &model_for(Size::Small), LmFile::Q8, SEED, None)?;
    let mut secs = Vec::new();
    for _ in 0..2 {
        let t = Instant::now();
        let ck = checkpoint::inspect(&dir)?;
        let (mut mimi, mut lm, _) = checkpoint::load_parts(&ck, dev, &mut |_| {}, &Cancel::new())?;
        let mut stepping = Stepping::new(&ck.config.gen);
        for i in 0..2 {
            stepping.step(&mut mimi, &mut lm, dev, i)?;
        }
        dev.synchronize()?;
        secs.push(t.elapsed().as_secs_f64());
    }
    let _ = std::fs::remove_dir_all(&dir);
    r.emit(
        "warmup",
        true,
        &format!("small q8 model on {name}, loaded and stepped twice: first {:.2} s (includes the driver compiling candle's PTX, unless cached), then {:.2} s", secs[0], secs[1]),
        json!({ "first_s": secs[0], "again_s": secs[1] }),
    )
}

/// A frame of test signal: a chirp plus a little noise, speech-like in level.
fn chirp(step: usize, len: usize) -> Vec<f32> {
    let mut state = 12345u32.wrapping_add(step as u32);
    (0..len)
        .map(|i| {
            let t = (step * len + i) as f32 / 24_000.0;
            state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            let noise = (state >> 9) as f32 / (1u32 << 23) as f32 - 0.5;
            0.3 * (2.0 * std::f32::consts::PI * (200.0 + 300.0 * t.fract()) * t).sin()
                + 0.02 * noise
        })
        .collect()
}

#[derive(Default, Clone, Copy)]
struct StageMs {
    encode: f64,
    temporal: f64,
    depformer: f64,
    decode: f64,
}

impl StageMs {
    fn total(&self) -> f64 {
        self.encode + self.temporal + self.depformer + self.decode
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn ms_since(t: Instant) -> f64 {
    t.elapsed().as_secs_f64() * 1e3
}

/// Steps a loaded Mimi and LM the way a conversation does (Mimi encode, the temporal
/// transformer and text sampling, the depformer, Mimi decode), each stage timed to its
/// result on the host. The model's own codes are fed back without the acoustic delay:
/// the work per step is the same.
struct Stepping {
    gen: moshi::lm_generate_multistream::Config,
    text: LogitsProcessor,
    audio: LogitsProcessor,
    prev_text: u32,
    prev_audio: Vec<u32>,
}

impl Stepping {
    fn new(gen: &moshi::lm_generate_multistream::Config) -> Self {
        let lp = |seed| {
            LogitsProcessor::from_sampling(
                seed,
                Pick::TopK {
                    k: 250,
                    temperature: 0.8,
                },
            )
        };
        Self {
            gen: gen.clone(),
            text: lp(SEED),
            audio: lp(SEED + 1),
            prev_text: gen.text_start_token,
            prev_audio: vec![gen.audio_pad_token(); gen.generated_audio_codebooks],
        }
    }

    fn step(
        &mut self,
        mimi: &mut moshi::mimi::Mimi,
        lm: &mut PlacedLm,
        dev: &Device,
        i: usize,
    ) -> Result<StageMs> {
        let len = (mimi.config().sample_rate / mimi.config().frame_rate).round() as usize;
        let mut ms = StageMs::default();
        let t = Instant::now();
        let pcm = Tensor::from_slice(&chirp(i, len), (1, 1, len), dev)?;
        let codes = mimi.encode_step(&pcm.into(), &().into())?;
        let codes: Vec<u32> = codes
            .as_option()
            .context("Mimi gave no codes for a whole frame")?
            .i((0, .., 0))?
            .to_vec1()?;
        ms.encode = ms_since(t);
        let t = Instant::now();
        let ids: Vec<Option<u32>> = self
            .prev_audio
            .iter()
            .chain(codes.iter().take(self.gen.input_audio_codebooks))
            .map(|&c| Some(c))
            .collect();
        let (logits, ys) = lm.forward(Some(self.prev_text), &ids)?;
        let text = self.text.sample(&logits.i((0, 0))?)?;
        ms.temporal = ms_since(t);
        let t = Instant::now();
        let audio = lm
            .depformer_sample(&ys, Some(text), &[], &mut self.audio)?
            .context("the LM has no depformer")?;
        ms.depformer = ms_since(t);
        let t = Instant::now();
        let a = &audio[..self.gen.generated_audio_codebooks];
        let codes = Tensor::from_slice(a, (1, a.len(), 1), dev)?;
        let pcm = mimi.decode_step(&codes.into(), &().into())?;
        let pcm: Vec<f32> = pcm
            .as_option()
            .context("Mimi decoded nothing")?
            .flatten_all()?
            .to_vec1()?;
        ms.decode = ms_since(t);
        if pcm.iter().any(|v| !v.is_finite()) {
            anyhow::bail!("Mimi decoded non-finite samples at step {i}");
        }
        self.prev_text = text;
        self.prev_audio = a.to_vec();
        Ok(ms)
    }
}

fn model_section(
    r: &mut Report,
    dev: &Device,
    name: &str,
    work: &Path,
    lm: LmFile,
    steps: usize,
) -> Result<()> {
    let budgets: &[Option<f64>] = match lm {
        LmFile::Q8 => &[None, Some(SMALL_CARD_GIB)],
        LmFile::Bf16 => &[None],
    };
    for &max_memory in budgets {
        measure_model(
            r,
            dev,
            name,
            &checkpoint_dir(work, lm),
            lm,
            max_memory,
            steps,
        )?;
    }
    Ok(())
}

fn measure_model(
    r: &mut Report,
    dev: &Device,
    name: &str,
    dir: &Path,
    lm: LmFile,
    max_memory: Option<f64>,
    steps: usize,
) -> Result<()> {
    let kind = format!("{lm:?}").to_lowercase();
    let label = match max_memory {
        Some(g) => format!("{kind} --max-memory {g}"),
        None => format!("{kind} whole device"),
    };
    // What an earlier load freed goes back to the driver at a synchronisation.
    dev.synchronize()?;
    let (dev0, host0) = (device_used(dev), host_used());
    let t = Instant::now();
    let mut ck = checkpoint::inspect(dir)?;
    let notice = size_context_for(
        &mut ck,
        Backend::of(dev),
        name,
        None,
        sizing::device_budget(dev, max_memory),
    )?;
    let plan = ck.plan.clone();
    let gen = ck.config.gen.clone();
    let (mut mimi, mut model, dtype) =
        checkpoint::load_parts(&ck, dev, &mut |_| {}, &Cancel::new())?;
    dev.synchronize()?;
    let load_s = t.elapsed().as_secs_f64();
    let (dev1, host1) = (device_used(dev), host_used());
    let placement = model.placement();
    let layers = ck.config.lm.transformer.num_layers;
    let context = ck.config.lm.transformer.context;
    r.emit(
        &format!("load {label}"),
        true,
        &format!(
            "{dtype} on {name}: {load_s:.2} s; {} of {layers} layers on the host, context {context} steps{}",
            placement.host_layers,
            notice.map(|n| format!(" (notice: {})", n.message)).unwrap_or_default()
        ),
        json!({ "dtype": dtype, "load_s": load_s, "host_layers": placement.host_layers, "context": context, "max_memory_gib": max_memory }),
    )?;

    let mut stepping = Stepping::new(&gen);
    let mut times = Vec::with_capacity(steps);
    let mut after_first = None;
    for i in 0..WARMUP + steps {
        let ms = stepping.step(&mut mimi, &mut model, dev, i)?;
        if i == 0 {
            // The KV cache is allocated whole at the first step.
            after_first = device_used(dev).zip(host_used());
        }
        if i >= WARMUP {
            times.push(ms);
        }
    }
    let p = |f: fn(&StageMs) -> f64| median(times.iter().map(f).collect());
    let med = StageMs {
        encode: p(|s| s.encode),
        temporal: p(|s| s.temporal),
        depformer: p(|s| s.depformer),
        decode: p(|s| s.decode),
    };
    let total = p(StageMs::total);
    r.emit(
        &format!("steps {label}"),
        total.is_finite(),
        &format!(
            "ms/step (median of {steps}): Mimi encode {:.2}, temporal {:.2}, depformer {:.2}, Mimi decode {:.2}; total {total:.2} ms, RTF {:.3}",
            med.encode,
            med.temporal,
            med.depformer,
            med.decode,
            total / FRAME_MS
        ),
        json!({ "encode_ms": med.encode, "temporal_ms": med.temporal, "depformer_ms": med.depformer, "decode_ms": med.decode, "total_ms": total, "rtf": total / FRAME_MS, "steps": steps }),
    )?;

    memory_line(
        r,
        &label,
        dev,
        plan.as_ref(),
        (dev0, host0),
        (dev1, host1),
        after_first,
    )?;
    Ok(())
}

/// The plan's prediction against what was measured: the driver's used memory on CUDA (the
/// process's anonymous memory on the CPU), after the load and after the first step.
fn memory_line(
    r: &mut Report,
    label: &str,
    dev: &Device,
    plan: Option<&MemoryPlan>,
    before: (Option<u64>, Option<u64>),
    loaded: (Option<u64>, Option<u64>),
    stepped: Option<(u64, u64)>,
) -> Result<()> {
    let Some(plan) = plan else {
        return r.emit(
            &format!("memory {label}"),
            false,
            "no memory plan: the device's free memory is unknown",
            json!({}),
        );
    };
    let delta = |a: Option<u64>, b: Option<u64>| a.zip(b).map(|(a, b)| a as i64 - b as i64);
    let dev_loaded = delta(loaded.0, before.0);
    let dev_stepped = delta(stepped.map(|s| s.0), before.0);
    let host_stepped = delta(stepped.map(|s| s.1), before.1);
    let on_cpu = dev.is_cpu();
    let weights = plan.weights.device + plan.mimi;
    let predicted = plan.total();
    let shown = |b: Option<i64>| b.map_or("unknown".to_string(), |b| size(b.max(0) as u64));
    // The plan holds if what was used fits what it set aside (its reserve included).
    let ok = dev_stepped.is_some_and(|u| u <= predicted as i64);
    // On the CPU only pages touched count (a zeroed KV cache is not, yet), and memory an
    // earlier load freed is reused: lower bounds.
    let what = if on_cpu {
        "process (resident anonymous pages: a lower bound)"
    } else {
        "driver"
    };
    let host = if on_cpu {
        String::new()
    } else {
        format!(
            "; host: plan {} (embeddings, host layers), process grew {}",
            size(plan.weights.host),
            shown(host_stepped)
        )
    };
    r.emit(
        &format!("memory {label}"),
        ok,
        &format!(
            "plan {} (LM {} + Mimi {} + KV {} + activations {} + reserve {}); {what}: {} after load (plan's weights {}), {} after the first step{host}",
            size(predicted),
            size(plan.weights.device),
            size(plan.mimi),
            size(plan.kv_cache()),
            size(plan.activations),
            size(plan.reserve),
            shown(dev_loaded),
            size(weights),
            shown(dev_stepped),
        ),
        json!({
            "plan_total": predicted, "plan_weights": weights, "plan_kv": plan.kv_cache(), "plan_host": plan.weights.host,
            "plan_budget": plan.budget, "used_after_load": dev_loaded, "used_after_first_step": dev_stepped,
            "host_after_first_step": host_stepped, "measured_by": what, "plan": plan.explain(),
        }),
    )
}

/// Teacher-forced inputs of step `s`, valid for any vocabulary.
fn forced_ids(s: usize, cfg: &moshi::lm::Config) -> (u32, Vec<u32>) {
    let text = ((s * 37 + 1) % cfg.text_out_vocab_size) as u32;
    let audio = (0..cfg.audio_codebooks)
        .map(|c| ((s * 11 + c * 5) % (cfg.audio_vocab_size - 1)) as u32)
        .collect();
    (text, audio)
}

fn row(t: &Tensor) -> Result<Vec<f32>> {
    Ok(t.i((0, 0))?.to_dtype(DType::F32)?.to_vec1()?)
}

fn argmax(v: &[f32]) -> usize {
    v.iter()
        .enumerate()
        .max_by(|a, b| a.1.total_cmp(b.1))
        .map_or(0, |(i, _)| i)
}

fn placed(r: &mut Report, dev: &Device, size: Size, steps: usize) -> Result<()> {
    let cfg = model_for(size).config.lm;
    let n = cfg.transformer.num_layers;
    // One set of f32 weights on the device, served to both models.
    let t = Instant::now();
    let random = FastRandomBackend::var_builder(DType::F32, dev);
    let mut weights = std::collections::HashMap::new();
    for e in sizing::census(&cfg, false, 4).map_err(anyhow::Error::msg)? {
        let t = random.get(e.dims.clone(), &e.name)?;
        weights.insert(e.name, t);
    }
    let vb = VarBuilder::from_tensors(weights, DType::F32, dev);
    let mut reference = moshi::lm::LmModel::new(&cfg, MaybeQuantizedVarBuilder::Real(vb.clone()))?;
    dev.synchronize()?;
    let build_s = t.elapsed().as_secs_f64();
    let slices = cfg.depformer.as_ref().map_or(0, |d| d.num_slices);
    for k in HOST_LAYERS.into_iter().filter(|&k| k < n) {
        let mut placed = PlacedLm::new(
            &cfg,
            dense_sources(vb.clone(), Placement { host_layers: k }, n),
        )?;
        reference.reset_state();
        let greedy = || LogitsProcessor::from_sampling(SEED, Pick::ArgMax);
        let (mut lp_ref, mut lp_placed) = (greedy(), greedy());
        let (mut text_same, mut audio_same, mut audio_total, mut bit_identical) =
            (0usize, 0usize, 0usize, true);
        let (mut max_diff, mut max_abs) = (0f32, 0f32);
        let (mut ref_ms, mut placed_ms) = (Vec::new(), Vec::new());
        for s in 0..WARMUP + steps {
            let (text, audio) = forced_ids(s, &cfg);
            let forced: Vec<Option<u32>> = audio.iter().take(slices).map(|&a| Some(a)).collect();
            let t = Instant::now();
            let codes = audio
                .iter()
                .map(|&a| Tensor::new(&[[a]], dev).map(Some))
                .collect::<moshi::candle::Result<Vec<_>>>()?;
            let (la, ya) =
                reference.forward(Some(Tensor::new(&[[text]], dev)?), codes, &().into())?;
            let a = reference
                .depformer_sample(&ya, Some(text), &forced, &mut lp_ref)?
                .unwrap_or_default();
            let la = row(&la)?;
            let t_ref = ms_since(t);
            let t = Instant::now();
            let ids: Vec<Option<u32>> = audio.iter().map(|&a| Some(a)).collect();
            let (lb, yb) = placed.forward(Some(text), &ids)?;
            let b = placed
                .depformer_sample(&yb, Some(text), &forced, &mut lp_placed)?
                .unwrap_or_default();
            let lb = row(&lb)?;
            let t_placed = ms_since(t);
            text_same += (argmax(&la) == argmax(&lb)) as usize;
            audio_same += a.iter().zip(&b).filter(|(x, y)| x == y).count();
            audio_total += a.len().max(b.len());
            bit_identical &= la == lb;
            for (x, y) in la.iter().zip(&lb) {
                max_diff = max_diff.max((x - y).abs());
                max_abs = max_abs.max(x.abs());
            }
            if s >= WARMUP {
                ref_ms.push(t_ref);
                placed_ms.push(t_placed);
            }
        }
        let total = WARMUP + steps;
        let rel = max_diff / max_abs.max(f32::MIN_POSITIVE);
        let ok = text_same == total && audio_same == audio_total && rel <= LOGIT_TOLERANCE;
        let (rm, pm) = (median(ref_ms), median(placed_ms));
        r.emit(
            &format!("placed host_layers={k}"),
            ok,
            &format!(
                "f32, {total} teacher-forced greedy steps: text tokens equal {text_same}/{total}, audio {audio_same}/{audio_total}; max |logit diff| {max_diff:.2e} ({rel:.2e} of max |logit|, tolerance {LOGIT_TOLERANCE:.0e}; bit-identical: {bit_identical}); step {pm:.2} ms (LmModel on the device {rm:.2} ms; weights built in {build_s:.1} s)"
            ),
            json!({
                "host_layers": k, "steps": total, "text_equal": text_same, "audio_equal": audio_same, "audio_total": audio_total,
                "max_logit_diff": max_diff, "relative_diff": rel, "tolerance": LOGIT_TOLERANCE, "bit_identical": bit_identical,
                "placed_step_ms": pm, "lm_model_step_ms": rm,
            }),
        )?;
    }
    Ok(())
}

/// A `--headless` run's stats as one line: it ran on the device asked for, produced
/// audio, and reported no error. The check is named after the file (`headless.json`).
fn headless(r: &mut Report, stats: Option<&Path>, device: &str) -> Result<()> {
    let path = stats.context("--section headless needs --stats FILE")?;
    let check = path
        .file_stem()
        .map_or_else(|| "headless".into(), |s| s.to_string_lossy().into_owned());
    let s: Value = match std::fs::read_to_string(path)
        .map_err(anyhow::Error::from)
        .and_then(|t| Ok(serde_json::from_str(&t)?))
    {
        Ok(s) => s,
        Err(e) => {
            return r.emit(
                &check,
                false,
                &format!("no stats from the run: {}: {e:#}", path.display()),
                json!({}),
            )
        }
    };
    let on = s["device"].as_str().unwrap_or_default();
    let error = s["error"]
        .as_str()
        .map(|e| format!("; error: {e}"))
        .unwrap_or_default();
    let ok =
        on.starts_with(device) && s["frames_out"].as_u64().unwrap_or(0) > 0 && error.is_empty();
    let text = format!(
        "{} on {on} ({}): load {:.1} s; {} frames in, {} out, {} dropped; step p50 {} ms, p99 {} ms; RTF {}; {} s of speech in, {} s out{error}",
        s["model"].as_str().unwrap_or("?"),
        s["dtype"].as_str().unwrap_or("?"),
        s["load_ms"].as_f64().unwrap_or(f64::NAN) / 1e3,
        s["frames_in"],
        s["frames_out"],
        s["dropped_frames"],
        s["step_ms"]["p50"],
        s["step_ms"]["p99"],
        s["rtf"],
        s["input_seconds"],
        s["output_seconds"],
    );
    r.emit(&check, ok, &text, json!({ "stats": s }))
}

/// Load a checkpoint directory on `dev` as `load_model` does, with the budget given, or
/// with a plan made earlier (`stale`) for a device that has since filled up.
/// The KV cache of the batch section's sessions (60 s), so that many fit.
const BATCH_CONTEXT: usize = 750;
const BATCH_SESSIONS: [usize; 8] = [1, 2, 4, 8, 16, 24, 32, 48];

/// How many real-time sessions the device holds, each alone (forks stepped one after
/// another) and batched: the wall time of a frame of N sessions, N rising until both
/// pass a frame (80 ms) or the device runs out of memory.
fn batch(r: &mut Report, dev: &Device, work: &Path, steps: usize) -> Result<()> {
    let dir = checkpoint_dir(work, LmFile::Q8);
    let (mut make, gen) =
        crate::models::moshi::batch_check::checkpoint_maker(&dir, BATCH_CONTEXT, dev)?;
    let cap = crate::models::moshi::batch_check::realtime_capacity(
        &mut make,
        &gen,
        &BATCH_SESSIONS,
        steps.clamp(3, 10),
        FRAME_MS,
    )?;
    for c in &cap.costs {
        r.emit(
            "batch",
            true,
            &format!(
                "N={}: a frame takes {:.1} ms alone ({} steps), {:.1} ms batched (one step)",
                c.sessions, c.alone_wall_ms, c.sessions, c.batch_wall_ms
            ),
            json!({ "sessions": c.sessions, "alone_ms": c.alone_wall_ms, "batched_ms": c.batch_wall_ms }),
        )?;
    }
    // The count is a figure, not a check: a CPU dry run holds few sessions.
    r.emit(
        "batch",
        !cap.costs.is_empty(),
        &format!(
            "real-time sessions (q8, context {BATCH_CONTEXT}): {} alone, {} batched{}",
            cap.alone,
            cap.batched,
            cap.stopped
                .as_deref()
                .map(|s| format!("; stopped at {s}"))
                .unwrap_or_default()
        ),
        json!({ "alone": cap.alone, "batched": cap.batched, "context": BATCH_CONTEXT, "stopped": cap.stopped }),
    )
}

fn load_with(
    dir: &Path,
    dev: &Device,
    name: &str,
    budget: Option<u64>,
    stale: Option<&MemoryPlan>,
) -> Result<LoadedModel, ModelLoadError> {
    let mut ck = checkpoint::inspect(dir)?;
    match stale {
        Some(p) => {
            ck.config.lm.transformer.context = p.context;
            ck.placement = p.placement;
            ck.plan = Some(p.clone());
        }
        None => {
            size_context_for(&mut ck, Backend::of(dev), name, None, budget)?;
        }
    }
    let model = checkpoint::load(
        ck,
        &Sampling::default(),
        dev,
        name,
        &mut |_| {},
        &Cancel::new(),
    )?;
    Ok(LoadedModel {
        model: Box::new(model),
        notices: Vec::new(),
        degraded: None,
        fell_back_to_demo: false,
    })
}

fn fallback_line(
    r: &mut Report,
    check: &str,
    how: &str,
    started: Instant,
    loaded: Result<LoadedModel, ModelLoadError>,
) -> Result<()> {
    let load_s = started.elapsed().as_secs_f64();
    match loaded {
        Ok(mut m) => {
            let info = m.model.info();
            let mut out = StepOutput::default();
            out.clear(m.model.frame_len());
            let t = Instant::now();
            let stepped = m.model.step(&chirp(0, m.model.frame_len()), &mut out);
            let step_ms = ms_since(t);
            let degraded = m.degraded.clone().unwrap_or_default();
            let ok = !degraded.is_empty() && info.device == "cpu" && stepped.is_ok();
            r.emit(
                check,
                ok,
                &format!("{how}: now on {} ({}) after {load_s:.1} s, first step {step_ms:.0} ms{}; state: {}", info.device, info.dtype, stepped.err().map(|e| format!(" FAILED: {e:#}")).unwrap_or_default(), if degraded.is_empty() { "not degraded" } else { &degraded }),
                json!({ "degraded": m.degraded, "device_now": info.device, "load_s": load_s, "first_step_ms": step_ms }),
            )
        }
        Err(e) => r.emit(
            check,
            false,
            &format!("{how}: no model at all: {e}"),
            json!({ "error": e.to_string() }),
        ),
    }
}

/// Hold all but `leave` bytes of the device's free memory, as another program would
/// (a little more left free if the driver will not give that much in one piece).
fn hold(dev: &Device, leave: u64) -> Result<Tensor> {
    let free = sizing::free_memory(dev).context("the device's free memory is unknown")?;
    let mut last = None;
    for extra in [0, 256 << 20, 1 << 30] {
        match Tensor::zeros(free.saturating_sub(leave + extra) as usize, DType::U8, dev) {
            Ok(t) => {
                dev.synchronize()?;
                return Ok(t);
            }
            Err(e) => last = Some(e),
        }
    }
    Err(last.map_or_else(|| anyhow::anyhow!("nothing to hold"), anyhow::Error::from))
}

fn fallback(
    r: &mut Report,
    (dev, name, choice): (&Device, &str, DeviceChoice),
    work: &Path,
) -> Result<()> {
    let dir = checkpoint_dir(work, LmFile::Q8);
    let cpu = || {
        load_with(
            &dir,
            &Device::Cpu,
            "cpu",
            sizing::device_budget(&Device::Cpu, None),
            None,
        )
    };
    if dev.is_cpu() {
        // The dry run has no GPU: the CPU with a 1 MiB budget stands in for a full one,
        // through the same fallback.
        let t = Instant::now();
        let loaded = with_cpu_fallback("cpu-as-device", |on_cpu| {
            if on_cpu {
                cpu()
            } else {
                load_with(&dir, dev, "cpu-as-device", Some(1 << 20), None)
            }
        });
        fallback_line(
            r,
            "fallback plan-refuses",
            "dry run, the CPU with a 1 MiB budget as the device",
            t,
            loaded,
        )?;
        return r.emit(
            "fallback driver-oom",
            true,
            "skipped: needs a GPU (a load past the driver's free memory)",
            json!({ "skipped": true }),
        );
    }
    // 1. The user's path: another program holds all but LEFT_FREE of the card.
    let free = sizing::free_memory(dev).context("the device's free memory is unknown")?;
    let hog = hold(dev, LEFT_FREE)?;
    let args = ModelOptions {
        model_dir: Some(dir.clone()),
        device: choice,
        ..ModelOptions::default()
    };
    let t = Instant::now();
    let loaded = load_model_with(&args, &Discovery::default(), &mut |_| {}, &Cancel::new());
    let how = format!(
        "{} left free of {}, `--device {name} --model-dir q8`",
        size(sizing::free_memory(dev).unwrap_or(0)),
        size(free)
    );
    drop(hog);
    dev.synchronize()?;
    fallback_line(r, "fallback plan-refuses", &how, t, loaded)?;
    // 2. A driver failure: the plan made for the empty card, then the card fills up.
    let mut ck = checkpoint::inspect(&dir)?;
    size_context_for(
        &mut ck,
        Backend::of(dev),
        name,
        None,
        sizing::device_budget(dev, None),
    )?;
    let plan = ck.plan.clone().context("no plan for the empty card")?;
    let free = sizing::free_memory(dev).context("the device's free memory is unknown")?;
    let hog = hold(dev, 2 << 30)?;
    let t = Instant::now();
    let loaded = with_cpu_fallback(name, |on_cpu| {
        if on_cpu {
            cpu()
        } else {
            load_with(&dir, dev, name, None, Some(&plan))
        }
    });
    drop(hog);
    dev.synchronize()?;
    fallback_line(
        r,
        "fallback driver-oom",
        &format!(
            "plan for {} free ({}), then 2 GiB left",
            size(free),
            size(plan.total())
        ),
        t,
        loaded,
    )
}

/// PersonaPlex's prefill and step at the size's shape with a 16-slice depformer: built on
/// the device from random weights (bf16 on CUDA, f32 on the CPU), primed with 100 voice
/// frames (8 s, as codes and as a replayed `.pt` voice) and a 40-token role text, then
/// stepped as a conversation.
fn personaplex(r: &mut Report, dev: &Device, shape: Size, steps: usize) -> Result<()> {
    use crate::models::moshi::personaplex::step::{
        PlexStepper, VoiceTokens, ACOUSTIC_DELAY, STREAM_CODEBOOKS,
    };
    use crate::models::moshi::sampling::Samplers;
    const VOICE_FRAMES: usize = 100;
    const TEXT_TOKENS: usize = 40;
    let mut cfg = model_for(shape).config.lm;
    cfg.audio_codebooks = 2 * STREAM_CODEBOOKS;
    // NVIDIA's silence and sine tokens are Mimi codes of its 2048 bins (the small shape's
    // demo Mimi has fewer).
    cfg.audio_vocab_size = 2049;
    if let Some(d) = cfg.depformer.as_mut() {
        d.num_slices = 2 * STREAM_CODEBOOKS;
    }
    let dtype = if dev.is_cpu() {
        DType::F32
    } else {
        DType::BF16
    };
    let used_before = device_used(dev);
    let t = Instant::now();
    let n = cfg.transformer.num_layers;
    let vb = FastRandomBackend::var_builder(dtype, dev);
    let lm = PlacedLm::new(&cfg, dense_sources(vb, Placement::default(), n))?;
    dev.synchronize()?;
    let build_s = t.elapsed().as_secs_f64();
    let held = device_used(dev)
        .zip(used_before)
        .map(|(a, b)| a.saturating_sub(b));
    let (text_vocab, audio_pad) = (
        cfg.text_out_vocab_size as u32,
        cfg.audio_vocab_size as u32 - 1,
    );
    let mut stepper = PlexStepper::new(
        lm,
        cfg.audio_codebooks,
        ACOUSTIC_DELAY,
        text_vocab,
        audio_pad,
    );
    let mut samplers = Samplers::new(&Sampling::default());
    let codes: Vec<Vec<u32>> = (0..VOICE_FRAMES)
        .map(|f| {
            (0..STREAM_CODEBOOKS)
                .map(|q| ((f * 131 + q * 17) % 2000) as u32)
                .collect()
        })
        .collect();
    let text: Vec<u32> = (0..TEXT_TOKENS)
        .map(|i| (100 + i * 37) as u32 % text_vocab)
        .collect();
    // Once untimed: the first use compiles kernels and allocates the KV cache.
    stepper.prefill(&VoiceTokens::Codes(codes.clone()), &text, &mut samplers)?;
    let voice = VoiceTokens::Codes(codes);
    let t = Instant::now();
    let ran = stepper.prefill(&voice, &text, &mut samplers)?.len() + 1;
    dev.synchronize()?;
    let wav_ms = ms_since(t);
    let embeddings = Tensor::randn(0f32, 0.02, (VOICE_FRAMES - 1, cfg.transformer.d_model), dev)?;
    let (streams, positions) = stepper.cache_shape();
    let cache = vec![vec![Some(0u32); positions]; streams];
    let pt = VoiceTokens::Embedded { embeddings, cache };
    let t = Instant::now();
    let ran_pt = stepper.prefill(&pt, &text, &mut samplers)?.len() + 1;
    dev.synchronize()?;
    let pt_ms = ms_since(t);
    let mut step_ms = Vec::new();
    for s in 0..WARMUP + steps {
        let user: Vec<u32> = (0..STREAM_CODEBOOKS)
            .map(|q| ((s * 7 + q * 3) % 2000) as u32)
            .collect();
        let t = Instant::now();
        stepper.step(None, None, Some(&user), &mut samplers)?;
        dev.synchronize()?;
        if s >= WARMUP {
            step_ms.push(ms_since(t));
        }
    }
    let step = median(step_ms);
    let rate = |n: usize, ms: f64| n as f64 / (ms / 1000.0);
    let ok = ran == VOICE_FRAMES + 12 + TEXT_TOKENS && ran_pt == ran && step > 0.0;
    r.emit(
        "personaplex",
        ok,
        &format!(
            "{} layers, d_model {}, 16 depformer slices, {dtype:?}, built in {build_s:.1} s ({}): prefill of {ran} steps ({VOICE_FRAMES} voice frames, 12 of silence, {TEXT_TOKENS} text tokens) in {wav_ms:.0} ms ({:.0} steps/s, {:.1}x real time); from a .pt voice {pt_ms:.0} ms ({:.0} steps/s); conversation step {step:.2} ms (LM and 16-slice depformer, RTF {:.3})",
            n,
            cfg.transformer.d_model,
            held.map_or("device memory unknown".to_string(), |b| format!("{} on the device", size(b))),
            rate(ran, wav_ms),
            rate(ran, wav_ms) * FRAME_MS / 1000.0,
            rate(ran_pt, pt_ms),
            step / FRAME_MS
        ),
        json!({
            "layers": n, "d_model": cfg.transformer.d_model, "dtype": format!("{dtype:?}"), "build_s": build_s,
            "weights_bytes": held, "prefill_steps": ran, "prefill_ms": wav_ms, "prefill_steps_per_s": rate(ran, wav_ms),
            "pt_prefill_steps": ran_pt, "pt_prefill_ms": pt_ms, "pt_prefill_steps_per_s": rate(ran_pt, pt_ms),
            "step_ms": step, "rtf": step / FRAME_MS,
        }),
    )
}
