//! `assistant doctor`: one report on everything `assistant` needs, with a fix
//! for each problem. Exit 0 when a conversation can run.

use crate::audio::device;
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
    fn ok(section: &'static str, text: impl Into<String>) -> Self {
        Self {
            section,
            ok: true,
            warning: false,
            text: text.into(),
            fix: None,
        }
    }
    fn warn(section: &'static str, text: impl Into<String>, fix: impl Into<String>) -> Self {
        Self {
            section,
            ok: true,
            warning: true,
            text: text.into(),
            fix: Some(fix.into()),
        }
    }
    fn problem(section: &'static str, text: impl Into<String>, fix: impl Into<String>) -> Self {
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
