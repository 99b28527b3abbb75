//! The audio path end to end through the binary: loopback fidelity, resampling,
//! latency reporting and bad input.

use crate::common;
use common::*;

#[test]
fn loopback_24k_is_the_input_delayed_by_exactly_one_frame() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out.wav");
    let stats_path = tmp.path().join("stats.json");
    let input = shared_audio("hello_24k_mono.wav");
    run_ok(
        assistant(tmp.path())
            .args(["--headless", "--engine", "loopback", "--input"])
            .arg(&input)
            .arg("--output")
            .arg(&out)
            .arg("--stats-json")
            .arg(&stats_path),
    );
    let (x, rx) = read_mono(&input);
    let (y, ry) = read_mono(&out);
    assert_eq!((rx, ry), (24_000, 24_000));
    assert!(
        y[..1920].iter().all(|&s| s == 0.0),
        "the first frame is the loopback's silence"
    );
    let snr = snr_db(&x, &y[1920..]);
    eprintln!("loopback 24 kHz SNR: {snr:.1} dB");
    assert!(snr >= 60.0, "SNR {snr:.1} dB");
    // Output covers the input, rounded up to whole frames.
    assert_eq!(y.len(), x.len().div_ceil(1920) * 1920);
    let s = stats(&stats_path);
    assert_eq!(s["latency_ms"], 80.0);
    assert_eq!(s["dropped_frames"], 0);
    assert_eq!(s["frames_in"], s["frames_out"]);
    for key in [
        "frames_in",
        "frames_out",
        "dropped_frames",
        "xruns_in",
        "xruns_out",
        "rtf",
        "latency_ms",
        "input_seconds",
        "output_seconds",
    ] {
        assert!(s[key].is_number(), "stats lack {key}: {s}");
    }
    for key in ["p50", "p95", "p99", "max"] {
        assert!(s["step_ms"][key].is_number());
    }
    assert!(s["overhead_ms"]["p50"].is_number() && s["overhead_ms"]["p99"].is_number());
    assert!((s["input_seconds"].as_f64().unwrap() - 6.065).abs() < 0.01);
}

/// 2:1 decimation with a long Blackman-windowed sinc in f64: an independent
/// reference for the engine's FFT resampler.
fn reference_decimate(x: &[f64]) -> Vec<f64> {
    let half = 256i64;
    let cutoff = 0.5 * 0.92; // of the output Nyquist, relative to the input rate / 2
    let taps: Vec<f64> = (-half..=half)
        .map(|n| {
            let t = n as f64;
            let sinc = if n == 0 {
                2.0 * cutoff / 2.0
            } else {
                (std::f64::consts::PI * cutoff * t).sin() / (std::f64::consts::PI * t)
            };
            let w = 0.42
                + 0.5 * (std::f64::consts::PI * t / half as f64).cos()
                + 0.08 * (2.0 * std::f64::consts::PI * t / half as f64).cos();
            sinc * w
        })
        .collect();
    let gain: f64 = taps.iter().sum();
    (0..x.len() / 2)
        .map(|i| {
            let c = 2 * i as i64;
            taps.iter()
                .enumerate()
                .map(|(k, h)| {
                    x.get((c + k as i64 - half) as usize)
                        .copied()
                        .unwrap_or(0.0)
                        * h
                })
                .sum::<f64>()
                / gain
        })
        .collect()
}

#[test]
fn loopback_48k_stereo_matches_an_independent_resample_with_the_reported_latency() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out.wav");
    let stats_path = tmp.path().join("stats.json");
    let input = shared_audio("interrupt_48k_stereo.wav");
    run_ok(
        assistant(tmp.path())
            .args(["--headless", "--engine", "loopback", "--input"])
            .arg(&input)
            .arg("--output")
            .arg(&out)
            .arg("--stats-json")
            .arg(&stats_path),
    );
    let (x48, _) = read_mono(&input);
    let reference = reference_decimate(&x48);
    let (y, _) = read_mono(&out);
    let s = stats(&stats_path);
    let b = &s["latency_breakdown_ms"];
    let resampler_ms = b["resampler_in_ms"].as_f64().unwrap();
    assert!(resampler_ms > 0.0, "48 kHz input must be resampled: {s}");
    // The stats round latency_ms to 3 decimals; the resampler's delay (55 samples
    // of 24 kHz, 2.2917 ms) is not a whole number of microseconds.
    let total = b["frame_ms"].as_f64().unwrap() + resampler_ms;
    assert!(
        (s["latency_ms"].as_f64().unwrap() - total).abs() <= 0.0005 + 1e-9,
        "latency {} ms, breakdown sums to {total} ms",
        s["latency_ms"]
    );
    // The delay actually in the output must be what was reported: model (1 frame) + resampler.
    let reported = ((b["model_delay_ms"].as_f64().unwrap() + resampler_ms) * 24.0).round() as usize;
    let best = (reported.saturating_sub(200)..reported + 200)
        .max_by(|&a, &b| {
            let c = |lag: usize| {
                reference
                    .iter()
                    .zip(&y[lag..])
                    .map(|(r, v)| r * v)
                    .sum::<f64>()
            };
            c(a).total_cmp(&c(b))
        })
        .unwrap();
    assert_eq!(
        best, reported,
        "measured delay {best} samples, reported {reported}"
    );
    let snr = snr_db(&reference[300..reference.len() - 300], &y[reported + 300..]);
    eprintln!("loopback 48 kHz stereo SNR vs reference: {snr:.1} dB, delay {reported} samples");
    assert!(
        snr >= 40.0,
        "SNR {snr:.1} dB against the reference resample"
    );
}

fn expect_bad_input(tmp: &std::path::Path, input: &std::path::Path, problem: &str) {
    let out = tmp.join("never.wav");
    let res = assistant(tmp)
        .args(["--headless", "--engine", "loopback", "--input"])
        .arg(input)
        .arg("--output")
        .arg(&out)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&res.stderr);
    assert_eq!(res.status.code(), Some(2), "stderr: {stderr}");
    assert!(
        stderr.contains(&input.display().to_string()),
        "names the file: {stderr}"
    );
    assert!(stderr.contains(problem), "says '{problem}': {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    let leftovers: Vec<_> = std::fs::read_dir(tmp)
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name())
        .filter(|n| n.to_string_lossy().contains("never"))
        .collect();
    assert!(leftovers.is_empty(), "no output left behind: {leftovers:?}");
}

#[test]
fn bad_input_files_exit_2_naming_the_file_and_the_problem() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    expect_bad_input(t, &t.join("missing.wav"), "cannot open");

    let not_wav = t.join("notes.wav");
    std::fs::write(&not_wav, "these are not samples").unwrap();
    expect_bad_input(t, &not_wav, "not a valid WAV file");

    let good = std::fs::read(shared_audio("hello_24k_mono.wav")).unwrap();
    let truncated = t.join("truncated.wav");
    std::fs::write(&truncated, &good[..good.len() / 2 + 1]).unwrap();
    expect_bad_input(t, &truncated, "truncated");

    let mut zero = good.clone();
    zero[22] = 0; // channel count (little-endian u16 at offset 22 of the fmt chunk)
    zero[23] = 0;
    let zero_ch = t.join("zero_channels.wav");
    std::fs::write(&zero_ch, &zero).unwrap();
    expect_bad_input(t, &zero_ch, "channel");
}

#[test]
fn unknown_device_names_list_the_devices_that_exist() {
    let tmp = tempfile::tempdir().unwrap();
    let res = assistant(tmp.path())
        .args([
            "--headless",
            "--engine",
            "loopback",
            "--input-device",
            "no-such-mic-xyz",
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&res.stderr);
    assert_eq!(res.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("no input device matches 'no-such-mic-xyz'"),
        "{stderr}"
    );
    assert!(stderr.contains("Available input devices:"), "{stderr}");
}

#[test]
fn devices_command_exits_0_and_describes_the_hosts() {
    let tmp = tempfile::tempdir().unwrap();
    let out = run_ok(assistant(tmp.path()).arg("devices"));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("host "), "{text}");
    assert!(
        text.contains("input devices:") && text.contains("output devices:"),
        "{text}"
    );
}
