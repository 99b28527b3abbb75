//! Devices named the way `assistant devices` shows them: a plain name (or a part of
//! it, or a device id) finds the device on the default host or on any other host,
//! and a name that finds none lists every host's devices. Through the binary, with a
//! PulseAudio server of the test's own (cpal's `pulseaudio` host).

use crate::common;
use crate::pulse_support;
use pulse_support::Pulse;
use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::sync::mpsc;
use std::time::Duration;

/// Start a headless loopback run on `input`: the lines it printed up to "model:"
/// (the devices opened), or its exit code and what it printed when it stopped first.
fn opens(pulse: &Pulse, input: &str) -> Result<String, (Option<i32>, String)> {
    let tmp = tempfile::tempdir().unwrap();
    let mut child = common::assistant(tmp.path())
        .env("PULSE_SERVER", &pulse.server)
        .args(["--headless", "--engine", "loopback", "--no-journal"])
        .args(["--input-device", input, "--output-device", "nullsink"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run assistant");
    // Progress (the devices opened, the model) goes to stderr.
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut seen = String::new();
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            seen += &line;
            seen.push('\n');
            if line.starts_with("model:") {
                let _ = tx.send(seen.clone());
            }
        }
        let _ = tx.send(seen);
    });
    let seen = rx.recv_timeout(Duration::from_secs(60)).unwrap_or_default();
    let _ = child.kill();
    let status = child.wait().unwrap();
    if seen.contains("model:") {
        return Ok(seen);
    }
    // The reader sends what it saw once stderr closes.
    let rest = rx.recv_timeout(Duration::from_secs(5)).unwrap_or_default();
    Err((status.code(), seen + &rest))
}

#[test]
fn plain_names_find_the_sound_servers_devices() {
    let Some(pulse) = Pulse::start(&["nullsink"]) else {
        return;
    };
    for name in [
        "Monitor of Null",
        "monitor of null output",
        "nullsink.monitor",
        "pulseaudio:nullsink.monitor",
    ] {
        match opens(&pulse, name) {
            Ok(seen) => assert!(
                seen.contains("input: Monitor of Null Output")
                    && seen.contains("output: Null Output"),
                "{name:?} opened other devices:\n{seen}"
            ),
            Err((code, stderr)) => {
                panic!("{name:?} did not open (exit {code:?}):\n{stderr}")
            }
        }
    }
}

#[test]
fn a_name_that_finds_nothing_lists_every_hosts_devices() {
    let Some(pulse) = Pulse::start(&["nullsink"]) else {
        return;
    };
    let (code, stderr) = opens(&pulse, "no-such-mic-xyz").expect_err("no such device");
    assert_eq!(code, Some(2), "{stderr}");
    for want in [
        "no input device matches 'no-such-mic-xyz'",
        "host PulseAudio:",
        "Monitor of Null Output  (pulseaudio:nullsink.monitor)",
        "host ALSA:",
        "(alsa:",
    ] {
        assert!(stderr.contains(want), "{want:?} in:\n{stderr}");
    }
}
