//! Reads this machine into the `MachineProfile` the engine choice decides from: its
//! GPUs and their free memory, CPU cores, memory, which weights are on disk (looking
//! where a run looks: the flags' directories, then the Hugging Face cache) and a
//! configured server.

use super::engine_choice::{CascadeOnDisk, Gpu, GpuKind, MachineProfile, MoshiSpec};
use super::engine_figures as fig;
use crate::cli::RunArgs;
use crate::models::llm::gguf::{self, GgufLlmOptions};
use crate::models::moshi::discovery::{find_in_hf_cache, find_snapshot};
use crate::models::moshi::{checkpoint, sizing, DeviceChoice, Discovery};
use crate::models::speech::files::stt_complete;
use std::path::Path;

/// The profile for a run with these arguments, looking where that run would look.
pub fn read(args: &RunArgs, disc: &Discovery) -> MachineProfile {
    let mut sys = sysinfo::System::new();
    sys.refresh_memory();
    let (gpus, gpu_note) = gpus(args.model.device, sys.available_memory());
    MachineProfile {
        gpus,
        gpu_note,
        cpu_cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
        ram_available: sys.available_memory(),
        ram_total: sys.total_memory(),
        moshi: moshi_on_disk(disc).unwrap_or_else(MoshiSpec::moshiko_q8),
        cascade: cascade_on_disk(args, disc),
        server: args.connect.clone(),
        max_memory: args
            .model
            .max_memory
            .map(|g| (g * (1u64 << 30) as f64) as u64),
        downloads: disc.endpoint.is_some() && disc.hf_cache.is_some(),
    }
}

/// The GPUs `--device` allows, with their free memory; and a GPU seen that this build
/// cannot use.
fn gpus(choice: DeviceChoice, ram_available: u64) -> (Vec<Gpu>, Option<String>) {
    use moshi::candle::utils::{cuda_is_available, metal_is_available};
    use moshi::candle::Device;
    let mut out = Vec::new();
    let indices: Vec<usize> = match choice {
        DeviceChoice::Cpu => return (out, Some("--device cpu".into())),
        DeviceChoice::Cuda(n) => vec![n],
        DeviceChoice::Auto => (0..16).collect(),
        DeviceChoice::Metal => vec![],
    };
    if cuda_is_available() && choice != DeviceChoice::Metal {
        for i in indices {
            let Ok(device) = Device::new_cuda(i) else {
                break;
            };
            if let Some(free) = sizing::free_memory(&device) {
                out.push(Gpu {
                    device: format!("cuda:{i}"),
                    kind: GpuKind::Cuda,
                    free,
                    total: None,
                });
            }
        }
    }
    if out.is_empty()
        && metal_is_available()
        && matches!(choice, DeviceChoice::Auto | DeviceChoice::Metal)
        && Device::new_metal(0).is_ok()
    {
        // Unified memory: what the system has available is what the GPU can take.
        out.push(Gpu {
            device: "metal".into(),
            kind: GpuKind::Metal,
            free: ram_available,
            total: None,
        });
    }
    let note = match crate::models::moshi::device::gpu_memory() {
        Ok((_, total)) if out.is_empty() => Some(format!(
            "an NVIDIA GPU ({}) this build cannot use (build with --features cuda)",
            super::engine_choice::size(total)
        )),
        _ => None,
    };
    (out, note)
}

/// A Moshi-family checkpoint in the Hugging Face cache, sized from its own config.
fn moshi_on_disk(disc: &Discovery) -> Option<MoshiSpec> {
    let cache = disc.hf_cache.as_deref()?;
    let dir = [crate::bus::MOSHIKO, crate::bus::MOSHIKA]
        .iter()
        .find_map(|repo| find_in_hf_cache(cache, repo))?;
    let ck = checkpoint::inspect(&dir).ok()?;
    let cfg = ck.config.lm.clone();
    let table = sizing::census(&cfg, ck.quantized, if ck.quantized { 4 } else { 2 }).ok()?;
    let params: u64 = table.iter().map(|t| t.elems).sum();
    let family = if crate::models::moshi::personaplex::model::is_personaplex(&cfg) {
        "PersonaPlex"
    } else {
        "Moshi"
    };
    let size = if params >= 1_000_000_000 {
        format!("{:.0}B", params as f64 / 1e9)
    } else {
        format!("{:.0}M", params as f64 / 1e6)
    };
    Some(MoshiSpec {
        label: if ck.quantized {
            format!("{family} {size} q8")
        } else {
            format!("{family} {size}")
        },
        mimi_bytes: sizing::mimi_bytes(&ck.config.mimi).unwrap_or(0),
        real_size_mimi: !dir
            .join(crate::models::moshi::config::MIMI_CONFIG_FILE)
            .is_file(),
        cfg,
        table,
        quantized: ck.quantized,
        on_disk: Some(dir),
        download: 0,
    })
}

/// A Pocket TTS snapshot: its weights and tokenizer at the top or under `languages/*/`.
pub fn pocket_complete(dir: &Path) -> bool {
    use crate::models::speech::tts::pocket::files::complete;
    // A model directory, or a snapshot of the repository with one under languages/.
    complete(dir)
        || std::fs::read_dir(dir.join("languages"))
            .is_ok_and(|langs| langs.filter_map(|e| e.ok()).any(|e| complete(&e.path())))
}

/// The CPU cascade's parts that are here: the flags' files, then the cache.
fn cascade_on_disk(args: &RunArgs, disc: &Discovery) -> CascadeOnDisk {
    let c = &args.cascade;
    let cache = disc.hf_cache.as_deref();
    let in_cache = |repo: &str, complete: &dyn Fn(&Path) -> bool| {
        cache.is_some_and(|cache| find_snapshot(cache, repo, complete).is_some())
    };
    let llm = GgufLlmOptions {
        gguf: c.llm_gguf.clone(),
        ..Default::default()
    };
    CascadeOnDisk {
        stt: match &c.stt_model_dir {
            Some(d) => stt_complete(d),
            None => in_cache(c.stt_repo(), &stt_complete),
        },
        // A server LLM needs nothing here.
        llm: c.llm_url.is_some() || gguf::find_gguf(&llm, cache).is_some_and(|p| p.is_file()),
        tts: match &c.tts_model_dir {
            Some(d) => pocket_complete(d),
            None => in_cache(fig::POCKET_TTS_REPO, &pocket_complete),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn snapshot(cache: &Path, repo: &str, files: &[&str]) -> std::path::PathBuf {
        let root = cache.join(format!("models--{}", repo.replace('/', "--")));
        let snap = root.join("snapshots/abc");
        for f in files {
            let path = snap.join(f);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, b"x").unwrap();
        }
        std::fs::create_dir_all(root.join("refs")).unwrap();
        std::fs::write(root.join("refs/main"), "abc").unwrap();
        snap
    }

    /// The cache is read as a run reads it: each part by its own layout.
    #[test]
    fn finds_what_the_cache_holds() {
        let tmp = tempfile::tempdir().unwrap();
        let disc = Discovery {
            hf_cache: Some(tmp.path().to_path_buf()),
            endpoint: None,
            ..Default::default()
        };
        let args = crate::cli::Cli::parse_from(["assistant", "--device", "cpu"]).run;
        let p = read(&args, &disc);
        assert_eq!(p.cascade, CascadeOnDisk::default());
        assert!(p.moshi.on_disk.is_none() && p.moshi.label == "Moshi 7B q8");
        assert!(p.gpus.is_empty() && p.gpu_note.as_deref() == Some("--device cpu"));
        assert!(!p.downloads, "no endpoint: nothing can be fetched");

        snapshot(tmp.path(), gguf::DEFAULT_REPO, &[gguf::DEFAULT_FILE]);
        snapshot(
            tmp.path(),
            fig::POCKET_TTS_REPO,
            &[
                "languages/english/model.safetensors",
                "languages/english/tokenizer.model",
            ],
        );
        // A Moshi checkpoint (the demo's size, q8) where the default download goes.
        let root = tmp.path().join("models--kyutai--moshiko-candle-q8");
        crate::models::moshi::export::write_demo(
            &root.join("snapshots/abc"),
            crate::models::moshi::LmFormat::Q8,
        )
        .unwrap();
        std::fs::create_dir_all(root.join("refs")).unwrap();
        std::fs::write(root.join("refs/main"), "abc").unwrap();

        let p = read(&args, &disc);
        assert_eq!(
            p.cascade,
            CascadeOnDisk {
                stt: false,
                llm: true,
                tts: true
            }
        );
        assert_eq!(p.moshi.on_disk, Some(root.join("snapshots/abc")));
        assert!(
            p.moshi.label.starts_with("Moshi ") && p.moshi.label.ends_with("M q8"),
            "{}",
            p.moshi.label
        );
        // Sized from its own config: a small model, which even a CPU runs in time.
        let d = crate::app::engine_choice::choose(&p);
        assert!(
            d.option(crate::app::engine_choice::Pick::MoshiGpu)
                .realtime(),
            "{d:?}"
        );
    }
}
