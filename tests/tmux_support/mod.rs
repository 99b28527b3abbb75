//! Drives the `assistant` binary in a real terminal: tmux at 100x30, its screen read
//! with capture-pane, keys sent, the exit code and terminal state read back.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::thread::sleep;
use std::time::{Duration, Instant};

pub const WAV: &str = "tests/fixtures/audio/hello_24k_mono.wav";

pub struct Tmux {
    socket: String,
    pub dir: tempfile::TempDir,
}

impl Tmux {
    /// None when tmux is not installed (the test then says so and passes).
    pub fn start(args: &[&str]) -> Option<Self> {
        Self::start_env(&[], args)
    }

    /// `start` with more environment (`NAME`, value) for the program.
    pub fn start_env(env: &[(&str, String)], args: &[&str]) -> Option<Self> {
        Self::start_in(Path::new(env!("CARGO_MANIFEST_DIR")), env, args)
    }

    /// `start_env` in the working directory `cwd` (relative paths in `args` are its).
    pub fn start_in(cwd: &Path, env: &[(&str, String)], args: &[&str]) -> Option<Self> {
        if Command::new("tmux").arg("-V").output().is_err() {
            eprintln!("tmux not installed: skipping the terminal end-to-end test");
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        static SESSIONS: AtomicUsize = AtomicUsize::new(0);
        let socket = format!(
            "assistant-e2e-{}-{}",
            std::process::id(),
            SESSIONS.fetch_add(1, SeqCst)
        );
        let bin = env!("CARGO_BIN_EXE_assistant");
        let log = dir.path().join("assistant.log");
        let exit = dir.path().join("exit");
        let quoted: Vec<String> = args.iter().map(|a| format!("'{a}'")).collect();
        // After the program ends the pane stays (sleep) so its terminal state can be read.
        let cmd = format!(
            "cd '{}' && env -u HF_HUB_CACHE -u HF_TOKEN XDG_DATA_HOME='{}' XDG_CONFIG_HOME='{}' XDG_STATE_HOME='{}' {} '{bin}' {} --log-file '{}'; echo $? > '{}'; sleep 60",
            cwd.display(),
            dir.path().join("data").display(),
            dir.path().join("config").display(),
            dir.path().join("state").display(),
            env.iter().map(|(k, v)| format!("{k}='{v}'")).collect::<Vec<_>>().join(" "),
            quoted.join(" "),
            log.display(),
            exit.display()
        );
        let t = Self { socket, dir };
        t.tmux(&[
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
        Some(t)
    }

    pub fn tmux(&self, args: &[&str]) -> Output {
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

    pub fn screen(&self) -> String {
        String::from_utf8_lossy(&self.tmux(&["capture-pane", "-p", "-t", "e2e"]).stdout)
            .into_owned()
    }

    /// The screen with its colours, as SGR escape sequences.
    pub fn screen_with_colours(&self) -> String {
        String::from_utf8_lossy(&self.tmux(&["capture-pane", "-p", "-e", "-t", "e2e"]).stdout)
            .into_owned()
    }

    pub fn format(&self, f: &str) -> String {
        String::from_utf8_lossy(&self.tmux(&["display-message", "-p", "-t", "e2e", f]).stdout)
            .trim()
            .to_string()
    }

    pub fn wait_for(&self, what: &str, ok: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let s = self.screen();
            if ok(&s) {
                return s;
            }
            assert!(
                Instant::now() < deadline,
                "waited for {what}; screen:\n{s}\nlog:\n{}",
                self.log()
            );
            sleep(Duration::from_millis(50));
        }
    }

    pub fn keys(&self, keys: &str) {
        self.tmux(&["send-keys", "-t", "e2e", keys]);
    }

    pub fn resize(&self, w: u16, h: u16) {
        self.tmux(&[
            "resize-window",
            "-t",
            "e2e",
            "-x",
            &w.to_string(),
            "-y",
            &h.to_string(),
        ]);
    }

    pub fn exit_code(&self) -> Option<i32> {
        std::fs::read_to_string(self.dir.path().join("exit"))
            .ok()?
            .trim()
            .parse()
            .ok()
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.path("assistant.log")).unwrap_or_default()
    }

    /// The session journal's records, one JSON object a line.
    pub fn journal(&self) -> Vec<serde_json::Value> {
        let dir = self.path("data/assistant/sessions");
        let mut files: Vec<_> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .map(|e| e.unwrap().path())
            .collect();
        assert_eq!(files.len(), 1, "one session journal: {files:?}");
        let text = std::fs::read_to_string(files.pop().unwrap()).unwrap();
        text.lines()
            .map(|l| serde_json::from_str(l).expect("a JSON record"))
            .collect()
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
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
