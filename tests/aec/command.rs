//! `assistant aec`: bad input gives clear errors, any rate and channel count works.
use crate::aec_common;
use aec_common::shared;
use assistant::audio::aec::run_aec_command;
use assistant::audio::aec::AecRun;
use std::path::{Path, PathBuf};

fn args(far: &Path, mic: &Path) -> AecRun {
    AecRun {
        far: far.to_path_buf(),
        mic: mic.to_path_buf(),
        block: 1920,
        filter_ms: None,
    }
}

fn speech() -> PathBuf {
    shared().join("audio/hello_24k_mono.wav")
}

fn err(a: &AecRun, out: Option<&Path>) -> String {
    format!("{:#}", run_aec_command(a, out).expect_err("should fail"))
}

#[test]
fn missing_file_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope.wav");
    let e = err(&args(&missing, &speech()), Some(&dir.path().join("o.wav")));
    assert!(e.contains("nope.wav") && e.contains("--far"), "{e}");
    let e = err(&args(&speech(), &missing), Some(&dir.path().join("o.wav")));
    assert!(e.contains("nope.wav") && e.contains("--mic"), "{e}");
}

#[test]
fn not_a_wav_and_empty_wav_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let text = dir.path().join("notes.wav");
    std::fs::write(&text, "this is not audio").unwrap();
    let e = err(&args(&speech(), &text), Some(&dir.path().join("o.wav")));
    assert!(
        e.contains("notes.wav") && e.contains("not a readable WAV"),
        "{e}"
    );

    let empty = dir.path().join("empty.wav");
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: 24_000,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    hound::WavWriter::create(&empty, spec)
        .unwrap()
        .finalize()
        .unwrap();
    let e = err(&args(&empty, &speech()), Some(&dir.path().join("o.wav")));
    assert!(e.contains("empty.wav") && e.contains("no audio"), "{e}");
}

#[test]
fn bad_options_are_refused_before_any_work() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("o.wav");
    let e = err(&args(&speech(), &speech()), None);
    assert!(e.contains("--output"), "{e}");
    let e = err(
        &AecRun {
            block: 0,
            ..args(&speech(), &speech())
        },
        Some(&out),
    );
    assert!(e.contains("--block"), "{e}");
    let e = err(
        &AecRun {
            filter_ms: Some(0.5),
            ..args(&speech(), &speech())
        },
        Some(&out),
    );
    assert!(e.contains("--filter-ms"), "{e}");
    assert!(!out.exists(), "nothing written on error");
}

#[test]
fn other_rates_and_channels_are_converted_to_24k_mono() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.wav");
    let far = shared().join("audio/interrupt_48k_stereo.wav");
    let mic = shared().join("audio/count_16k_mono.wav");
    run_aec_command(
        &AecRun {
            block: 1000,
            ..args(&far, &mic)
        },
        Some(&out),
    )
    .unwrap();
    let r = hound::WavReader::open(&out).unwrap();
    let spec = r.spec();
    assert_eq!((spec.sample_rate, spec.channels), (24_000, 1));
    let mic_secs = hound::WavReader::open(&mic).unwrap().duration() as f64 / 16_000.0;
    let out_secs = r.duration() as f64 / 24_000.0;
    assert!(
        (mic_secs - out_secs).abs() < 0.01,
        "mic {mic_secs} s, out {out_secs} s"
    );
}

#[test]
fn the_binary_reports_errors_with_a_nonzero_exit() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_assistant"))
        .args([
            "aec",
            "--far",
            "/nonexistent/far.wav",
            "--mic",
            "/nonexistent/mic.wav",
            "--output",
            "/tmp/never.wav",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("far.wav"), "{stderr}");
}
