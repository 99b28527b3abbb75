//! The cascade through the whole binary, headless, on its built-in tiny parts (random
//! weights, so the words are nonsense; the path is real: Kyutai's STT and TTS through
//! the `moshi` crate, a GGUF LLM in-process or an OpenAI-compatible server):
//! - a spoken question gets recognised words, a written reply and spoken audio, and the
//!   journal keeps both sides;
//! - talking over the reply silences it within two frames;
//! - an LLM server that is down is a warning, not the end of the run;
//! - a file that ends on a click ends with it, not with a minute of silence.

use crate::common;

use assistant::app::bench::cascade::{analyze, script};
use common::*;
use std::path::Path;

fn cascade(tmp: &Path) -> std::process::Command {
    let mut c = assistant(tmp);
    c.env("XDG_CACHE_HOME", tmp.join("cache")).args([
        "--engine",
        "cascade",
        "--demo",
        "--headless",
        "--seed",
        "7",
    ]);
    c
}

fn journal(tmp: &Path) -> Vec<serde_json::Value> {
    let dir = tmp.join("data/assistant/sessions");
    let file = std::fs::read_dir(&dir)
        .expect("a sessions directory")
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|x| x == "jsonl"))
        .expect("a journal");
    std::fs::read_to_string(file)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn a_spoken_question_gets_words_a_reply_and_audio_and_the_journal_keeps_both_sides() {
    let tmp = tempfile::tempdir().unwrap();
    let s = script(0, 1.5, 0.3);
    let (input, output) = (tmp.path().join("q.wav"), tmp.path().join("a.wav"));
    assistant::audio::wav::write_wav_mono(&input, 24_000, &s.pcm).unwrap();
    let out = run_ok(
        cascade(tmp.path())
            .arg("--input")
            .arg(&input)
            .arg("--output")
            .arg(&output),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stderr.contains("model: cascade:"), "{stderr}");
    assert!(
        stderr.contains("you: "),
        "the recognised words are printed: {stderr}"
    );
    assert!(!stdout.trim().is_empty(), "the reply is printed");
    // The file was 1.8 s; the answer came after it, in the silence the engine added.
    let (audio, rate) = read_mono(&output);
    assert_eq!(rate, 24_000);
    let after = &audio[s.bursts[0].end..];
    let loud = after.iter().filter(|x| x.abs() > 1e-3).count();
    assert!(
        loud > 24_000 / 2,
        "at least half a second of reply audio: {loud} samples"
    );
    let records = journal(tmp.path());
    let said: String = records
        .iter()
        .filter(|r| r["kind"] == "said")
        .map(|r| r["text"].as_str().unwrap().to_string())
        .collect();
    let text: String = records
        .iter()
        .filter(|r| r["kind"] == "text")
        .map(|r| r["text"].as_str().unwrap().to_string())
        .collect();
    assert!(
        !said.trim().is_empty() && !text.trim().is_empty(),
        "{records:?}"
    );
    let first_said = records.iter().position(|r| r["kind"] == "said").unwrap();
    let first_text = records.iter().position(|r| r["kind"] == "text").unwrap();
    assert!(
        first_said < first_text,
        "the question comes before the answer"
    );
    // What the journal says was spoken is what stdout printed.
    assert_eq!(text.trim(), stdout.trim());
    let md = run_ok(assistant(tmp.path()).args(["history", "show", "last"]));
    let md = String::from_utf8_lossy(&md.stdout);
    assert!(
        md.contains("**you**") && md.contains("**assistant**"),
        "{md}"
    );
}

#[test]
fn talking_over_the_reply_silences_it_within_two_frames() {
    let tmp = tempfile::tempdir().unwrap();
    // A question, a 2.5 s pause in which the reply starts, then the user again. At
    // real time, as a microphone would be: unpaced, the frames could outrun the LLM's
    // thread and the user would come back before the reply began.
    let s = script(2, 1.2, 2.5);
    let (input, output) = (tmp.path().join("q.wav"), tmp.path().join("a.wav"));
    assistant::audio::wav::write_wav_mono(&input, 24_000, &s.pcm).unwrap();
    // A machine too busy to play the reply without gaps can have every onset fall in a
    // gap (seen at load 16): nothing to measure, so that run is tried again, twice.
    let mut f = Default::default();
    for _ in 0..3 {
        let out = run_ok(
            cascade(tmp.path())
                .args(["--no-journal", "--realtime"])
                .arg("--input")
                .arg(&input)
                .arg("--output")
                .arg(&output),
        );
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("you spoke over the reply"), "{stderr}");
        let audio = assistant::audio::wav::read_wav(&output).unwrap().samples;
        f = analyze(&s, &audio);
        if !f.barge_in_ms.is_empty() {
            break;
        }
        eprintln!("no burst came while the reply played: {f:?}; again");
    }
    assert!(
        !f.barge_in_ms.is_empty(),
        "no burst came while the reply played: {f:?}"
    );
    // Onset to the end of the first silent frame's input frame: at most two frames.
    assert!(
        f.barge_in_ms.iter().all(|&ms| ms <= 160.0),
        "barge-in took {:?} ms",
        f.barge_in_ms
    );
}

#[test]
fn an_llm_server_that_is_down_is_a_warning_and_the_run_goes_on() {
    let tmp = tempfile::tempdir().unwrap();
    // A port nobody listens on: bind, note it, close.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let s = script(1, 1.2, 1.5);
    let input = tmp.path().join("q.wav");
    assistant::audio::wav::write_wav_mono(&input, 24_000, &s.pcm).unwrap();
    // At real time, as a microphone: unpaced, the second question can come while the
    // first is still being asked (the LLM's thread yields to the engine's) and join it.
    let out = cascade(tmp.path())
        .args(["--no-journal", "--realtime"])
        .arg("--input")
        .arg(&input)
        .args([
            "--llm-url",
            &format!("http://127.0.0.1:{port}/v1"),
            "--llm-model",
            "tiny",
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let refused = stderr.matches("the LLM server is down").count();
    assert!(
        refused >= 2,
        "each of the two turns says the server is down: {stderr}"
    );
    assert!(
        stderr.contains(&format!("127.0.0.1:{port}")),
        "naming it: {stderr}"
    );
    assert!(stderr.contains("fix:"), "with what to do: {stderr}");
    assert!(
        String::from_utf8_lossy(&out.stdout).trim().is_empty(),
        "nothing was said"
    );
}

#[test]
fn a_file_that_ends_on_a_click_ends_without_a_minute_of_silence() {
    let tmp = tempfile::tempdir().unwrap();
    // A second of quiet, a 10 ms click (one frame far over the floor), 0.2 s of quiet:
    // the file ends in what might be the start of a turn, so the engine feeds silence
    // while the cascade is busy. A click is not a turn: that is over in 0.8 s.
    let mut pcm = vec![0.0f32; 24_000];
    pcm.extend((0..240).map(|i| if i % 2 == 0 { 0.9 } else { -0.9 }));
    pcm.extend(vec![0.0; 24_000 / 5]);
    let (input, output) = (tmp.path().join("q.wav"), tmp.path().join("a.wav"));
    assistant::audio::wav::write_wav_mono(&input, 24_000, &pcm).unwrap();
    run_ok(
        cascade(tmp.path())
            .arg("--no-journal")
            .arg("--input")
            .arg(&input)
            .arg("--output")
            .arg(&output),
    );
    let (audio, rate) = read_mono(&output);
    let extra = (audio.len() as f64 - pcm.len() as f64) / rate as f64;
    assert!(
        extra < 3.0,
        "the output runs {extra:.1} s past the input (the 60 s tail is the defect)"
    );
}
