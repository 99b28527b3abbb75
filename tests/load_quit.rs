//! Quitting during a slow download, end to end: the `assistant` binary points at a hub on
//! 127.0.0.1 (HF_ENDPOINT) that trickles the LM, with an empty Hugging Face cache
//! (HF_HOME in a tempdir). `q` in the TUI (under tmux) and Ctrl-C headless (SIGINT) both
//! end the process within a second, and the TUI gives the terminal back.

mod load_server;
use assistant::engine::moshi::export::{write_demo, LmFormat};
use assistant::engine::moshi::files::LM_SAFETENSORS;
use load_server::Hub;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

const WAV: &str = "tests/fixtures/audio/hello_24k_mono.wav";

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

struct Tmux {
    socket: String,
}

impl Tmux {
    fn run(&self, args: &[&str]) -> Output {
        let out = Command::new("tmux")
            .arg("-L")
            .arg(&self.socket)
            .args(args)
            .output()
            .expect("run tmux");
        assert!(
            out.status.success(),
            "tmux {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    fn screen(&self) -> String {
        String::from_utf8_lossy(&self.run(&["capture-pane", "-p", "-t", "e2e"]).stdout).into_owned()
    }

    fn format(&self, f: &str) -> String {
        String::from_utf8_lossy(&self.run(&["display-message", "-p", "-t", "e2e", f]).stdout)
            .trim()
            .to_string()
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .arg("-L")
            .arg(&self.socket)
            .arg("kill-server")
            .output();
    }
}

#[test]
fn q_during_a_slow_download_exits_within_a_second_and_restores_the_terminal() {
    if Command::new("tmux").arg("-V").output().is_err() {
        eprintln!("tmux not installed: skipping the terminal end-to-end test");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let hub = slow_hub(&tmp.path().join("www"));
    let home = tmp.path();
    let exit = home.join("exit");
    let log = home.join("assistant.log");
    // After the program ends the pane stays (sleep) so its terminal state can be read.
    let cmd = format!(
        "cd '{}' && env -u HF_HUB_CACHE -u HF_TOKEN HF_ENDPOINT='{}' HF_HOME='{}' XDG_DATA_HOME='{}' XDG_CONFIG_HOME='{}' XDG_STATE_HOME='{}' '{}' --input '{WAV}' --log-file '{}'; echo $? > '{}'; sleep 60",
        env!("CARGO_MANIFEST_DIR"),
        hub.endpoint,
        home.join("hf").display(),
        home.join("data").display(),
        home.join("config").display(),
        home.join("state").display(),
        env!("CARGO_BIN_EXE_assistant"),
        log.display(),
        exit.display()
    );
    let t = Tmux {
        socket: format!("assistant-load-{}", std::process::id()),
    };
    t.run(&[
        "new-session",
        "-d",
        "-s",
        "e2e",
        "-x",
        "100",
        "-y",
        "30",
        &cmd,
    ]);
    let log_text = || std::fs::read_to_string(&log).unwrap_or_default();
    wait_for_lm_bytes(&hub, || format!("{}\nlog:\n{}", t.screen(), log_text()));
    // The download shows, with the file and where it comes from.
    let deadline = Instant::now() + Duration::from_secs(20);
    let s = loop {
        let s = t.screen();
        if s.contains("model.safetensors from 127.0.0.1") {
            break s;
        }
        assert!(Instant::now() < deadline, "no download on screen:\n{s}");
        sleep(Duration::from_millis(50));
    };
    assert_eq!(t.format("#{alternate_on}"), "1", "the TUI runs:\n{s}");

    t.run(&["send-keys", "-t", "e2e", "q"]);
    let pressed = Instant::now();
    let code = loop {
        if let Some(c) = std::fs::read_to_string(&exit)
            .ok()
            .and_then(|s| s.trim().parse::<i32>().ok())
        {
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
        .args(["--headless", "--input", WAV, "--log-file"])
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
