//! A first start with nothing on disk and no engine flag: the TUI shows the chooser
//! and starts what is picked; a headless run names the flags and exits 2. The Hugging
//! Face cache is an empty temporary directory and downloads go nowhere, so nothing is
//! found however the machine running the tests is set up.

use crate::common;
use crate::tmux_support;
use common::*;
use std::path::Path;
use tmux_support::{Tmux, WAV};

/// Environment under `tmp` in which no weights exist and none can be fetched.
fn empty(tmp: &Path) -> Vec<(&'static str, String)> {
    let p = |s: &str| tmp.join(s).display().to_string();
    vec![
        ("HOME", p("home")),
        ("HF_HOME", p("hf")),
        ("XDG_CACHE_HOME", p("cache")),
        ("HF_ENDPOINT", "http://127.0.0.1:9".into()),
    ]
}

fn run(tmp: &Path, args: &[&str], extra: &[(&str, &str)]) -> std::process::Output {
    let mut c = assistant(tmp);
    c.current_dir(env!("CARGO_MANIFEST_DIR"))
        .env_remove("HF_HUB_CACHE")
        .env_remove("ASSISTANT_CONNECT")
        .args(args);
    for (k, v) in empty(tmp) {
        c.env(k, v);
    }
    for (k, v) in extra {
        c.env(k, v);
    }
    c.output().unwrap()
}

#[test]
fn headless_with_no_weights_names_the_flags_and_exits_2() {
    let tmp = tempfile::tempdir().unwrap();
    let out = run(
        tmp.path(),
        &["--headless", "--input", WAV, "--no-journal"],
        &[],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    eprintln!("{err}");
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.starts_with("error: no weights here yet, and --headless cannot ask"),
        "{err}"
    );
    assert!(err.contains("this machine would pick: "), "{err}");
    for flag in [
        "--engine cascade",
        "--engine moshi",
        "--connect URL",
        "--model-dir DIR",
        "--demo",
    ] {
        assert!(err.contains(flag), "{flag} named:\n{err}");
    }
    assert!(out.stdout.is_empty(), "nothing on stdout");
    assert!(!tmp.path().join("hf/hub").exists(), "nothing downloaded");
}

#[test]
fn engine_flags_bypass_the_choice_and_beat_a_configured_server() {
    let tmp = tempfile::tempdir().unwrap();
    // --demo runs as it always did, with no choice printed, even with a server
    // configured (the flag wins over ASSISTANT_CONNECT).
    let out = run(
        tmp.path(),
        &["--headless", "--demo", "--input", WAV, "--no-journal"],
        &[("ASSISTANT_CONNECT", "ws://127.0.0.1:9")],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("model: demo"), "{err}");
    assert!(!err.contains("engine: "), "{err}");
    // ASSISTANT_CONNECT alone is the configured server: the choice takes it (and it is
    // down here, which a connect run reports as such).
    let out = run(
        tmp.path(),
        &["--headless", "--input", WAV, "--no-journal"],
        &[("ASSISTANT_CONNECT", "ws://127.0.0.1:9")],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("no weights here yet"), "{err}");
    assert!(err.contains("127.0.0.1:9"), "{err}");
}

/// In a terminal: the chooser lists the four engines with their figures; picking the
/// demo starts it at once.
#[test]
fn tmux_first_start_shows_the_chooser_and_starts_the_pick() {
    let tmp = tempfile::tempdir().unwrap();
    let env = empty(tmp.path());
    let Some(t) = Tmux::start_env(&env, &["--input", WAV]) else {
        return;
    };
    let s = t.wait_for("the chooser", |s| {
        s.contains("choose an engine") && s.contains("Demo model")
    });
    eprintln!("{s}");
    for what in [
        "Moshi on the GPU",
        "CPU cascade",
        "Connect to a server",
        "download ",
        "ms a step",
    ] {
        assert!(s.contains(what), "{what}:\n{s}");
    }
    t.keys("4");
    t.keys("Enter");
    let s = t.wait_for("the demo running", |s| s.contains("model ready: demo"));
    assert!(s.contains("starting Demo model"), "{s}");
    assert!(!s.contains("choose an engine"), "{s}");
    t.keys("q");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let code = loop {
        if let Some(c) = t.exit_code() {
            break c;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no exit:\n{}",
            t.screen()
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    assert_eq!(code, 0, "log:\n{}", t.log());
}
