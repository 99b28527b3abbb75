//! Real cpal streams in CI: ALSA's `file` plugin gives a capture device that
//! reads a raw file and a playback device that writes a WAV (both unpaced), and
//! without it this machine has no microphone at all.

mod common;
use common::*;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

fn interrupt_after(mut child: Child, after: Duration) -> std::process::Output {
    std::thread::sleep(after);
    let _ = std::process::Command::new("kill").args(["-INT", &child.id().to_string()]).status();
    let deadline = Instant::now() + Duration::from_secs(15);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("assistant did not stop within 15 s of Ctrl-C");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.wait_with_output().unwrap()
}

#[test]
fn real_cpal_capture_and_playback_through_alsa_file_devices() {
    let tmp = tempfile::tempdir().unwrap();
    let played = alsa_home(tmp.path());
    let stats_path = tmp.path().join("stats.json");
    let child = assistant(tmp.path())
        .env("HOME", tmp.path())
        .args(["--headless", "--engine", "loopback", "--stats-json"])
        .arg(&stats_path)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let out = interrupt_after(child, Duration::from_millis(2500));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "Ctrl-C is a clean exit: {stderr}");
    assert!(!stderr.contains("no microphone") && !stderr.contains("ALSA lib"), "{stderr}");
    let s = stats(&stats_path);
    let frames = s["frames_in"].as_u64().unwrap();
    assert!(frames >= 10, "the engine stepped real captured audio: {s}");
    assert_eq!(frames, s["frames_out"].as_u64().unwrap() + s["dropped_frames"].as_u64().unwrap());
    assert!(s["latency_ms"].as_f64().unwrap() > 80.0, "device rate differs from 24 kHz, so resampling adds latency: {s}");
    // What the playback callback played reached the file: the looped-back speech.
    let bytes = std::fs::read(&played).expect("ALSA wrote the playback file");
    let pcm: Vec<i16> = bytes[44.min(bytes.len())..].chunks_exact(2).map(|b| i16::from_le_bytes([b[0], b[1]])).collect();
    let loud = pcm.iter().filter(|s| s.unsigned_abs() > 3000).count();
    assert!(loud > 1000, "speech was played ({loud} loud samples of {})", pcm.len());
}

#[test]
fn without_a_microphone_it_still_starts_and_says_why() {
    let tmp = tempfile::tempdir().unwrap();
    // An empty HOME: the default ALSA device does not exist on this machine.
    let stats_path = tmp.path().join("stats.json");
    let child = assistant(tmp.path())
        .env("HOME", tmp.path())
        .env("ALSA_CONFIG_PATH", tmp.path().join("no-such-alsa.conf"))
        .args(["--headless", "--engine", "loopback", "--stats-json"])
        .arg(&stats_path)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let out = interrupt_after(child, Duration::from_millis(1000));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("no microphone: "), "{stderr}");
    assert!(stderr.contains("--input FILE.wav"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    // It kept running on silence at real time.
    let s = stats(&stats_path);
    assert!(s["frames_out"].as_u64().unwrap() >= 5, "{s}");
}
