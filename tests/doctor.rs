//! `assistant doctor`: one report, a fix for each problem, exit 0 only when a
//! conversation can run.

mod common;
use common::*;

#[test]
fn doctor_without_a_microphone_fails_with_the_fix() {
    let tmp = tempfile::tempdir().unwrap();
    let out = assistant(tmp.path()).env("HOME", tmp.path()).arg("doctor").output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("[FAIL] no microphone"), "{text}");
    assert!(text.contains("fix: connect a microphone") && text.contains("--input FILE.wav"), "{text}");
    assert!(text.contains("CPU backend: compiled, present"), "{text}");
    assert!(text.contains("memory: ") && text.contains("GiB available"), "{text}");
    assert!(text.contains(&format!("log file: {}", tmp.path().join("state/assistant/assistant.log").display())), "{text}");
    assert!(text.contains("not ready: 1 problem(s)"), "{text}");
}

#[test]
fn doctor_with_working_audio_devices_is_ready() {
    let tmp = tempfile::tempdir().unwrap();
    alsa_home(tmp.path());
    let out = assistant(tmp.path()).env("HOME", tmp.path()).arg("doctor").output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(text.contains("[ ok ] microphone: ") && text.contains("[ ok ] speaker: "), "{text}");
    assert!(text.contains("ready: assistant can run"), "{text}");
}
