//! Real cpal streams in CI: ALSA's `file` plugin gives a capture device that
//! reads a raw file and a playback device that writes a WAV (both unpaced), and
//! without it this machine has no microphone at all.

use crate::common;
use common::*;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

/// `assistant --headless --engine loopback` on the default devices, with HOME (and so
/// ALSA's user configuration) in `home`.
fn headless_loopback(
    home: &std::path::Path,
    stats_path: &std::path::Path,
) -> std::process::Command {
    let mut c = assistant(home);
    // ALSA's user configuration, and no sound server (cpal prefers PulseAudio).
    c.env("HOME", home)
        .env_remove("PULSE_SERVER")
        .env_remove("PULSE_RUNTIME_PATH")
        .env_remove("XDG_RUNTIME_DIR")
        .args(["--headless", "--engine", "loopback", "--stats-json"])
        .arg(stats_path)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    c
}

/// Ctrl-C `after` the model is up (its "model:" line), so a slow start on a loaded
/// machine cannot race the signal handler. Returns the exit status and all of stderr.
fn interrupt_after(mut child: Child, after: Duration) -> (std::process::ExitStatus, String) {
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        use std::io::BufRead;
        let mut all = String::new();
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            if line.starts_with("model: ") {
                let _ = tx.send(());
            }
            all.push_str(&line);
            all.push('\n');
        }
        all
    });
    let _ = rx.recv_timeout(Duration::from_secs(30));
    std::thread::sleep(after);
    let _ = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status();
    let deadline = Instant::now() + Duration::from_secs(15);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("assistant did not stop within 15 s of Ctrl-C");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    (status, reader.join().unwrap())
}

#[test]
fn real_cpal_capture_and_playback_through_alsa_file_devices() {
    let tmp = tempfile::tempdir().unwrap();
    let played = alsa_home(tmp.path());
    let stats_path = tmp.path().join("stats.json");
    let child = headless_loopback(tmp.path(), &stats_path).spawn().unwrap();
    let (status, stderr) = interrupt_after(child, Duration::from_millis(2500));
    assert_eq!(status.code(), Some(0), "Ctrl-C is a clean exit: {stderr}");
    assert!(
        !stderr.contains("no microphone") && !stderr.contains("ALSA lib"),
        "{stderr}"
    );
    let s = stats(&stats_path);
    let frames = s["frames_in"].as_u64().unwrap();
    assert!(frames >= 10, "the engine stepped real captured audio: {s}");
    assert_eq!(
        frames,
        s["frames_out"].as_u64().unwrap() + s["dropped_frames"].as_u64().unwrap()
    );
    assert!(
        s["latency_ms"].as_f64().unwrap() > 80.0,
        "device rate differs from 24 kHz, so resampling adds latency: {s}"
    );
    // What the playback callback played reached the file: the looped-back speech.
    let bytes = std::fs::read(&played).expect("ALSA wrote the playback file");
    let pcm: Vec<i16> = bytes[44.min(bytes.len())..]
        .chunks_exact(2)
        .map(|b| i16::from_le_bytes([b[0], b[1]]))
        .collect();
    let loud = pcm.iter().filter(|s| s.unsigned_abs() > 3000).count();
    assert!(
        loud > 1000,
        "speech was played ({loud} loud samples of {})",
        pcm.len()
    );
}

#[test]
fn without_a_microphone_it_still_starts_and_says_why() {
    let tmp = tempfile::tempdir().unwrap();
    // An empty HOME: the default ALSA device does not exist on this machine.
    let stats_path = tmp.path().join("stats.json");
    let child = headless_loopback(tmp.path(), &stats_path)
        .env("ALSA_CONFIG_PATH", tmp.path().join("no-such-alsa.conf"))
        .spawn()
        .unwrap();
    let (status, stderr) = interrupt_after(child, Duration::from_millis(1000));
    assert_eq!(status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("no microphone: "), "{stderr}");
    assert!(stderr.contains("--input FILE.wav"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    // It kept running on silence at real time.
    let s = stats(&stats_path);
    assert!(s["frames_out"].as_u64().unwrap() >= 5, "{s}");
}
