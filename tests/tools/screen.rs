//! Looking at the screen, through the whole binary: the stand-in LLM calls
//! `look_at_screen`, and the image its endpoint receives is the screen. Under Xvfb
//! (the root window painted one colour by xsetroot), and under Wayland through grim: a
//! headless sway started here, its background one colour. Without grim, the LLM is
//! told why and what to install.

use crate::common;

use assistant::app::bench::cascade::script;
use base64::Engine as _;
use common::*;
use serde_json::{json, Value};
use std::io::Write;
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

struct Xvfb(Child);
impl Drop for Xvfb {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Xvfb on a free display number, 320x200 at 24 bits, painted `colour` (`-noreset`: the
/// server would forget the colour when xsetroot, its last client, leaves).
fn xvfb(colour: &str) -> (Xvfb, String) {
    let n = (90..200)
        .find(|n| {
            !Path::new(&format!("/tmp/.X11-unix/X{n}")).exists()
                && !Path::new(&format!("/tmp/.X{n}-lock")).exists()
        })
        .expect("a free X display number");
    let display = format!(":{n}");
    let child = Command::new("Xvfb")
        .args([
            &display,
            "-screen",
            "0",
            "320x200x24",
            "-nolisten",
            "tcp",
            "-noreset",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("Xvfb (./dev test installs xvfb, x11-apps and x11-xserver-utils)");
    let x = Xvfb(child);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let ok = Command::new("xsetroot")
            .args(["-display", &display, "-solid", colour])
            .stderr(Stdio::null())
            .status()
            .expect("xsetroot (x11-xserver-utils)")
            .success();
        if ok {
            break;
        }
        assert!(Instant::now() < deadline, "Xvfb did not start on {display}");
        std::thread::sleep(Duration::from_millis(100));
    }
    (x, display)
}

fn sse(events: &[Value]) -> String {
    let mut s = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: close\r\n\r\n"
        .to_string();
    for e in events {
        s.push_str(&format!("data: {e}\n\n"));
    }
    s.push_str("data: [DONE]\n\n");
    s
}

/// The stand-in LLM: calls `look_at_screen` on the first request, then answers in
/// words; every request body is kept.
fn stand_in() -> (String, Arc<Mutex<Vec<Value>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/v1", listener.local_addr().unwrap());
    let seen = Arc::new(Mutex::new(Vec::<Value>::new()));
    let s = seen.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut c) = conn else { return };
            let body: Value =
                serde_json::from_str(common::http_body(&common::read_http_request(&mut c)))
                    .unwrap_or(Value::Null);
            let first = s.lock().unwrap().is_empty();
            s.lock().unwrap().push(body);
            let reply = if first {
                sse(&[
                    json!({"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"id":"call_1","type":"function","function":{"name":"look_at_screen","arguments":"{}"}}]},"finish_reason":null}]}),
                    json!({"choices":[{"index":0,"delta":{},"finish_reason":"tool_calls"}]}),
                ])
            } else {
                sse(&[
                    json!({"choices":[{"index":0,"delta":{"content":"I looked at your screen. "},"finish_reason":null}]}),
                    json!({"choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}),
                ])
            };
            let _ = c.write_all(reply.as_bytes());
        }
    });
    (url, seen)
}

/// Ask a question through the binary, headless, with `env` set and `unset` removed;
/// returns the tool's result as the LLM got it and the requests.
fn look(env: &[(&str, String)], unset: &[&str]) -> (String, Vec<Value>) {
    let (url, seen) = stand_in();
    let tmp = tempfile::tempdir().unwrap();
    let sc = script(0, 1.5, 0.3);
    let input = tmp.path().join("q.wav");
    assistant::audio::wav::write_wav_mono(&input, 24_000, &sc.pcm).unwrap();
    let mut cmd = assistant(tmp.path());
    cmd.env("XDG_CACHE_HOME", tmp.path().join("cache"))
        .current_dir(tmp.path())
        .args([
            "--engine",
            "cascade",
            "--demo",
            "--headless",
            "--seed",
            "7",
            "--realtime",
        ])
        .arg("--input")
        .arg(&input)
        .args([
            "--llm-url",
            &url,
            "--llm-model",
            "stand-in",
            "--tools-access",
            "read-only",
        ]);
    for k in unset {
        cmd.env_remove(k);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = run_ok(&mut cmd);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("I looked at your screen."),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let reqs = seen.lock().unwrap().clone();
    assert_eq!(reqs.len(), 2);
    let msgs = reqs[1]["messages"].as_array().unwrap();
    let tool = msgs.iter().find(|m| m["role"] == "tool").unwrap();
    (tool["content"].as_str().unwrap().to_string(), reqs)
}

/// The image the LLM got: its size and its pixels as RGB.
fn image_of(reqs: &[Value]) -> (u32, u32, Vec<[u8; 3]>) {
    let msgs = reqs[1]["messages"].as_array().unwrap();
    let image = msgs
        .iter()
        .filter_map(|m| m["content"].as_array())
        .flatten()
        .find(|p| p["type"] == "image_url")
        .expect("an image_url part");
    let data_url = image["image_url"]["url"].as_str().unwrap();
    let b64 = data_url
        .strip_prefix("data:image/png;base64,")
        .expect("a PNG data URL");
    let png_bytes = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .unwrap();
    let mut decoder = png::Decoder::new(std::io::Cursor::new(png_bytes));
    decoder.set_transformations(png::Transformations::EXPAND | png::Transformations::STRIP_16);
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut buf).unwrap();
    let n = info.color_type.samples();
    assert!(n >= 3, "a colour image: {:?}", info.color_type);
    let px = buf[..info.buffer_size()]
        .chunks(n)
        .map(|p| [p[0], p[1], p[2]])
        .collect();
    (info.width, info.height, px)
}

#[test]
fn the_llm_receives_the_screen_it_asked_to_look_at() {
    let (_x, display) = xvfb("#ff0000");
    let (result, reqs) = look(&[("DISPLAY", display)], &["WAYLAND_DISPLAY"]);
    assert!(result.contains("320x200"), "{result}");
    let (w, h, px) = image_of(&reqs);
    assert_eq!((w, h), (320, 200));
    assert!(
        px.iter().all(|p| *p == [255, 0, 0]),
        "every pixel is the screen's red: first {:?}",
        &px[..2]
    );
}

/// Processes this test started, ended (by their own ids) when it ends.
struct Started(Vec<Child>);
impl Drop for Started {
    fn drop(&mut self) {
        for c in self.0.iter_mut().rev() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn spawn(cmd: &mut Command, what: &str) -> Child {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("{what}: {e} (./dev test installs sway, swaybg and grim)"))
}

fn wait_until(what: &str, ok: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !ok() {
        assert!(Instant::now() < deadline, "{what} did not start");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A Wayland desktop of its own: headless sway, 320x200, its background `colour`.
/// Returns what a client needs in its environment.
fn wayland_desktop(dir: &Path, colour: &str) -> (Started, Vec<(&'static str, String)>) {
    let run = dir.join("run");
    std::fs::create_dir(&run).unwrap();
    std::fs::set_permissions(&run, std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
    let config = dir.join("sway.conf");
    std::fs::write(
        &config,
        format!("output * bg {colour} solid_color\noutput HEADLESS-1 mode 320x200\n"),
    )
    .unwrap();
    let root = unsafe { libc::geteuid() } == 0;
    // sway refuses to run as root: then it runs as nobody, in a runtime directory of
    // its own (which root's clients can still reach).
    let mut sway = if root {
        let ok = Command::new("chown")
            .arg("65534:65534")
            .arg(&run)
            .status()
            .unwrap()
            .success();
        assert!(ok, "chown the runtime directory");
        let mut c = Command::new("setpriv");
        c.args(["--reuid=65534", "--regid=65534", "--clear-groups", "sway"]);
        c
    } else {
        Command::new("sway")
    };
    sway.arg("-c")
        .arg(&config)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", dir)
        .env("XDG_RUNTIME_DIR", &run)
        .env("WLR_BACKENDS", "headless")
        .env("WLR_RENDERER", "pixman")
        .env("WLR_LIBINPUT_NO_DEVICES", "1");
    let started = Started(vec![spawn(&mut sway, "sway")]);
    let socket = || {
        std::fs::read_dir(&run).ok().and_then(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .find(|n| n.starts_with("wayland-") && !n.ends_with(".lock"))
        })
    };
    wait_until("sway", || socket().is_some());
    (
        started,
        vec![
            ("XDG_RUNTIME_DIR", run.display().to_string()),
            ("WAYLAND_DISPLAY", socket().unwrap()),
        ],
    )
}

#[test]
fn under_wayland_grim_gives_the_llm_the_screen() {
    let dir = tempfile::tempdir().unwrap();
    let (_desktop, env) = wayland_desktop(dir.path(), "#00ff00");
    // swaybg paints the background a while after the socket appears: until then the
    // screen is black.
    wait_until("the green background", || {
        let shot = Command::new("grim")
            .arg("-")
            .envs(env.iter().map(|(k, v)| (k, v)))
            .output()
            .expect("grim");
        let mut d = png::Decoder::new(std::io::Cursor::new(shot.stdout));
        d.set_transformations(png::Transformations::EXPAND);
        d.read_info().ok().is_some_and(|mut r| {
            let mut buf = vec![0; r.output_buffer_size().unwrap_or(0)];
            r.next_frame(&mut buf).is_ok() && buf[..3] == [0, 255, 0]
        })
    });
    let (result, reqs) = look(&env, &["DISPLAY"]);
    assert!(
        result.contains("through grim") && result.contains("320x200"),
        "{result}"
    );
    let (w, h, px) = image_of(&reqs);
    assert_eq!((w, h), (320, 200));
    assert!(
        px.iter().all(|p| *p == [0, 255, 0]),
        "every pixel is the screen's green: first {:?}",
        &px[..2]
    );
}

#[test]
fn under_wayland_without_grim_the_llm_is_told_what_to_install() {
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("bin");
    std::fs::create_dir(&empty).unwrap();
    let (result, reqs) = look(
        &[
            ("WAYLAND_DISPLAY", "wayland-9".into()),
            ("XDG_RUNTIME_DIR", dir.path().display().to_string()),
            ("PATH", empty.display().to_string()),
        ],
        &["DISPLAY"],
    );
    for part in ["under Wayland", "grim:", "install grim"] {
        assert!(result.contains(part), "{part}: {result}");
    }
    let msgs = reqs[1]["messages"].as_array().unwrap();
    assert!(
        !msgs.iter().any(|m| m["content"].is_array()),
        "no image follows a failure"
    );
}
