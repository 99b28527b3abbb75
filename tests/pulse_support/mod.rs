//! A PulseAudio daemon of a test's own (Debian's `pulseaudio`): its own runtime
//! directory, no default script, anonymous access on a socket in a temporary
//! directory, and null sinks paced at real time by the server. Killed on drop.
//! Programs reach it through `PULSE_SERVER` (see [`Pulse::server`]).
#![allow(dead_code)]

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Pulse {
    child: Child,
    dir: tempfile::TempDir,
    /// `unix:/…/native`, for `PULSE_SERVER`.
    pub server: String,
}

impl Pulse {
    /// A server with one null sink per name in `sinks` (its monitor is `NAME.monitor`).
    /// None when pulseaudio is not installed (`./dev` installs it).
    pub fn start(sinks: &[&str]) -> Option<Self> {
        if Command::new("pulseaudio")
            .arg("--version")
            .output()
            .is_err()
        {
            eprintln!("pulseaudio not installed: skipping (./dev installs it)");
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let runtime = dir.path().join("runtime");
        std::fs::create_dir_all(&runtime).unwrap();
        let socket = runtime.join("native");
        let log = std::fs::File::create(dir.path().join("pulse.log")).unwrap();
        let mut cmd = Command::new("pulseaudio");
        cmd.args([
            "-n",
            "--daemonize=no",
            "--exit-idle-time=-1",
            "--use-pid-file=no",
            "--log-target=stderr",
        ])
        .arg(format!(
            "--load=module-native-protocol-unix socket={} auth-anonymous=1",
            socket.display()
        ));
        for (i, sink) in sinks.iter().enumerate() {
            // The first keeps PulseAudio's description ("Null Output", its monitor
            // "Monitor of Null Output"); the others get their own, so that names
            // pick one sink each.
            let props = if i == 0 {
                String::new()
            } else {
                format!(" sink_properties=device.description=Second-{sink}")
            };
            cmd.arg(format!("--load=module-null-sink sink_name={sink}{props}"));
        }
        let child = cmd
            .env("HOME", dir.path())
            .env("XDG_RUNTIME_DIR", &runtime)
            .env("XDG_CONFIG_HOME", dir.path().join("config"))
            .env("PULSE_RUNTIME_PATH", &runtime)
            .env("PULSE_STATE_PATH", dir.path().join("state"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("run pulseaudio");
        let mut pulse = Self {
            child,
            server: format!("unix:{}", socket.display()),
            dir,
        };
        let deadline = Instant::now() + Duration::from_secs(15);
        while !pulse.pactl(&["info"]).0 {
            if let Ok(Some(status)) = pulse.child.try_wait() {
                panic!("pulseaudio exited ({status}):\n{}", pulse.log());
            }
            assert!(
                Instant::now() < deadline,
                "pulseaudio did not answer:\n{}",
                pulse.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        Some(pulse)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("pulse.log")).unwrap_or_default()
    }

    /// A client program of this server.
    pub fn client(&self, program: &str) -> Command {
        let mut c = Command::new(program);
        c.env("PULSE_SERVER", &self.server)
            .env("HOME", self.dir.path())
            .stdin(Stdio::null());
        c
    }

    /// (success, stdout)
    pub fn pactl(&self, args: &[&str]) -> (bool, String) {
        match self.client("pactl").args(args).output() {
            Ok(o) => (
                o.status.success(),
                String::from_utf8_lossy(&o.stdout).into_owned(),
            ),
            Err(_) => (false, String::new()),
        }
    }

    /// Play a WAV into `sink`, paced by the server, until the returned guard drops.
    pub fn play(&self, sink: &str, wav: &Path) -> KillOnDrop {
        KillOnDrop(
            self.client("paplay")
                .args(["--device", sink, "--latency-msec=20"])
                .arg(wav)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("run paplay"),
        )
    }
}

impl Drop for Pulse {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub struct KillOnDrop(pub Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
