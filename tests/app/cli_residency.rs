//! Headless runs through the CLI: an idle unload and reload (`--idle-unload`), and a
//! seven-minute conversation with the demo model in flat memory.

use crate::common;
use std::path::Path;

fn write_wav(path: &Path, samples: impl Iterator<Item = f32>) {
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: 24_000,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w = hound::WavWriter::create(path, spec).unwrap();
    for s in samples {
        w.write_sample((s.clamp(-1.0, 1.0) * 32767.0) as i16)
            .unwrap();
    }
    w.finalize().unwrap();
}

fn hello() -> Vec<f32> {
    assistant::audio::wav::read_wav(&common::shared_audio("hello_24k_mono.wav"))
        .unwrap()
        .samples
}

/// The loopback engine is silent when the user is, so the CLI's idle policy can be
/// watched end to end: unload in the gap, reload on the second hello, and that hello
/// comes out of the speaker file (one frame late) instead of being lost.
#[test]
fn headless_idle_unload_reloads_on_speech_and_keeps_it() {
    let tmp = tempfile::tempdir().unwrap();
    let (input, output, stats) = (
        tmp.path().join("in.wav"),
        tmp.path().join("out.wav"),
        tmp.path().join("stats.json"),
    );
    let h = hello();
    let gap = 15 * 24_000;
    write_wav(
        &input,
        h.iter()
            .copied()
            .chain(std::iter::repeat_n(0.0, gap))
            .chain(h.iter().copied()),
    );
    let out = common::run_ok(
        common::assistant(tmp.path())
            .args([
                "--headless",
                "--no-journal",
                "--engine",
                "loopback",
                "--idle-unload",
                "4",
            ])
            .arg("--input")
            .arg(&input)
            .arg("--output")
            .arg(&output)
            .arg("--stats-json")
            .arg(&stats),
    );
    let err = String::from_utf8_lossy(&out.stderr);
    eprintln!("{err}");
    assert!(
        err.contains("info: model unloaded after 4 s of silence"),
        "{err}"
    );
    assert!(
        err.contains("info: you spoke: reloading the model"),
        "{err}"
    );
    assert!(err.contains("info: model reloaded"), "{err}");
    let s = common::stats(&stats);
    assert_eq!(s["residency"]["unloads"], 1);
    assert_eq!(s["residency"]["reloads"], 1);
    let (inp, _) = common::read_mono(&input);
    let (outp, _) = common::read_mono(&output);
    assert!(
        (outp.len() as i64 - inp.len() as i64).abs() <= 2 * 1920,
        "{} vs {}",
        outp.len(),
        inp.len()
    );
    // The second hello, delayed by loopback's one frame, is all there.
    let start = h.len() + gap;
    let second_in = &inp[start..];
    let second_out = &outp[start + 1920..];
    let snr = common::snr_db(second_in, second_out);
    assert!(
        snr > 30.0,
        "the speech after the silence came out (SNR {snr:.1} dB)"
    );
}

/// Seven minutes of conversation (hello, then a pause, over and over) through the demo
/// model: the output is as long as the input and memory stays flat.
#[test]
fn seven_minutes_headless_with_flat_memory() {
    let tmp = tempfile::tempdir().unwrap();
    let (input, output, stats) = (
        tmp.path().join("in.wav"),
        tmp.path().join("out.wav"),
        tmp.path().join("stats.json"),
    );
    let h = hello();
    let total = 7 * 60 * 24_000;
    let turn: Vec<f32> = h
        .iter()
        .copied()
        .chain(std::iter::repeat_n(0.0, 4 * 24_000))
        .collect();
    write_wav(&input, turn.iter().copied().cycle().take(total));
    let t = std::time::Instant::now();
    common::run_ok(
        common::assistant(tmp.path())
            .args(["--headless", "--no-journal", "--demo"])
            .arg("--input")
            .arg(&input)
            .arg("--output")
            .arg(&output)
            .arg("--stats-json")
            .arg(&stats),
    );
    let s = common::stats(&stats);
    eprintln!(
        "7 minutes in {:.0} s; stats: {}",
        t.elapsed().as_secs_f64(),
        serde_json::to_string(&s).unwrap()
    );
    let (inp, _) = common::read_mono(&input);
    let (outp, _) = common::read_mono(&output);
    assert!(
        (outp.len() as i64 - inp.len() as i64).abs() <= 2 * 1920,
        "output {} vs input {} samples",
        outp.len(),
        inp.len()
    );
    let rss: Vec<(f64, f64)> = serde_json::from_value(s["residency"]["rss_mb"].clone()).unwrap();
    let minute = |lo: f64, hi: f64| {
        let v: Vec<f64> = rss
            .iter()
            .filter(|(t, _)| (lo..hi).contains(t))
            .map(|&(_, m)| m)
            .collect();
        assert!(!v.is_empty(), "no RSS sample in {lo}..{hi} s: {rss:?}");
        v.iter().copied().fold(0.0, f64::max)
    };
    let (first, last) = (minute(0.0, 60.0), minute(360.0, 421.0));
    eprintln!("RSS first minute {first} MB, last minute {last} MB");
    assert!(last <= first + 8.0, "RSS grew from {first} MB to {last} MB");
    assert_eq!(s["dropped_frames"], 0);
}
