//! The wake word: the spotter over espeak-ng names in other speech and noise (the
//! fixture script, seeded), the gate through the binary (nothing before the name
//! reaches the model, quiet closes it again), the takes' checks, and the TUI's side
//! (the header, `w`, another persona's name switching to it).

use crate::common;
use crate::ui_support;

use assistant::bus::{EngineEvent, Happening};
use assistant::engine::Command;
use assistant::ui::state::{ConvState, Effect};
use common::{assistant, read_mono};
use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use std::path::{Path, PathBuf};
use std::process::Command as Process;
use ui_support::*;

fn key(code: KeyCode) -> assistant::ui::AppEvent {
    assistant::ui::AppEvent::Key(KeyEvent::new(code, KeyModifiers::NONE))
}

fn have(tool: &str, arg: &str) -> bool {
    Process::new(tool)
        .arg(arg)
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Skips a test whose tools are missing on a developer's machine; in CI (`CI` set),
/// where `./dev test` installs them, a missing tool fails instead of passing unseen.
fn missing(what: &str) -> Option<serde_json::Value> {
    assert!(
        std::env::var_os("CI").is_none(),
        "{what} missing in CI: ./dev test installs it"
    );
    eprintln!("SKIPPED: {what} missing (./dev test installs it)");
    None
}

/// The fixture script's output in `dir` (refs/, mix.wav, truth.json); `None` (with
/// the reason printed) where espeak-ng or numpy is missing outside CI.
fn fixtures(dir: &Path, minutes: f64, seed: u64) -> Option<serde_json::Value> {
    if !have("espeak-ng", "--version") {
        return missing("espeak-ng");
    }
    let numpy = Process::new("python3")
        .args(["-c", "import numpy"])
        .status()
        .is_ok_and(|s| s.success());
    if !numpy {
        return missing("python3 with numpy");
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tools/wake_fixtures/make.py");
    let out = Process::new("python3")
        .arg(script)
        .arg(dir)
        .args([
            "--minutes",
            &minutes.to_string(),
            "--seed",
            &seed.to_string(),
        ])
        .output()
        .expect("run make.py");
    assert!(
        out.status.success(),
        "make.py: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let truth = std::fs::read_to_string(dir.join("truth.json")).unwrap();
    Some(serde_json::from_str(&truth).unwrap())
}

struct Score {
    enrolled: (usize, usize),
    others: (usize, usize),
    wrong_name: usize,
    false_wakes: usize,
    /// Seconds from each detected name's end to the moment the spotter fired.
    latency_s: Vec<f64>,
}

/// Detections against the truth: one detection may count for one name, firing
/// between the name's start and 0.6 s after its end.
fn score(truth: &serde_json::Value, report: &serde_json::Value) -> Score {
    let dets = report["detections"].as_array().unwrap();
    let mut used = vec![false; dets.len()];
    let mut s = Score {
        enrolled: (0, 0),
        others: (0, 0),
        wrong_name: 0,
        false_wakes: 0,
        latency_s: Vec::new(),
    };
    for g in truth["names"].as_array().unwrap() {
        let (start, end) = (g["start"].as_f64().unwrap(), g["end"].as_f64().unwrap());
        let tally = if g["enrolled"].as_bool().unwrap() {
            &mut s.enrolled
        } else {
            &mut s.others
        };
        tally.1 += 1;
        let hit = dets.iter().enumerate().position(|(i, d)| {
            let at = d["at_s"].as_f64().unwrap();
            !used[i] && at >= start && at <= end + 0.6
        });
        if let Some(i) = hit {
            used[i] = true;
            if dets[i]["phrase"] == g["name"] {
                tally.0 += 1;
                s.latency_s.push(dets[i]["at_s"].as_f64().unwrap() - end);
            } else {
                s.wrong_name += 1;
            }
        }
    }
    s.false_wakes = used.iter().filter(|u| !**u).count();
    s
}

#[test]
fn the_spotter_finds_the_enrolled_names_in_other_speech_and_noise() {
    let tmp = tempfile::tempdir().unwrap();
    let Some(truth) = fixtures(tmp.path(), 4.0, 11) else {
        return;
    };
    let out = assistant(tmp.path())
        .args(["wake", "test", "--json", "--takes"])
        .arg(tmp.path().join("refs"))
        .arg(tmp.path().join("mix.wav"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let s = score(&truth, &report);
    let mut lat = s.latency_s.clone();
    lat.sort_by(f64::total_cmp);
    eprintln!(
        "enrolled {}/{}, not enrolled {}/{}, wrong name {}, false wakes {} in 4 min, latency p50 {:.0} ms",
        s.enrolled.0,
        s.enrolled.1,
        s.others.0,
        s.others.1,
        s.wrong_name,
        s.false_wakes,
        lat.get(lat.len() / 2).copied().unwrap_or(0.0) * 1000.0
    );
    assert!(
        s.enrolled.1 >= 15,
        "the fixture says enough names: {}",
        s.enrolled.1
    );
    // docs/wake-word.md's figures come from 25 minutes over four seeds and 25 held-out
    // minutes over five (98 % detected, no false wake). The bounds leave room for a
    // few more misses and one false wake.
    assert!(
        s.enrolled.0 * 100 >= s.enrolled.1 * 80,
        "enrolled names detected: {}/{}",
        s.enrolled.0,
        s.enrolled.1
    );
    assert!(s.false_wakes <= 1, "false wakes: {}", s.false_wakes);
    assert!(s.wrong_name <= 1, "wrong names: {}", s.wrong_name);
    // It fires as the name ends, not a window later.
    assert!(lat.iter().all(|l| *l < 0.5), "{lat:?}");
}

fn espeak(text: &str, speed: u32, path: &Path) {
    let ok = Process::new("espeak-ng")
        .args(["-v", "en-us", "-s", &speed.to_string(), "-w"])
        .arg(path)
        .arg(text)
        .status()
        .unwrap()
        .success();
    assert!(ok);
}

fn mono_24k(path: &Path) -> Vec<f32> {
    assistant::audio::wake::takes::read_mono_24k(path).unwrap()
}

fn rms(x: &[f64]) -> f64 {
    (x.iter().map(|v| v * v).sum::<f64>() / x.len().max(1) as f64).sqrt()
}

/// Through the binary with the loopback engine (what it hears, it plays one frame
/// later): speech before the name comes out as silence; after "jarvis" the speech comes
/// through; after the quiet time the gate is shut again and a hum is not heard.
#[test]
fn nothing_before_the_name_reaches_the_model_and_quiet_closes_the_gate() {
    let tmp = tempfile::tempdir().unwrap();
    if fixtures(&tmp.path().join("fx"), 0.2, 3).is_none() {
        return;
    }
    let refs = tmp.path().join("fx/refs");
    let say = |name: &str, text: &str, speed: u32| {
        let p = tmp.path().join(format!("{name}.wav"));
        espeak(text, speed, &p);
        mono_24k(&p)
    };
    let before = say(
        "before",
        "the train to the city leaves at seven fifteen",
        170,
    );
    let name = say("name", "Jarvis", 160);
    let question = say("question", "what is the weather like tomorrow", 170);
    // After the gate closes: a steady hum as loud as the speech (any sound a model
    // would hear, and nothing like a name, so no wake can reopen the gate).
    let later: Vec<f32> = (0..48_000)
        .map(|i| {
            let t = i as f32 / 24_000.0;
            0.15 * (2.0 * std::f32::consts::PI * 220.0 * t).sin()
                + 0.05 * (2.0 * std::f32::consts::PI * 1100.0 * t).sin()
        })
        .collect();
    let gap = |s: f64| vec![0f32; (s * 24_000.0) as usize];
    let mut input = Vec::new();
    let mut marks = Vec::new();
    for (part, label) in [
        (gap(0.5), ""),
        (before, "before"),
        (gap(0.8), ""),
        (name, "name"),
        (gap(0.4), ""),
        (question, "question"),
        (gap(3.5), ""),
        (later, "later"),
        (gap(0.5), ""),
    ] {
        let start = input.len();
        input.extend(part.iter().map(|s| s * 0.5));
        if !label.is_empty() {
            marks.push((label, start, input.len()));
        }
    }
    let input_path = tmp.path().join("in.wav");
    assistant::audio::wav::write_wav_mono(&input_path, 24_000, &input).unwrap();
    let out_path = tmp.path().join("out.wav");
    let out = assistant(tmp.path())
        .args([
            "--headless",
            "--engine",
            "loopback",
            "--wake",
            "--wake-quiet",
            "2",
        ])
        .arg("--wake-takes")
        .arg(&refs)
        .arg("--input")
        .arg(&input_path)
        .arg("--output")
        .arg(&out_path)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("waiting for"), "{stderr}");
    assert!(stderr.contains("heard \"jarvis\""), "{stderr}");
    let (played, rate) = read_mono(&out_path);
    assert_eq!(rate, 24_000);
    let level = |label: &str| {
        let (_, a, b) = marks.iter().find(|m| m.0 == label).unwrap();
        rms(&played[(*a).min(played.len())..(*b).min(played.len())])
    };
    let (b, q, l) = (level("before"), level("question"), level("later"));
    eprintln!("played RMS: before the name {b:.5}, the question {q:.5}, after the quiet {l:.5}");
    assert!(b < 1e-6, "speech before the name was played: {b}");
    assert!(q > 0.01, "the question after the name was not heard: {q}");
    assert!(
        l < 1e-6,
        "the gate stayed open after the quiet time: {l}\n{stderr}"
    );
    // The gate closed again, and said so.
    assert!(stderr.matches("waiting for").count() >= 2, "{stderr}");
}

#[test]
fn wake_without_takes_says_how_to_record_them() {
    let tmp = tempfile::tempdir().unwrap();
    let wav = tmp.path().join("in.wav");
    assistant::audio::wav::write_wav_mono(&wav, 24_000, &vec![0.0; 24_000]).unwrap();
    let out = assistant(tmp.path())
        .args(["--headless", "--engine", "loopback", "--wake", "--input"])
        .arg(&wav)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("assistant wake record"), "{stderr}");
    assert!(stderr.contains("\"jarvis\""), "{stderr}");
}

fn takes_in(dir: &Path, phrase: &str) -> Vec<PathBuf> {
    assistant::audio::wake::takes::take_files(dir, phrase)
}

#[test]
fn a_silent_or_broken_take_is_refused_and_nothing_is_half_added() {
    let tmp = tempfile::tempdir().unwrap();
    if !have("espeak-ng", "--version") {
        missing("espeak-ng");
        return;
    }
    let takes = tmp.path().join("takes");
    let good = tmp.path().join("good.wav");
    espeak("Friday", 170, &good);
    let silent = tmp.path().join("silent.wav");
    assistant::audio::wav::write_wav_mono(&silent, 16_000, &vec![0.0; 16_000]).unwrap();
    let broken = tmp.path().join("broken.wav");
    std::fs::write(&broken, b"RIFF\x10\x00\x00\x00WAVEfmt ").unwrap();

    for (bad, why) in [(&silent, "silent"), (&broken, "broken.wav")] {
        let out = assistant(tmp.path())
            .args(["wake", "add", "friday", "--takes"])
            .arg(&takes)
            .arg(&good)
            .arg(bad)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{stderr}");
        assert!(stderr.contains(why), "{stderr}");
        assert!(
            takes_in(&takes, "friday").is_empty(),
            "the good file was added alone"
        );
    }
    let out = assistant(tmp.path())
        .args(["wake", "add", "Friday", "--takes"])
        .arg(&takes)
        .args([&good, &good])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(takes_in(&takes, "friday").len(), 2);
    assert!(String::from_utf8_lossy(&out.stdout).contains("has 2 take(s)"));
}

/// `waiting for "Jarvis"` in the header; `w` asks the engine to switch; saying
/// another persona's name switches to that persona.
#[test]
fn the_header_waits_for_the_name_and_another_name_switches_persona() {
    let mut s = listening(false);
    let jarvis = s
        .state
        .personas
        .iter()
        .position(|p| p.name == "JARVIS")
        .unwrap();
    let hotkey = s.state.personas[jarvis].hotkey.unwrap();
    s.state.apply(key(KeyCode::F(hotkey)));
    assert_eq!(s.state.active, jarvis);
    s.send(EngineEvent::Happened(Happening::WakeWaiting {
        phrases: vec!["jarvis".into(), "friday".into()],
    }));
    assert_eq!(s.state.conv_state(), ConvState::Waiting);
    let screen = screen(draw(&mut s.state, 80, 24).backend().buffer());
    assert!(screen.contains("waiting for \"Jarvis\""), "{screen}");

    let u = s.state.apply(key(KeyCode::Char('w')));
    assert!(
        matches!(u.effect, Some(Effect::Send(Command::SetWake(false)))),
        "{:?}",
        u.effect
    );

    let u = s
        .state
        .apply(assistant::ui::AppEvent::Engine(EngineEvent::Happened(
            Happening::WakeHeard {
                phrase: "friday".into(),
                score: Some(0.7),
            },
        )));
    assert!(
        matches!(u.effect, Some(Effect::Persona(_))),
        "{:?}",
        u.effect
    );
    assert_eq!(s.state.personas[s.state.active].name, "FRIDAY");
    assert_ne!(s.state.conv_state(), ConvState::Waiting);
}

/// The settings overlay's wake rows: switching wake mode sends the same command as
/// `w`, the threshold goes to the engine at once, and both are noted for the file; an
/// engine that says wake mode is off (no takes) shows in the row.
#[test]
fn the_settings_rows_switch_wake_mode_and_its_threshold_live() {
    use assistant::ui::context::SettingsContext;
    use assistant::ui::settings_view::Current;
    let (mut ctx, clock) = context(false, ratatui::style::Color::Cyan);
    ctx.settings = Some(SettingsContext {
        current: Current {
            echo_cancel: true,
            half_duplex: false,
            push_to_talk: false,
            wake: false,
            wake_threshold: 0.77,
            temperature: 0.8,
            text_temperature: 0.7,
            top_k: 250,
            engine: "cascade".into(),
        },
        saved: Default::default(),
        path: "/tmp/config.toml".into(),
    });
    let mut s = listening_from(Scene::from_context(ctx, clock));
    s.state.apply(key(KeyCode::Char('s')));
    for _ in 0..3 {
        s.state.apply(key(KeyCode::Down));
    }
    let u = s.state.apply(key(KeyCode::Right));
    match u.effect {
        Some(Effect::Settings { saved, apply, .. }) => {
            assert!(matches!(apply, Some(Command::SetWake(true))), "{apply:?}");
            assert_eq!(saved.wake, Some(true));
        }
        other => panic!("{other:?}"),
    }
    s.state.apply(key(KeyCode::Down));
    let u = s.state.apply(key(KeyCode::Left));
    match u.effect {
        Some(Effect::Settings { saved, apply, .. }) => {
            assert!(
                matches!(apply, Some(Command::SetWakeThreshold(t)) if (t - 0.76).abs() < 1e-6),
                "{apply:?}"
            );
            assert_eq!(saved.wake_threshold, Some(0.76));
            assert_eq!(saved.wake, Some(true));
        }
        other => panic!("{other:?}"),
    }
    // The engine had no takes to listen with: the row says off again.
    s.send(EngineEvent::Happened(Happening::WakeUnavailable {
        why: "no wake phrase has takes".into(),
    }));
    let screen = screen(draw(&mut s.state, 80, 24).backend().buffer());
    assert!(screen.contains("wake word          off"), "{screen}");
    assert!(screen.contains("wake threshold     0.76"), "{screen}");
}
