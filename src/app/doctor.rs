//! `assistant doctor`: one report on everything `assistant` needs, with a fix
//! for each problem. Exit 0 when a conversation can run.

use crate::audio::device;
use crate::bus::Bytes;
use crate::models::moshi::{WeightsFinding, WeightsOrigin, WeightsReport};
use std::fmt::Write as _;
use std::path::Path;

/// One finding: `ok` false is a problem that stops the main job; warnings don't.
#[derive(Debug, Clone)]
pub struct Finding {
    pub section: &'static str,
    pub ok: bool,
    pub warning: bool,
    pub text: String,
    pub fix: Option<String>,
}

impl Finding {
    pub(crate) fn ok(section: &'static str, text: impl Into<String>) -> Self {
        Self {
            section,
            ok: true,
            warning: false,
            text: text.into(),
            fix: None,
        }
    }
    pub(crate) fn warn(
        section: &'static str,
        text: impl Into<String>,
        fix: impl Into<String>,
    ) -> Self {
        Self {
            section,
            ok: true,
            warning: true,
            text: text.into(),
            fix: Some(fix.into()),
        }
    }
    pub(crate) fn problem(
        section: &'static str,
        text: impl Into<String>,
        fix: impl Into<String>,
    ) -> Self {
        Self {
            section,
            ok: false,
            warning: false,
            text: text.into(),
            fix: Some(fix.into()),
        }
    }
}

fn audio() -> Vec<Finding> {
    let mut f = Vec::new();
    let meters = std::sync::Arc::new(crate::audio::meters::Meters::default());
    match device::open_input(None, meters.clone(), 0.5) {
        Ok((s, _)) => f.push(Finding::ok("audio", format!("microphone: {} ({} Hz, {} ch)", s.name, s.format.sample_rate, s.format.channels))),
        Err(e) => f.push(Finding::problem("audio", format!("no microphone: {e}"), "connect a microphone (check `assistant devices`), or talk from a recording with --input FILE.wav")),
    }
    match device::open_output(None, meters, 0.5) {
        Ok((s, _)) => f.push(Finding::ok(
            "audio",
            format!(
                "speaker: {} ({} Hz, {} ch)",
                s.name, s.format.sample_rate, s.format.channels
            ),
        )),
        Err(e) => f.push(Finding::warn(
            "audio",
            format!("no speaker: {e}"),
            "connect headphones or speakers, or keep replies with --output FILE.wav",
        )),
    }
    f
}

fn backends() -> Vec<Finding> {
    let mut f = vec![Finding::ok("compute", "CPU backend: compiled, present")];
    let cuda_compiled = cfg!(feature = "cuda");
    let cuda_present = moshi::candle::utils::cuda_is_available();
    f.push(match (cuda_compiled, cuda_present) {
        (true, true) => Finding::ok("compute", "CUDA backend: compiled, GPU present"),
        (true, false) => Finding::warn(
            "compute",
            "CUDA backend: compiled, but no usable GPU found",
            "check the NVIDIA driver with nvidia-smi",
        ),
        (false, _) => Finding::ok(
            "compute",
            "CUDA backend: not compiled (build with --features cuda on an NVIDIA machine)",
        ),
    });
    let metal_compiled = cfg!(feature = "metal");
    let metal_present = moshi::candle::utils::metal_is_available();
    f.push(match (metal_compiled, metal_present) {
        (true, true) => Finding::ok("compute", "Metal backend: compiled, GPU present"),
        (true, false) => Finding::warn(
            "compute",
            "Metal backend: compiled, but no Metal device found",
            "Metal needs Apple silicon or a Metal-capable Mac",
        ),
        (false, _) => Finding::ok(
            "compute",
            "Metal backend: not compiled (build with --features metal on a Mac)",
        ),
    });
    f
}

fn memory() -> Vec<Finding> {
    let mut sys = sysinfo::System::new();
    sys.refresh_memory();
    let gib = |b: u64| b as f64 / (1u64 << 30) as f64;
    let avail = sys.available_memory();
    let text = format!(
        "memory: {:.1} GiB available of {:.1} GiB",
        gib(avail),
        gib(sys.total_memory())
    );
    // The demo model needs little; the 7B q8 model needs about 8 GiB.
    if avail < 1 << 30 {
        vec![Finding::problem(
            "memory",
            text,
            "close other programs: less than 1 GiB is free",
        )]
    } else if avail < 9 << 30 {
        vec![Finding::warn(
            "memory",
            text,
            "the 7B model needs about 8 GiB; the demo model runs anywhere",
        )]
    } else {
        vec![Finding::ok("memory", text)]
    }
}

/// Can files be created in `dir`? `shown` is what the user is told about.
fn writable_dir(section: &'static str, what: &str, dir: &Path, shown: &Path) -> Finding {
    let probe = dir.join(".assistant-doctor-probe");
    let res = std::fs::create_dir_all(dir)
        .and_then(|_| std::fs::write(&probe, b"ok"))
        .and_then(|_| std::fs::remove_file(&probe));
    match res {
        Ok(()) => Finding::ok(section, format!("{what}: {}", shown.display())),
        Err(e) => Finding::warn(
            section,
            format!("{what}: {} is not writable ({e})", dir.display()),
            format!(
                "make {} writable, or point XDG_STATE_HOME / XDG_DATA_HOME elsewhere",
                dir.display()
            ),
        ),
    }
}

/// Gather every finding. `extra` lets other parts (weights, personas) add theirs.
pub fn findings(extra: Vec<Finding>) -> Vec<Finding> {
    let mut all = audio();
    all.extend(backends());
    all.extend(memory());
    all.extend(extra);
    let log = crate::telemetry::default_log_path();
    all.push(writable_dir(
        "files",
        "log file",
        log.parent().unwrap_or(&log),
        &log,
    ));
    let journal = crate::session::sessions_dir();
    all.push(writable_dir(
        "files",
        "session journals",
        &journal,
        &journal,
    ));
    all
}

/// The report as text, and the exit code (0: a conversation can run).
pub fn report(findings: &[Finding]) -> (String, i32) {
    let mut out = String::new();
    let mut section = "";
    for f in findings {
        if f.section != section {
            section = f.section;
            let _ = writeln!(out, "\n{section}");
        }
        let mark = if !f.ok {
            "FAIL"
        } else if f.warning {
            "warn"
        } else {
            " ok "
        };
        let _ = writeln!(out, "  [{mark}] {}", f.text);
        if let Some(fix) = &f.fix {
            let _ = writeln!(out, "         fix: {fix}");
        }
    }
    let problems = findings.iter().filter(|f| !f.ok).count();
    let warnings = findings.iter().filter(|f| f.warning).count();
    if problems == 0 {
        let _ = writeln!(out, "\nready: assistant can run ({warnings} warning(s)).");
        (out, 0)
    } else {
        let _ = writeln!(
            out,
            "\nnot ready: {problems} problem(s), {warnings} warning(s); apply the fixes above."
        );
        (out, 1)
    }
}

/// The model's findings: the GPU's memory (in the memory section), then the weights.
pub fn weights(report: &WeightsReport) -> Vec<Finding> {
    let gpu = match report.gpu_memory {
        Ok((used, total)) => format!("GPU memory: {} used of {}", Bytes(used), Bytes(total)),
        Err(ref why) => format!("GPU memory: {why}"),
    };
    let mut out = vec![Finding::ok("memory", gpu)];
    out.extend(report.findings.iter().map(weights_finding));
    out
}

fn weights_finding(f: &WeightsFinding) -> Finding {
    const W: &str = "weights";
    let note = |text: String| Finding {
        section: W,
        ok: true,
        warning: true,
        text,
        fix: None,
    };
    match f {
        WeightsFinding::Demo => {
            Finding::ok(W, "--demo: the built-in demo model (no weights needed)")
        }
        WeightsFinding::Found {
            origin,
            dir,
            lm_file,
            lm_bytes,
        } => {
            let origin = match origin {
                WeightsOrigin::ModelDir => "--model-dir".to_string(),
                WeightsOrigin::HfCache { repo } => format!("{repo} in the Hugging Face cache"),
            };
            Finding::ok(
                W,
                format!(
                    "{origin}: {} ({}, {})",
                    dir.display(),
                    lm_file.as_deref().unwrap_or("?"),
                    Bytes(*lm_bytes)
                ),
            )
        }
        WeightsFinding::Unusable { dir, error, remedy } => {
            Finding::problem(W, format!("--model-dir {}: {error}", dir.display()), remedy)
        }
        WeightsFinding::Fits { device, plan } => {
            let moved = plan.placement.host_layers;
            let text = format!(
                "fits {device}: context {} steps ({:.0} s){}; {}",
                plan.context,
                plan.context as f64 * 0.08,
                if moved > 0 {
                    format!(", {moved} of {} layers on the CPU", plan.layers)
                } else {
                    String::new()
                },
                plan.explain()
            );
            if moved > 0 {
                Finding::warn(
                    W,
                    text,
                    "free memory on the device to keep every layer on it",
                )
            } else {
                Finding::ok(W, text)
            }
        }
        WeightsFinding::PersonaPlex {
            slices,
            voices_dir,
            voices,
        } => {
            let text = format!(
                "PersonaPlex: takes a role text and a voice ({slices} depformer slices); voices in {}: {}",
                voices_dir.display(),
                if voices.is_empty() {
                    "none".to_string()
                } else {
                    voices.join(", ")
                }
            );
            if voices.is_empty() {
                Finding::warn(
                    W,
                    text,
                    format!(
                        "unpack NVIDIA's voices.tgz (nvidia/personaplex-7b-v1) there (tar xzf voices.tgz -C {}) or pass --voices-dir; a persona may also name a WAV",
                        voices_dir.parent().map_or(voices_dir.clone(), |p| p.to_path_buf()).display()
                    ),
                )
            } else {
                Finding::ok(W, text)
            }
        }
        WeightsFinding::FitUnknown { device } => note(format!(
            "fit on {device} unknown: its free memory cannot be read"
        )),
        WeightsFinding::CpuInstead { error, remedy } => Finding::warn(
            W,
            format!("{error}; it would run on the CPU instead"),
            remedy,
        ),
        WeightsFinding::DoesNotFit {
            error,
            cpu_error,
            remedy,
        } => Finding::problem(
            W,
            match cpu_error {
                Some(cpu) => format!("{error}; and on the CPU: {cpu}"),
                None => error.clone(),
            },
            remedy,
        ),
        WeightsFinding::NotCached {
            repo,
            cache,
            endpoint,
        } => {
            let text = match (cache, endpoint) {
                (Some(c), Some(e)) => format!(
                    "{repo} is not in the Hugging Face cache ({}): a run with --engine moshi downloads it from {e}, or uses the demo model when that fails",
                    c.display()
                ),
                (Some(c), None) => format!(
                    "{repo} is not in the Hugging Face cache ({}): a run with --engine moshi uses the demo model",
                    c.display()
                ),
                (None, _) => format!(
                    "no Hugging Face cache (set HF_HOME): {repo} cannot be found or downloaded; a run with --engine moshi uses the demo model"
                ),
            };
            Finding::warn(
                W,
                text,
                format!("run `assistant --engine moshi` once on a networked machine to download {repo}, or pass --model-dir DIR"),
            )
        }
    }
}

/// Which engine a run without an engine flag would pick on this machine, and why.
pub fn engine(args: &crate::cli::RunArgs) -> Vec<Finding> {
    const E: &str = "engine";
    let disc = crate::models::moshi::Discovery::from_env();
    let d = super::engine_choice::choose(&super::machine_profile::read(args, &disc));
    let mut out = vec![if d.needs_download() {
        Finding::warn(
            E,
            d.line(),
            "the first `assistant` asks which engine to download; headless, name one: --engine cascade, --engine moshi, --connect URL or --demo",
        )
    } else {
        Finding::ok(E, d.line())
    }];
    out.push(Finding::ok(E, d.tools_line()));
    if !args.auto_engine {
        out.push(Finding::ok(
            E,
            "the command line names an engine: a run with it uses that one",
        ));
    }
    out
}

/// One finding per persona file: valid, or the located error and its hint.
pub fn persona_findings(catalog: &crate::persona::Catalog) -> Vec<Finding> {
    catalog
        .entries
        .iter()
        .map(|e| match &e.error {
            None => Finding::ok(
                "personas",
                format!(
                    "{} ({}): {}",
                    e.name.as_deref().unwrap_or("?"),
                    crate::persona::hotkey_label(e.hotkey),
                    e.source.describe()
                ),
            ),
            Some(err) => Finding::warn(
                "personas",
                format!(
                    "skipped {}:{}:{}: {}",
                    err.file, err.line, err.column, err.message
                ),
                err.hint.clone(),
            ),
        })
        .collect()
}

/// `doctor --engine cascade`: where each part loads from, and their memory together.
pub fn cascade(report: &crate::engine::cascade::report::CascadeReport) -> Vec<Finding> {
    use crate::engine::cascade::report::PartSource;
    const C: &str = "cascade";
    let part = |name: &str, p: &PartSource| {
        match p {
        PartSource::Found {
            path,
            memory: Ok(m),
        } => Finding::ok(C, format!("{name}: {} (about {} in memory)", path.display(), Bytes(*m))),
        PartSource::Found {
            path,
            memory: Err(e),
        } => Finding::problem(
            C,
            format!("{name}: {} cannot be read: {e}", path.display()),
            "download it again, or point the flag at a complete copy",
        ),
        PartSource::Download { repo } => Finding::warn(
            C,
            format!("{name}: {repo} is not here yet"),
            "the first `assistant --engine cascade` downloads it (resumable), or give its directory",
        ),
        PartSource::Missing { what, fix } => Finding::problem(C, format!("{name}: {what}"), fix.clone()),
        PartSource::Server { url } => Finding::ok(C, format!("{name}: the server at {url} (no weights here)")),
        PartSource::Demo => Finding::ok(C, format!("{name}: --demo, the built-in tiny part")),
    }
    };
    let mut out = vec![
        part("speech-to-text", &report.stt),
        part("LLM", &report.llm),
        part("text-to-speech", &report.tts),
    ];
    if let Some(total) = report.total_memory().filter(|t| *t > 0) {
        out.push(Finding::ok(
            C,
            format!(
                "the three parts together: about {} on one device",
                Bytes(total)
            ),
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weights_findings_are_worded_with_the_one_byte_unit() {
        let data = WeightsReport {
            gpu_memory: Ok((1 << 30, 24 << 30)),
            findings: vec![
                WeightsFinding::Found {
                    origin: WeightsOrigin::HfCache {
                        repo: "kyutai/moshiko-candle-q8".into(),
                    },
                    dir: "/c/snap".into(),
                    lm_file: Some("model.q8.gguf".into()),
                    lm_bytes: 8_169_374_464,
                },
                WeightsFinding::DoesNotFit {
                    error: "out of memory on cuda:0: too big".into(),
                    cpu_error: Some("too big here too".into()),
                    remedy: "free memory".into(),
                },
            ],
        };
        let f = weights(&data);
        assert_eq!(f[0].section, "memory");
        assert_eq!(f[0].text, "GPU memory: 1.00 GiB used of 24.00 GiB");
        assert_eq!(
            f[1].text,
            "kyutai/moshiko-candle-q8 in the Hugging Face cache: /c/snap (model.q8.gguf, 7.61 GiB)"
        );
        assert!(f[1].ok && !f[1].warning);
        assert_eq!(
            f[2].text,
            "out of memory on cuda:0: too big; and on the CPU: too big here too"
        );
        assert!(!f[2].ok);
        assert_eq!(f[2].fix.as_deref(), Some("free memory"));
        let (text, code) = report(&f);
        assert_eq!(code, 1);
        assert!(
            text.contains("\nweights\n  [ ok ] kyutai/moshiko"),
            "{text}"
        );
    }
}
