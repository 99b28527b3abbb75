//! Looking at the screen, through the whole binary: the stand-in LLM calls
//! `look_at_screen`, and the image its endpoint receives is the screen. Under Xvfb
//! (the root window painted one colour by xsetroot); under Wayland through the desktop
//! portal: a headless sway (its background one colour) with a D-Bus session bus of its
//! own, whose activation starts xdg-desktop-portal and its wlroots backend, and
//! PipeWire, all started here; through grim when no portal answers; through X11 when
//! Wayland gives nothing. With none of them, the LLM is told why and what to install.

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
        .unwrap_or_else(|e| panic!("{what}: {e} (./dev test installs {WAYLAND_PACKAGES})"))
}

/// What the Wayland tests need, as `./dev` installs it.
const WAYLAND_PACKAGES: &str =
    "sway, swaybg, grim, dbus, pipewire, xdg-desktop-portal, xdg-desktop-portal-wlr and xdg-desktop-portal-gtk";

/// The programs (on PATH, or a path) of `needed` that are not installed, as a reason to
/// skip: a machine without them cannot run the test, and says so.
fn missing(needed: &[&str]) -> Option<String> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let absent: Vec<&str> = needed
        .iter()
        .copied()
        .filter(|p| {
            if p.starts_with('/') {
                !Path::new(p).exists()
            } else {
                !std::env::split_paths(&path).any(|d| d.join(p).is_file())
            }
        })
        .collect();
    (!absent.is_empty()).then(|| {
        format!(
            "skipped: {} not installed (./dev test installs {WAYLAND_PACKAGES})",
            absent.join(", ")
        )
    })
}

/// Wait until grim sees the whole screen `rgb`: swaybg paints the background a while
/// after sway's socket appears, and until then the screen is black.
fn wait_for_colour(env: &[(&'static str, String)], rgb: [u8; 3]) {
    wait_until("the background", || {
        let Ok(shot) = Command::new("grim")
            .arg("-")
            .envs(env.iter().map(|(k, v)| (k, v)))
            .output()
        else {
            return false;
        };
        let mut d = png::Decoder::new(std::io::Cursor::new(shot.stdout));
        d.set_transformations(png::Transformations::EXPAND);
        d.read_info().ok().is_some_and(|mut r| {
            let mut buf = vec![0; r.output_buffer_size().unwrap_or(0)];
            r.next_frame(&mut buf).is_ok() && buf[..3] == rgb
        })
    });
}

fn wait_until(what: &str, ok: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !ok() {
        assert!(Instant::now() < deadline, "{what} did not start");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A Wayland desktop of its own: headless sway, 320x200, its background `colour`;
/// `portal` adds a D-Bus session bus whose activation starts xdg-desktop-portal and its
/// wlroots backend, with gtk's for its access questions (the bus has the desktop's
/// environment for them), and PipeWire, which that backend needs to start. Without it
/// the bus named is one that is not there, so that a session bus of the machine's own
/// is not asked. Returns what a client needs in its environment.
fn wayland_desktop(
    dir: &Path,
    colour: &str,
    portal: bool,
) -> (Started, Vec<(&'static str, String)>) {
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
    let mut started = Started(vec![spawn(&mut sway, "sway")]);
    let socket = || {
        std::fs::read_dir(&run).ok().and_then(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .find(|n| n.starts_with("wayland-") && !n.ends_with(".lock"))
        })
    };
    wait_until("sway", || socket().is_some());
    let wayland = socket().unwrap();
    let mut env = vec![
        ("XDG_RUNTIME_DIR", run.display().to_string()),
        ("WAYLAND_DISPLAY", wayland),
        ("XDG_CURRENT_DESKTOP", "sway".to_string()),
    ];
    // The portal's permission store and the like write here, not in the user's home.
    let homes = [
        ("XDG_DATA_HOME", dir.join("data")),
        ("XDG_CONFIG_HOME", dir.join("config")),
    ];
    if !portal {
        let nowhere = format!("unix:path={}/no-bus", dir.display());
        env.push(("DBUS_SESSION_BUS_ADDRESS", nowhere));
        return (started, env);
    }
    let mut dbus = Command::new("dbus-daemon");
    dbus.args(["--session", "--nofork", "--print-address=1"])
        .envs(env.iter().map(|(k, v)| (k, v)))
        .envs(homes.clone())
        .env_remove("DISPLAY");
    let mut bus = dbus
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("dbus-daemon: {e}"));
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(bus.stdout.take().unwrap()),
        &mut line,
    )
    .unwrap();
    started.0.push(bus);
    let address = line.trim().to_string();
    assert!(address.starts_with("unix:"), "the bus address: {line:?}");
    env.push(("DBUS_SESSION_BUS_ADDRESS", address));
    let mut pw = Command::new("pipewire");
    pw.envs(env.iter().map(|(k, v)| (k, v)))
        .envs(homes)
        .env_remove("DISPLAY");
    started.0.push(spawn(&mut pw, "pipewire"));
    wait_until("pipewire", || run.join("pipewire-0").exists());
    // Ask the portal (which the bus starts on this first call) until it answers: a
    // just-started xdg-desktop-portal 1.16 answers nothing for about 25 s in one start
    // of four (D-Bus's activation timeout for something it waits on).
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let ok = Command::new("dbus-send")
            .args([
                "--session",
                "--print-reply",
                "--reply-timeout=2000",
                "--dest=org.freedesktop.portal.Desktop",
                "/org/freedesktop/portal/desktop",
                "org.freedesktop.DBus.Properties.Get",
                "string:org.freedesktop.portal.Screenshot",
                "string:version",
            ])
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if ok {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the desktop portal did not answer"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    (started, env)
}

/// The programs the portal's desktop needs.
const PORTAL_STACK: &[&str] = &[
    "sway",
    "swaybg",
    "grim",
    "dbus-daemon",
    "dbus-send",
    "pipewire",
    "/usr/libexec/xdg-desktop-portal",
    "/usr/libexec/xdg-desktop-portal-wlr",
    // xdg-desktop-portal 1.16 offers no Screenshot without an Access backend: gtk's.
    "/usr/libexec/xdg-desktop-portal-gtk",
];

#[test]
fn under_wayland_the_desktop_portal_gives_the_llm_the_screen() {
    if let Some(why) = missing(PORTAL_STACK) {
        eprintln!("{why}");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (_desktop, env) = wayland_desktop(dir.path(), "#0000ff", true);
    wait_for_colour(&env, [0, 0, 255]);
    let (result, reqs) = look(&env, &["DISPLAY"]);
    assert!(
        result.contains("through the desktop portal") && result.contains("320x200"),
        "{result}"
    );
    let (w, h, px) = image_of(&reqs);
    assert_eq!((w, h), (320, 200));
    assert!(
        px.iter().all(|p| *p == [0, 0, 255]),
        "every pixel is the screen's blue: first {:?}",
        &px[..2]
    );
}

#[test]
fn under_wayland_without_a_portal_grim_gives_the_llm_the_screen() {
    if let Some(why) = missing(&["sway", "swaybg", "grim"]) {
        eprintln!("{why}");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (_desktop, env) = wayland_desktop(dir.path(), "#00ff00", false);
    wait_for_colour(&env, [0, 255, 0]);
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
fn under_wayland_without_portal_or_grim_the_llm_is_told_what_to_install() {
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("bin");
    std::fs::create_dir(&empty).unwrap();
    let (result, reqs) = look(
        &[
            ("WAYLAND_DISPLAY", "wayland-9".into()),
            ("XDG_RUNTIME_DIR", dir.path().display().to_string()),
            ("PATH", empty.display().to_string()),
            (
                "DBUS_SESSION_BUS_ADDRESS",
                format!("unix:path={}/no-bus", dir.path().display()),
            ),
        ],
        &["DISPLAY"],
    );
    for part in [
        "under Wayland (wayland-9) the desktop portal:",
        "install xdg-desktop-portal",
        "grim:",
        "install grim",
    ] {
        assert!(result.contains(part), "{part}: {result}");
    }
    let msgs = reqs[1]["messages"].as_array().unwrap();
    assert!(
        !msgs.iter().any(|m| m["content"].is_array()),
        "no image follows a failure"
    );
}

#[test]
fn when_wayland_gives_nothing_x11_still_gives_the_screen() {
    // Under XWayland both are set: Wayland is asked first, and X11 is what is left.
    let (_x, display) = xvfb("#ffff00");
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("bin");
    std::fs::create_dir(&empty).unwrap();
    // Only xwd is on the binary's PATH: no grim.
    let xwd_dir = ["/usr/bin", "/bin"]
        .into_iter()
        .find(|d| Path::new(d).join("xwd").exists())
        .expect("xwd (./dev test installs x11-apps)");
    std::os::unix::fs::symlink(Path::new(xwd_dir).join("xwd"), empty.join("xwd")).unwrap();
    let (result, reqs) = look(
        &[
            ("DISPLAY", display),
            ("WAYLAND_DISPLAY", "wayland-9".into()),
            ("XDG_RUNTIME_DIR", dir.path().display().to_string()),
            ("PATH", empty.display().to_string()),
            (
                "DBUS_SESSION_BUS_ADDRESS",
                format!("unix:path={}/no-bus", dir.path().display()),
            ),
        ],
        &[],
    );
    assert!(result.contains("through xwd"), "{result}");
    let (_, _, px) = image_of(&reqs);
    assert!(
        px.iter().all(|p| *p == [255, 255, 0]),
        "the screen's yellow"
    );
}
