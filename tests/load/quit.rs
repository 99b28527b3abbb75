//! Quitting during a slow download, end to end: the `assistant` binary points at a hub on
//! 127.0.0.1 (HF_ENDPOINT) that trickles the LM, with an empty Hugging Face cache
//! (HF_HOME in a tempdir). `q` in the TUI (under tmux) and Ctrl-C headless (SIGINT) both
//! end the process within a second, and the TUI gives the terminal back. `--engine moshi`
//! names the engine: without it a first start asks which to download (`first_start.rs`).

use crate::load_server;
use crate::tmux_support;
use assistant::models::moshi::export::{write_demo, LmFormat};
use assistant::models::moshi::files::LM_SAFETENSORS;
use load_server::Hub;
use std::path::Path;
use std::process::{Command, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};
use tmux_support::{Tmux, WAV};

/// The default repo, served tiny and slow: 4.4 MiB of LM at 64 KiB/s takes over a minute.
fn slow_hub(dir: &Path) -> Hub {
    write_demo(dir, LmFormat::F32).unwrap();
    let hub = Hub::start(assistant::bus::MOSHIKO, dir);
    hub.slow(LM_SAFETENSORS, 64 << 10);
    hub
}

/// Wait until the LM's bytes flow: the load is in the middle of the download.
fn wait_for_lm_bytes(hub: &Hub, what: impl Fn() -> String) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while hub.sent(LM_SAFETENSORS) < 100 << 10 {
        assert!(Instant::now() < deadline, "no download began:\n{}", what());
        sleep(Duration::from_millis(20));
    }
}

/// Environment for a run that finds nothing and downloads from `hub` into `home`.
fn hf_env(cmd: &mut Command, hub: &Hub, home: &Path) {
    cmd.env("HF_ENDPOINT", &hub.endpoint)
        .env("HF_HOME", home.join("hf"))
        .env_remove("HF_HUB_CACHE")
        .env_remove("HF_TOKEN")
        .env("XDG_DATA_HOME", home.join("data"))
        .env("XDG_CONFIG_HOME", home.join("config"))
        .env("XDG_STATE_HOME", home.join("state"));
}

#[test]
fn q_during_a_slow_download_exits_within_a_second_and_restores_the_terminal() {
    let tmp = tempfile::tempdir().unwrap();
    let hub = slow_hub(&tmp.path().join("www"));
    let hf = tmp.path().join("hf").display().to_string();
    let env = [("HF_ENDPOINT", hub.endpoint.clone()), ("HF_HOME", hf)];
    let Some(t) = Tmux::start_env(&env, &["--engine", "moshi", "--input", WAV]) else {
        return;
    };
    let log_text = || t.log();
    wait_for_lm_bytes(&hub, || format!("{}\nlog:\n{}", t.screen(), log_text()));
    // The download shows, with the file and where it comes from.
    let s = t.wait_for("the download on screen", |s| {
        s.contains("model.safetensors from 127.0.0.1")
    });
    assert_eq!(t.format("#{alternate_on}"), "1", "the TUI runs:\n{s}");

    t.keys("q");
    let pressed = Instant::now();
    let code = loop {
        if let Some(c) = t.exit_code() {
            break c;
        }
        assert!(
            pressed.elapsed() < Duration::from_secs(20),
            "no exit after q:\n{}",
            t.screen()
        );
        sleep(Duration::from_millis(5));
    };
    let latency = pressed.elapsed();
    eprintln!("q during the download: exited in {latency:?}");
    let sent = hub.sent(LM_SAFETENSORS);
    assert!(
        sent < hub.file(LM_SAFETENSORS).len() as u64,
        "the download had not finished: {sent}"
    );
    assert_eq!(code, 0, "exit code after q; log:\n{}", log_text());
    assert!(
        latency < Duration::from_secs(1),
        "q took {latency:?} to exit"
    );
    assert_eq!(
        t.format("#{alternate_on}"),
        "0",
        "left the alternate screen"
    );
    assert_eq!(t.format("#{cursor_flag}"), "1", "cursor visible again");
    let after = t.screen();
    assert!(
        !after.contains("┌ activity"),
        "TUI left on the screen:\n{after}"
    );
    assert!(!log_text().contains("panic"), "log:\n{}", log_text());
}

#[test]
fn ctrl_c_during_a_slow_download_exits_headless_within_a_second() {
    let tmp = tempfile::tempdir().unwrap();
    let hub = slow_hub(&tmp.path().join("www"));
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_assistant"));
    cmd.current_dir(env!("CARGO_MANIFEST_DIR"))
        .args([
            "--headless",
            "--engine",
            "moshi",
            "--input",
            WAV,
            "--log-file",
        ])
        .arg(tmp.path().join("assistant.log"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    hf_env(&mut cmd, &hub, tmp.path());
    let mut child = cmd.spawn().unwrap();
    wait_for_lm_bytes(&hub, || "headless".into());
    let sigint = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(sigint.success());
    let sent_at = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(
            sent_at.elapsed() < Duration::from_secs(20),
            "no exit after SIGINT"
        );
        sleep(Duration::from_millis(5));
    };
    let latency = sent_at.elapsed();
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    eprintln!("Ctrl-C during the download: exited in {latency:?} ({status})");
    assert!(
        latency < Duration::from_secs(1),
        "SIGINT took {latency:?} to exit; stderr:\n{err}"
    );
    assert!(
        err.contains("loading model.safetensors from 127.0.0.1"),
        "the download was under way:\n{err}"
    );
    assert!(err.contains("loading cancelled"), "{err}");
    assert!(
        hub.sent(LM_SAFETENSORS) < hub.file(LM_SAFETENSORS).len() as u64,
        "stopped mid-file"
    );
}
