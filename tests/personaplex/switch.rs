//! A persona switch mid-conversation on a real (tiny) PersonaPlex model, through the
//! engine: the new persona's prefill shows in `--dump-tokens`, phase by phase, no input
//! frame is lost, and the time from the key press to the first frame in the new voice
//! is printed (a figure for the README, not a timed assertion).

use crate::personaplex_common;
use assistant::audio::meters::Meters;
use assistant::audio::port::FilePacer;
use assistant::audio::wav::WavAudio;
use assistant::bus::{Cancel, Happening};
use assistant::engine::runner::{self, EngineSetup, Loaded};
use assistant::engine::{Command, EngineEvent};
use assistant::models::duplex::Prompt;
use assistant::models::moshi::{load_model_with, DeviceChoice, Discovery, ModelOptions};
use personaplex_common::{complete_checkpoint, fixtures, greedy};
use std::sync::Arc;
use std::time::Instant;

const FIRST: &str = "You are Moshi, a helpful and friendly voice assistant.";
const SECOND: &str = "You are JARVIS, the composed household AI of a busy engineer.";

/// Consecutive prefill lines of the dump, each block's phases run-length encoded.
fn prefill_blocks(dump: &str) -> Vec<Vec<(String, usize, Vec<u64>)>> {
    let mut blocks: Vec<Vec<(String, usize, Vec<u64>)>> = Vec::new();
    let mut in_block = false;
    for line in dump.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        if v["prefill"] == true {
            if !in_block {
                blocks.push(Vec::new());
                in_block = true;
            }
            let b = blocks.last_mut().unwrap();
            let phase = v["phase"].as_str().unwrap().to_string();
            let pos = v["position"].as_u64().unwrap();
            match b.last_mut() {
                Some((p, n, positions)) if *p == phase => {
                    *n += 1;
                    positions.push(pos);
                }
                _ => b.push((phase, 1, vec![pos])),
            }
        } else {
            in_block = false;
        }
    }
    blocks
}

#[test]
fn a_switch_shows_its_prefill_in_the_token_dump_and_loses_no_frame() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(
        fixtures().join("personaplex/model.safetensors"),
        dir.path().join("model.safetensors"),
    )
    .unwrap();
    complete_checkpoint(dir.path());
    // NVIDIA's voice file made from the fixture's voice stands in for a named voice.
    let voices = dir.path().join("voices");
    std::fs::create_dir(&voices).unwrap();
    std::fs::copy(
        fixtures().join("personaplex/voice.pt"),
        voices.join("NATM1.pt"),
    )
    .unwrap();
    let opts = ModelOptions {
        model_dir: Some(dir.path().to_path_buf()),
        device: DeviceChoice::Cpu,
        sampling: greedy(),
        prompt: Prompt {
            text: FIRST.into(),
            voice: Some(fixtures().join("personaplex/voice.wav")),
            ..Default::default()
        },
        ..Default::default()
    };
    let loader = runner::loader(move |_| {
        let l = load_model_with(&opts, &Discovery::default(), &mut |_| {}, &Cancel::new())
            .map_err(|e| assistant::engine::load::LoadFailure {
                message: e.message,
                remedy: e.remedy,
            })?;
        Ok(Loaded::plain(l.model))
    });

    // 3 s of a quiet tone, paced at real time as a microphone is.
    const FRAMES: usize = 38;
    let samples: Vec<f32> = (0..FRAMES * 1920)
        .map(|i| 0.05 * (i as f32 * 0.05).sin())
        .collect();
    let meters = Arc::new(Meters::default());
    let (pacer, port) = FilePacer::start(
        WavAudio {
            samples,
            sample_rate: 24_000,
            channels: 1,
        },
        meters.clone(),
    );
    let dump = dir.path().join("tokens.jsonl");
    let (ev_tx, events) = crossbeam_channel::unbounded();
    let (commands, cmd_rx) = crossbeam_channel::unbounded();
    let setup = EngineSetup {
        dump_tokens: Some(dump.clone()),
        max_backlog: 100,
        ..EngineSetup::new(loader, port, meters, ev_tx, cmd_rx)
    };
    let engine = runner::spawn(setup);
    let (mut pressed, mut primed_at, mut first_frame) = (None, None, None);
    let mut primed = None;
    for ev in events.iter() {
        match &ev {
            EngineEvent::Step(s) if s.step_index == 10 && pressed.is_none() => {
                commands
                    .send(Command::Prime {
                        prompt: Prompt {
                            text: SECOND.into(),
                            voice: Some("NATM1".into()),
                            ..Default::default()
                        },
                        fresh: true,
                    })
                    .unwrap();
                pressed = Some(Instant::now());
            }
            EngineEvent::Happened(Happening::Primed { steps, ms }) => {
                primed = Some((*steps, *ms));
                primed_at = Some(Instant::now());
            }
            EngineEvent::Happened(Happening::PrimeFailed { error }) => panic!("{error}"),
            EngineEvent::Step(s) if primed_at.is_some() && first_frame.is_none() => {
                first_frame = Some((Instant::now(), s.step_index));
            }
            EngineEvent::Stopped => break,
            _ => {}
        }
    }
    let stats = engine.join().unwrap();
    drop(pacer);
    let (steps, ms) = primed.expect("the switch primed");
    let (t_first, first_step) = first_frame.expect("a frame after the switch");
    println!(
        "switch: prefill {steps} steps in {ms:.1} ms; key press to the first frame in the new \
         voice {:.1} ms (engine step {first_step})",
        (t_first - pressed.unwrap()).as_secs_f64() * 1000.0
    );

    assert_eq!(stats.dropped_frames, 0, "no input frame is lost");
    assert_eq!(stats.frames_in, stats.frames_out);
    let text = std::fs::read_to_string(&dump).unwrap();
    let blocks = prefill_blocks(&text);
    assert_eq!(
        blocks.len(),
        2,
        "the start persona's prefill, then the switch's"
    );
    let phases = |b: &Vec<(String, usize, Vec<u64>)>| -> Vec<(String, usize)> {
        b.iter().map(|(p, n, _)| (p.clone(), *n)).collect()
    };
    // The voice WAV: 26 frames, the first laid at step 0 (no model run, no line).
    let first = phases(&blocks[0]);
    assert_eq!(first[0], ("voice".to_string(), 25));
    assert_eq!(first[1], ("silence".to_string(), 6));
    assert_eq!(first[2].0, "text");
    assert_eq!(first[3], ("silence".to_string(), 6));
    // The .pt voice: 25 replayed embeddings, then the same phases.
    let second = phases(&blocks[1]);
    assert_eq!(second[0], ("voice".to_string(), 25));
    assert_eq!(second[1], ("silence".to_string(), 6));
    assert_eq!(second[2].0, "text");
    assert_eq!(second[3], ("silence".to_string(), 6));
    assert!(second[2].1 > first[2].1, "JARVIS's role text is longer");
    assert_eq!(
        second.iter().map(|(_, n)| n).sum::<usize>() + 1,
        steps,
        "one line per prefill step that ran the model"
    );
    // Positions run from 1 without a gap: the prefill restarted from a reset.
    let positions: Vec<u64> = blocks[1].iter().flat_map(|(_, _, p)| p.clone()).collect();
    assert_eq!(positions, (1..=positions.len() as u64).collect::<Vec<_>>());
    let conversation = text.lines().filter(|l| !l.contains("\"prefill\"")).count();
    assert_eq!(conversation as u64, stats.frames_out);
}

/// The command line: `--voice-prompt NAME` from `--voices-dir`, `--text-prompt`, and the
/// prefill in `--dump-tokens`, through the binary; an unknown name is refused (exit 2)
/// with the directory and what it holds.
#[test]
fn headless_with_a_named_voice_dumps_its_prefill() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("plex");
    std::fs::create_dir(&model).unwrap();
    std::fs::copy(
        fixtures().join("personaplex/model.safetensors"),
        model.join("model.safetensors"),
    )
    .unwrap();
    complete_checkpoint(&model);
    let voices = dir.path().join("my-voices");
    std::fs::create_dir(&voices).unwrap();
    std::fs::copy(
        fixtures().join("personaplex/voice.pt"),
        voices.join("VARF3.pt"),
    )
    .unwrap();
    let dump = dir.path().join("tokens.jsonl");
    let run = |voice: &str| {
        std::process::Command::new(env!("CARGO_BIN_EXE_assistant"))
            .args([
                "--headless",
                "--no-journal",
                "--device",
                "cpu",
                "--temperature",
                "0",
            ])
            .args([
                "--text-temperature",
                "0",
                "--text-prompt",
                SECOND,
                "--voice-prompt",
                voice,
            ])
            .arg("--model-dir")
            .arg(&model)
            .arg("--voices-dir")
            .arg(&voices)
            .arg("--input")
            .arg(fixtures().join("audio/hello_24k_mono.wav"))
            .arg("--output")
            .arg(dir.path().join("out.wav"))
            .arg("--dump-tokens")
            .arg(&dump)
            .arg("--log-file")
            .arg(dir.path().join("log"))
            .env("XDG_CONFIG_HOME", dir.path())
            .env("XDG_STATE_HOME", dir.path())
            .output()
            .unwrap()
    };
    let out = run("VARF3");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = std::fs::read_to_string(&dump).unwrap();
    let blocks = prefill_blocks(&text);
    assert_eq!(blocks.len(), 1);
    let phases: Vec<&str> = blocks[0].iter().map(|(p, _, _)| p.as_str()).collect();
    assert_eq!(phases, ["voice", "silence", "text", "silence"]);

    let out = run("NATF9");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("NATF9") && err.contains("my-voices") && err.contains("VARF3"),
        "{err}"
    );
}
