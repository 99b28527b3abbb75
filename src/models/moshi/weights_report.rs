//! What `assistant doctor` needs to know about the weights: which checkpoint a run would
//! load, from where, whether it fits the device, or that it would be downloaded or fall
//! back to the demo model. Data only: `app::doctor` words it.

use super::sizing::MemoryPlan;
use super::{discovery, Discovery, ModelOptions};
use std::path::{Path, PathBuf};

/// Where a checkpoint was found.
#[derive(Debug, Clone, PartialEq)]
pub enum WeightsOrigin {
    /// `--model-dir`.
    ModelDir,
    /// A repo's snapshot in the Hugging Face cache.
    HfCache { repo: String },
}

/// One fact about the weights a run would use.
#[derive(Debug, Clone, PartialEq)]
pub enum WeightsFinding {
    /// `--demo`: no weights needed.
    Demo,
    /// A checkpoint, with its LM file and that file's size.
    Found {
        origin: WeightsOrigin,
        dir: PathBuf,
        lm_file: Option<String>,
        lm_bytes: u64,
    },
    /// `--model-dir` names something that is not a loadable checkpoint.
    Unusable {
        dir: PathBuf,
        error: String,
        remedy: String,
    },
    /// The checkpoint fits `device` with this plan (maybe with layers on the host).
    Fits { device: String, plan: MemoryPlan },
    /// The device's free memory cannot be read, so the fit is unknown.
    FitUnknown { device: String },
    /// It does not fit `device`, but a load would fall back to the CPU, where it fits.
    CpuInstead { error: String, remedy: String },
    /// It fits nowhere: `error` for the device, `cpu_error` when the CPU was tried too.
    DoesNotFit {
        error: String,
        cpu_error: Option<String>,
        remedy: String,
    },
    /// The checkpoint is PersonaPlex: it takes a role text and a voice; `voices` are the
    /// voice names found in `voices_dir` (empty: none there).
    PersonaPlex {
        slices: usize,
        voices_dir: PathBuf,
        voices: Vec<String>,
    },
    /// Nothing in the cache: a run downloads `repo` from `endpoint` (or, offline, falls
    /// back to the demo model).
    NotCached {
        repo: String,
        cache: Option<PathBuf>,
        endpoint: Option<String>,
    },
}

/// The weights section of doctor, and the GPU's memory for its memory section.
#[derive(Debug, Clone, PartialEq)]
pub struct WeightsReport {
    /// (used, total) bytes, or why they cannot be read.
    pub gpu_memory: Result<(u64, u64), String>,
    pub findings: Vec<WeightsFinding>,
}

fn found(dir: &Path, origin: WeightsOrigin) -> WeightsFinding {
    let lm = [super::files::LM_GGUF, super::files::LM_SAFETENSORS]
        .into_iter()
        .map(|f| dir.join(f))
        .find(|p| p.is_file());
    WeightsFinding::Found {
        origin,
        dir: dir.to_path_buf(),
        lm_bytes: lm
            .as_ref()
            .and_then(|p| std::fs::metadata(p).ok())
            .map_or(0, |m| m.len()),
        lm_file: lm
            .as_deref()
            .and_then(|p| p.file_name())
            .map(|n| n.to_string_lossy().into_owned()),
    }
}

/// For a PersonaPlex checkpoint: its depformer and the voices a name can pick.
fn personaplex(ck: &super::checkpoint::Checkpoint, opts: &ModelOptions) -> Option<WeightsFinding> {
    if !crate::models::moshi::personaplex::model::is_personaplex(&ck.config.lm) {
        return None;
    }
    let voices_dir = opts.voices_dir.clone().unwrap_or_else(|| {
        ck.dir
            .join(crate::models::moshi::personaplex::voices::VOICES_SUBDIR)
    });
    Some(WeightsFinding::PersonaPlex {
        slices: ck.config.lm.depformer.as_ref().map_or(0, |d| d.num_slices),
        voices: crate::models::moshi::personaplex::voices::voice_names(&voices_dir),
        voices_dir,
    })
}

/// Whether the checkpoint fits the device the options select, with the plan a load
/// would use.
fn fit(dir: &Path, opts: &ModelOptions) -> Option<WeightsFinding> {
    use super::sizing::{device_budget, Backend};
    let (device, name) = super::device::select(opts.device).ok()?;
    let plan = |backend, name: &str, budget| {
        let mut ck = super::checkpoint::inspect(dir).ok()?;
        Some(super::size_context_for(&mut ck, backend, name, opts.context, budget).map(|_| ck.plan))
    };
    Some(
        match plan(
            Backend::of(&device),
            &name,
            device_budget(&device, opts.max_memory_gib),
        )? {
            Ok(Some(plan)) => WeightsFinding::Fits { device: name, plan },
            Ok(None) => WeightsFinding::FitUnknown { device: name },
            // Off the CPU a refusal means the CPU fallback: slow, but it runs if it fits there.
            Err(e) if !device.is_cpu() => match plan(
                Backend::Cpu,
                "cpu",
                device_budget(&moshi::candle::Device::Cpu, None),
            )? {
                Ok(_) => WeightsFinding::CpuInstead {
                    error: e.message,
                    remedy: e.remedy,
                },
                Err(cpu) => WeightsFinding::DoesNotFit {
                    error: e.message,
                    cpu_error: Some(cpu.message),
                    remedy: cpu.remedy,
                },
            },
            Err(e) => WeightsFinding::DoesNotFit {
                error: e.message,
                cpu_error: None,
                remedy: e.remedy,
            },
        },
    )
}

/// Findings for the weights `opts` select, looking where `load_model` looks.
pub fn weights_findings(opts: &ModelOptions, disc: &Discovery) -> Vec<WeightsFinding> {
    if opts.demo {
        return vec![WeightsFinding::Demo];
    }
    if let Some(dir) = &opts.model_dir {
        return match super::checkpoint::inspect(dir) {
            Ok(ck) => [
                Some(found(dir, WeightsOrigin::ModelDir)),
                personaplex(&ck, opts),
                fit(dir, opts),
            ]
            .into_iter()
            .flatten()
            .collect(),
            Err(e) => vec![WeightsFinding::Unusable {
                dir: dir.clone(),
                error: e.message,
                remedy: e.remedy,
            }],
        };
    }
    let mut out = Vec::new();
    let mut seen = Vec::new();
    for repo in [
        opts.hf_repo.as_str(),
        crate::bus::MOSHIKO,
        crate::bus::MOSHIKA,
    ] {
        if seen.contains(&repo) {
            continue;
        }
        seen.push(repo);
        if let Some(dir) = disc
            .hf_cache
            .as_deref()
            .and_then(|c| discovery::find_in_hf_cache(c, repo))
        {
            out.push(found(
                &dir,
                WeightsOrigin::HfCache {
                    repo: repo.to_string(),
                },
            ));
            out.extend(fit(&dir, opts));
        }
    }
    if out.is_empty() {
        out.push(WeightsFinding::NotCached {
            repo: opts.hf_repo.clone(),
            cache: disc.hf_cache.clone(),
            endpoint: disc.endpoint.clone(),
        });
    }
    out
}

/// What `assistant doctor` reports for these options, looking where a run would look.
pub fn weights_report(opts: &ModelOptions) -> WeightsReport {
    WeightsReport {
        gpu_memory: crate::models::moshi::device::gpu_memory(),
        findings: weights_findings(opts, &Discovery::from_env()),
    }
}
