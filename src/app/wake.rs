//! The wake word at the app's edge: the `assistant wake` commands (record, add, list,
//! test), and the spotter the engine's gate gets for `--wake`, built from every
//! persona's phrases so that saying another persona's name switches to it.

use crate::audio::wake::{self, takes, Spotter};
use crate::cli::{RunArgs, WakeArgs, WakeCmd};
use crate::engine::wake_gate::WakeOptions;
use crate::persona::{Catalog, Persona};
use std::path::PathBuf;

fn takes_dir(explicit: Option<&PathBuf>) -> Result<PathBuf, String> {
    explicit
        .cloned()
        .or_else(takes::default_dir)
        .ok_or_else(|| {
            "no config directory for the takes: set XDG_CONFIG_HOME or pass --takes DIR".into()
        })
}

/// Every phrase of these personas, once each, in order.
pub fn phrases(personas: &[Persona]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for p in personas.iter().flat_map(|p| &p.wake) {
        if !out.contains(p) {
            out.push(p.clone());
        }
    }
    out
}

/// The persona a heard phrase belongs to (the first that lists it).
pub fn persona_for<'a>(personas: &'a [Persona], phrase: &str) -> Option<&'a Persona> {
    personas.iter().find(|p| p.wake.iter().any(|w| w == phrase))
}

/// What the engine's gate needs, when there are takes (or the cascade, whose
/// recogniser's words are a second path, and the only one without takes). `--wake`
/// without any take is otherwise an error that says how to record them; without
/// `--wake` the gate is still installed (off) when it could hear something, so `w`
/// can switch it on. Warnings name takes that could not be used and phrases with
/// none.
pub fn gate_options(
    args: &RunArgs,
    personas: &[Persona],
) -> Result<(Option<WakeOptions>, Vec<String>), String> {
    // Wake mode from the settings file, with nothing recorded, warns instead.
    let required = args.wake && !args.wake_saved;
    let words = args.engine == crate::cli::EngineKind::Cascade && args.connect.is_none();
    let all = phrases(personas);
    let (dir, loaded) = match takes_dir(args.wake_takes.as_ref()) {
        Ok(d) => {
            let loaded = takes::load(&d, &all);
            (d, loaded)
        }
        Err(e) if required && !words => return Err(e),
        Err(_) if !words => return Ok((None, Vec::new())),
        Err(_) => (
            PathBuf::new(),
            takes::Loaded {
                templates: Vec::new(),
                missing: all.clone(),
                bad: Vec::new(),
            },
        ),
    };
    let mut warnings = loaded.bad.clone();
    if loaded.templates.is_empty() && words {
        if args.wake {
            warnings.push(format!(
                "no takes of {}: only the recogniser's words wake it, a second or so after the name (assistant wake record NAME for the spotter)",
                crate::ui::words::quoted_list(&all)
            ));
        }
    } else if loaded.templates.is_empty() {
        if !args.wake {
            return Ok((None, warnings));
        }
        if !required {
            warnings.push(format!(
                "wake mode is on in the settings, but {} has no takes: record them with `assistant wake record NAME`",
                dir.display()
            ));
            return Ok((None, warnings));
        }
        let first = all.first().cloned().unwrap_or_else(|| "jarvis".into());
        let mut msg = format!(
            "--wake: no takes of {} in {}; record three of your voice: assistant wake record {}",
            crate::ui::words::quoted_list(&all),
            dir.display(),
            shell_word(&first)
        );
        if !warnings.is_empty() {
            msg.push_str(&format!(" (unusable: {})", warnings.join("; ")));
        }
        return Err(msg);
    }
    if args.wake && !loaded.missing.is_empty() && !loaded.templates.is_empty() {
        warnings.push(format!(
            "no takes of {}: those names do not wake it (assistant wake record NAME)",
            crate::ui::words::quoted_list(&loaded.missing)
        ));
    }
    let threshold = args.wake_threshold.unwrap_or(wake::DEFAULT_THRESHOLD);
    if !(0.0..=1.0).contains(&threshold) {
        return Err(format!(
            "--wake-threshold {threshold} is not between 0 and 1"
        ));
    }
    if !(args.wake_quiet > 0.0 && args.wake_quiet <= 600.0) {
        return Err(format!(
            "--wake-quiet {} must be between 0 and 600 seconds",
            args.wake_quiet
        ));
    }
    let mut spotter = Spotter::new(loaded.templates, threshold);
    if let Some(p) = args
        .persona
        .as_deref()
        .and_then(|name| personas.iter().find(|p| p.name.eq_ignore_ascii_case(name)))
    {
        spotter.active = p.wake.clone();
    }
    Ok((
        Some(WakeOptions {
            spotter,
            phrases: all,
            enabled: args.wake,
            quiet_s: args.wake_quiet,
        }),
        warnings,
    ))
}

fn shell_word(s: &str) -> String {
    if s.contains(' ') {
        format!("\"{s}\"")
    } else {
        s.to_string()
    }
}

/// `assistant wake …`; returns the exit code.
pub fn run(run: &RunArgs, args: &WakeArgs) -> i32 {
    let dir = match takes_dir(args.takes.as_ref().or(run.wake_takes.as_ref())) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("error: {e}");
            return 2;
        }
    };
    let result = match &args.command {
        WakeCmd::Add { phrase, files } => add(&dir, phrase, files),
        WakeCmd::Record {
            phrase,
            count,
            seconds,
        } => record(run, &dir, phrase, *count, *seconds),
        WakeCmd::List => list(&dir),
        WakeCmd::Test {
            file,
            persona,
            threshold,
            json,
        } => test(&dir, file, persona.as_deref(), *threshold, *json),
    };
    match result {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("error: {e:#}");
            2
        }
    }
}

fn add(dir: &std::path::Path, phrase: &str, files: &[PathBuf]) -> anyhow::Result<()> {
    // Check every file before storing any, so a bad one leaves nothing half-added.
    let mut clips = Vec::new();
    for f in files {
        let s = takes::read_mono_24k(f)?;
        wake::Template::from_take(phrase, &s)
            .map_err(|e| anyhow::anyhow!("{}: {e}", f.display()))?;
        clips.push(s);
    }
    for s in clips {
        let path = takes::save(dir, phrase, &s)?;
        println!("saved {}", path.display());
    }
    let n = takes::take_files(dir, phrase).len();
    println!("\"{phrase}\" has {n} take(s)");
    Ok(())
}

fn record(
    run: &RunArgs,
    dir: &std::path::Path,
    phrase: &str,
    count: usize,
    seconds: f64,
) -> anyhow::Result<()> {
    use ringbuf::traits::{Consumer, Observer};
    if !(0.5..=10.0).contains(&seconds) || !(1..=10).contains(&count) {
        anyhow::bail!("--seconds must be 0.5..10 and --count 1..10");
    }
    takes::folder_name(phrase)
        .ok_or_else(|| anyhow::anyhow!("{phrase:?} has no letters or digits"))?;
    let meters = std::sync::Arc::new(crate::audio::meters::Meters::default());
    let (stream, mut cons) =
        crate::audio::device::open_input(run.input_device.as_deref(), meters, seconds as f32 + 1.0)
            .map_err(|e| {
                anyhow::anyhow!(
                    "{e}; pick a microphone with --input-device (see `assistant devices`), or add recordings with `assistant wake add`"
                )
            })?;
    let format = stream.format;
    println!(
        "recording from {} ({} Hz): say \"{phrase}\" once in each take, as you would to wake it",
        stream.name, format.sample_rate
    );
    let mut saved = 0;
    let mut attempt = 0;
    while saved < count && attempt < count + 3 {
        attempt += 1;
        println!("take {} of {count}: speak after the beep… ", saved + 1);
        std::thread::sleep(std::time::Duration::from_millis(400));
        cons.clear();
        let want = (seconds * format.sample_rate as f64) as usize * format.channels as usize;
        let mut raw = Vec::with_capacity(want);
        let start = std::time::Instant::now();
        while raw.len() < want && start.elapsed().as_secs_f64() < seconds + 2.0 {
            let n = cons.occupied_len();
            raw.extend(cons.pop_iter().take(n));
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        let mut mono = Vec::new();
        crate::audio::resample::downmix_into(&raw, format.channels as usize, &mut mono);
        let clip = resample_to_24k(&mono, format.sample_rate)?;
        match takes::save(dir, phrase, &clip) {
            Ok(p) => {
                saved += 1;
                println!("  saved {}", p.display());
            }
            Err(e) => println!("  not kept: {e:#}; try again"),
        }
    }
    drop(stream);
    if saved < count {
        anyhow::bail!("only {saved} of {count} takes were usable");
    }
    println!("done: `assistant --wake` now answers to \"{phrase}\"; `assistant wake test FILE.wav` tunes it");
    Ok(())
}

fn resample_to_24k(mono: &[f32], rate: u32) -> anyhow::Result<Vec<f32>> {
    if rate == wake::features::RATE {
        return Ok(mono.to_vec());
    }
    let mut r = crate::audio::resample::StreamResampler::new(rate, wake::features::RATE, 480)?;
    r.push(mono);
    r.flush();
    let mut out = vec![0.0; r.available()];
    let n = r.pop(&mut out);
    out.truncate(n);
    Ok(out)
}

fn list(dir: &std::path::Path) -> anyhow::Result<()> {
    let catalog = Catalog::load();
    println!("takes in {}", dir.display());
    for p in &catalog.personas {
        let each: Vec<String> = p
            .wake
            .iter()
            .map(|w| format!("\"{w}\" ({} takes)", takes::take_files(dir, w).len()))
            .collect();
        println!("  {:<10} {}", p.name, each.join(", "));
    }
    Ok(())
}

#[derive(serde::Serialize)]
struct TestReport {
    file: String,
    seconds: f64,
    threshold: f32,
    phrases: Vec<String>,
    detections: Vec<TestDetection>,
    /// Each phrase's best score over the whole file (how close the misses came).
    best: Vec<(String, f32)>,
}

#[derive(serde::Serialize)]
struct TestDetection {
    /// Seconds from the file's start to the end of the phrase.
    end_s: f64,
    /// Seconds from the file's start to the moment the spotter fired.
    at_s: f64,
    phrase: String,
    persona: Option<String>,
    score: f32,
}

fn test(
    dir: &std::path::Path,
    file: &std::path::Path,
    persona: Option<&str>,
    threshold: Option<f32>,
    json: bool,
) -> anyhow::Result<()> {
    let catalog = Catalog::load();
    let personas: Vec<Persona> = match persona {
        None => catalog.personas.clone(),
        Some(name) => vec![catalog
            .personas
            .iter()
            .find(|p| p.name.eq_ignore_ascii_case(name))
            .cloned()
            .ok_or_else(|| {
                anyhow::anyhow!("no persona named {name:?} (see `assistant personas`)")
            })?],
    };
    let all = phrases(&personas);
    let loaded = takes::load(dir, &all);
    for b in &loaded.bad {
        eprintln!("warning: {b}");
    }
    if loaded.templates.is_empty() {
        anyhow::bail!(
            "no takes of {} in {}: record them with `assistant wake record NAME`",
            crate::ui::words::quoted_list(&all),
            dir.display()
        );
    }
    let threshold = threshold.unwrap_or(wake::DEFAULT_THRESHOLD);
    let samples = takes::read_mono_24k(file)?;
    let mut spotter = Spotter::new(loaded.templates, threshold);
    let rate = wake::features::RATE as f64;
    let mut detections = Vec::new();
    let mut found = Vec::new();
    let mut best: Vec<(String, f32)> = Vec::new();
    // 80 ms at a time, as the engine feeds it.
    let mut fed = 0usize;
    for chunk in samples.chunks(1920) {
        spotter.push(chunk, &mut found);
        fed += chunk.len();
        for d in found.drain(..) {
            detections.push(TestDetection {
                end_s: d.end_sample as f64 / rate,
                at_s: fed as f64 / rate,
                persona: persona_for(&personas, &d.name).map(|p| p.name.clone()),
                phrase: d.name,
                score: d.score,
            });
        }
        for (n, s) in spotter.take_best() {
            match best.iter_mut().find(|b| b.0 == n) {
                Some(b) => b.1 = b.1.max(s),
                None => best.push((n, s)),
            }
        }
    }
    let report = TestReport {
        file: file.display().to_string(),
        seconds: samples.len() as f64 / rate,
        threshold,
        phrases: spotter.names(),
        detections,
        best,
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(());
    }
    println!(
        "{}: {:.1} s, threshold {:.2}, {} detection(s)",
        report.file,
        report.seconds,
        threshold,
        report.detections.len()
    );
    for d in &report.detections {
        println!(
            "  {:>8.2} s  \"{}\"{}  score {:.2}",
            d.end_s,
            d.phrase,
            d.persona
                .as_ref()
                .map(|p| format!(" ({p})"))
                .unwrap_or_default(),
            d.score
        );
    }
    let misses: Vec<String> = report
        .best
        .iter()
        .map(|(n, s)| format!("\"{n}\" {s:.2}"))
        .collect();
    println!("best score of each phrase: {}", misses.join(", "));
    Ok(())
}
