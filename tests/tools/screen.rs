//! Looking at the screen, through the whole binary: under Xvfb, with a screen of known
//! content (the root window painted one colour by xsetroot), the stand-in LLM calls
//! `look_at_screen`, and the image its endpoint receives is that screen.

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

#[test]
fn the_llm_receives_the_screen_it_asked_to_look_at() {
    let (_x, display) = xvfb("#ff0000");
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
                    json!({"choices":[{"index":0,"delta":{"content":"Your screen is red. "},"finish_reason":null}]}),
                    json!({"choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}),
                ])
            };
            let _ = c.write_all(reply.as_bytes());
        }
    });
    let tmp = tempfile::tempdir().unwrap();
    let sc = script(0, 1.5, 0.3);
    let input = tmp.path().join("q.wav");
    assistant::audio::wav::write_wav_mono(&input, 24_000, &sc.pcm).unwrap();
    let out = run_ok(
        assistant(tmp.path())
            .env("XDG_CACHE_HOME", tmp.path().join("cache"))
            .env("DISPLAY", &display)
            .env_remove("WAYLAND_DISPLAY")
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
            ]),
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("Your screen is red."),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let reqs = seen.lock().unwrap().clone();
    assert_eq!(reqs.len(), 2);
    let msgs = reqs[1]["messages"].as_array().unwrap();
    let tool = msgs.iter().find(|m| m["role"] == "tool").unwrap();
    assert!(
        tool["content"].as_str().unwrap().contains("320x200"),
        "{tool}"
    );
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
    let mut reader = png::Decoder::new(std::io::Cursor::new(png_bytes))
        .read_info()
        .unwrap();
    let mut buf = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut buf).unwrap();
    assert_eq!((info.width, info.height), (320, 200));
    assert_eq!(info.color_type, png::ColorType::Rgb);
    let px = &buf[..info.buffer_size()];
    assert!(
        px.chunks(3).all(|p| p == [255, 0, 0]),
        "every pixel is the screen's red: first {:?}",
        &px[..6]
    );
}
