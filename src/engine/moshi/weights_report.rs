//! The weights section of `assistant doctor`: which checkpoint a run would load, from
//! where, or that it would fall back to the demo model.

use super::{discovery, Discovery};
use crate::app::doctor::Finding;
use crate::cli::ModelArgs;
use std::path::Path;

const SECTION: &str = "weights";

fn found(dir: &Path, origin: &str) -> Finding {
    let lm = [super::files::LM_GGUF, super::files::LM_SAFETENSORS]
        .into_iter()
        .map(|f| dir.join(f))
        .find(|p| p.is_file());
    let size = lm
        .as_ref()
        .and_then(|p| std::fs::metadata(p).ok())
        .map_or(0, |m| m.len());
    Finding {
        section: SECTION,
        ok: true,
        warning: false,
        text: format!(
            "{origin}: {} ({}, {})",
            dir.display(),
            lm.as_deref()
                .and_then(|p| p.file_name())
                .map_or("?".into(), |n| n.to_string_lossy()),
            crate::bus::Bytes(size)
        ),
        fix: None,
    }
}

/// Whether the checkpoint fits the device `args` select, with the plan the load would use.
fn fit(dir: &Path, args: &ModelArgs) -> Option<Finding> {
    use super::sizing::{device_budget, Backend};
    let (device, name) = super::device::select(args.device.parse().ok()?).ok()?;
    let plan = |backend, name: &str, budget| {
        let mut ck = super::checkpoint::inspect(dir).ok()?;
        Some(super::size_context_for(&mut ck, backend, name, args.context, budget).map(|_| ck.plan))
    };
    let finding = |ok, warning, text, fix| Finding {
        section: SECTION,
        ok,
        warning,
        text,
        fix,
    };
    Some(
        match plan(
            Backend::of(&device),
            &name,
            device_budget(&device, args.max_memory),
        )? {
            Ok(Some(p)) => {
                let moved = p.placement.host_layers;
                let text = format!(
                    "fits {name}: context {} steps ({:.0} s){}; {}",
                    p.context,
                    p.context as f64 * 0.08,
                    if moved > 0 {
                        format!(", {moved} of {} layers on the CPU", p.layers)
                    } else {
                        String::new()
                    },
                    p.explain()
                );
                finding(
                    true,
                    moved > 0,
                    text,
                    (moved > 0)
                        .then(|| "free memory on the device to keep every layer on it".to_string()),
                )
            }
            Ok(None) => finding(
                true,
                true,
                format!("fit on {name} unknown: its free memory cannot be read"),
                None,
            ),
            // Off the CPU a refusal means the CPU fallback: slow, but it runs if it fits there.
            Err(e) if !device.is_cpu() => match plan(
                Backend::Cpu,
                "cpu",
                device_budget(&moshi::candle::Device::Cpu, None),
            )? {
                Ok(_) => finding(
                    true,
                    true,
                    format!("{}; it would run on the CPU instead", e.message),
                    Some(e.remedy),
                ),
                Err(cpu) => finding(
                    false,
                    false,
                    format!("{}; and on the CPU: {}", e.message, cpu.message),
                    Some(cpu.remedy),
                ),
            },
            Err(e) => finding(false, false, e.message, Some(e.remedy)),
        },
    )
}

/// Findings for the weights `args` select, looking where `load_model` looks.
pub fn weights_findings(args: &ModelArgs, disc: &Discovery) -> Vec<Finding> {
    if args.demo {
        return vec![Finding {
            section: SECTION,
            ok: true,
            warning: false,
            text: "--demo: the built-in demo model (no weights needed)".into(),
            fix: None,
        }];
    }
    if let Some(dir) = &args.model_dir {
        return match super::checkpoint::inspect(dir) {
            Ok(_) => [Some(found(dir, "--model-dir")), fit(dir, args)]
                .into_iter()
                .flatten()
                .collect(),
            Err(e) => vec![Finding {
                section: SECTION,
                ok: false,
                warning: false,
                text: format!("--model-dir {}: {}", dir.display(), e.message),
                fix: Some(e.remedy),
            }],
        };
    }
    let mut out = Vec::new();
    for repo in [
        args.hf_repo.as_str(),
        "kyutai/moshiko-candle-q8",
        "kyutai/moshika-candle-q8",
    ] {
        if out.iter().any(|f: &Finding| f.text.contains(repo)) {
            continue;
        }
        if let Some(dir) = disc
            .hf_cache
            .as_deref()
            .and_then(|c| discovery::find_in_hf_cache(c, repo))
        {
            out.push(found(&dir, &format!("{repo} in the Hugging Face cache")));
            out.extend(fit(&dir, args));
        } else if let Some(dir) =
            discovery::download_dir(repo).filter(|d| discovery::is_complete(d))
        {
            out.push(found(&dir, &format!("{repo} in the download folder")));
            out.extend(fit(&dir, args));
        }
    }
    if out.is_empty() {
        let cache = disc
            .hf_cache
            .as_ref()
            .map_or("no Hugging Face cache (HF_HOME unset)".to_string(), |c| {
                c.display().to_string()
            });
        out.push(Finding {
            section: SECTION,
            ok: true,
            warning: true,
            text: format!("none: the demo model will be used (looked in {cache} and {})", discovery::download_dir(&args.hf_repo).map_or("-".into(), |d| d.display().to_string())),
            fix: Some("download kyutai/moshiko-candle-q8 (or kyutai/moshika-candle-q8) from Hugging Face and pass --model-dir DIR, or let `assistant` download it on a networked machine".into()),
        });
    }
    out
}

/// What `assistant doctor` shows for the command line's model arguments.
/// GPU memory (NVML) comes first so it sits in doctor's memory section.
pub fn doctor_weights(args: &ModelArgs) -> Vec<Finding> {
    let gpu = match crate::engine::residency::gpu_memory() {
        Ok((used, total)) => format!(
            "GPU memory: {:.1} GiB used of {:.1} GiB",
            used as f64 / (1u64 << 30) as f64,
            total as f64 / (1u64 << 30) as f64
        ),
        Err(why) => format!("GPU memory: {why}"),
    };
    let mut out = vec![Finding {
        section: "memory",
        ok: true,
        warning: false,
        text: gpu,
        fix: None,
    }];
    out.extend(weights_findings(args, &Discovery::from_env(&args.hf_repo)));
    out
}
