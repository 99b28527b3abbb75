//! A persona switched to mid-session brings the tools it lists, through the whole
//! binary in a real terminal (tmux): the session starts as a persona that lists no
//! tools, with no mcp.json and no `--tools-access`, so its LLM is offered none; F9
//! switches to a persona (a user file) with `tools = ["date_time"]`, whose typed
//! question reaches a stand-in LLM with that one tool offered; the call runs and its
//! result goes back; the `t` overlay lists the active persona's tools; F1 switches
//! back and the tools are gone again.

use crate::common;
use crate::tmux_support::Tmux;
use serde_json::{json, Value};
use std::io::Write;
use std::net::TcpListener;
use std::sync::mpsc;
use std::time::{Duration, Instant};

const CLOCK: &str = r#"name = "Clock"
description = "Tells the time."
hotkey = "F9"
prompt = "You tell the time."
tools = ["date_time"]

[theme]
primary = "yellow"
secondary = "green"
accent = "magenta"
dim = "gray"
warning = "yellow"
error = "red"
"#;

fn sse(events: &[Value]) -> String {
    let mut s = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: close\r\n\r\n"
        .to_string();
    for e in events {
        s.push_str(&format!("data: {e}\n\n"));
    }
    s + "data: [DONE]\n\n"
}

/// Calls `date_time` when offered tools and no result is in yet; answers in words
/// otherwise. Hands the test every request body.
fn stand_in() -> (String, mpsc::Receiver<Value>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/v1", listener.local_addr().unwrap());
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut c) = conn else { return };
            let req = common::read_http_request(&mut c);
            let body: Value = serde_json::from_str(common::http_body(&req)).unwrap_or(Value::Null);
            let has_result = body["messages"]
                .as_array()
                .is_some_and(|m| m.iter().any(|m| m["role"] == "tool"));
            let reply = if body.get("tools").is_some() && !has_result {
                sse(&[
                    json!({"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"id":"call_1","type":"function","function":{"name":"date_time","arguments":"{}"}}]},"finish_reason":null}]}),
                    json!({"choices":[{"index":0,"delta":{},"finish_reason":"tool_calls"}]}),
                ])
            } else {
                sse(&[
                    json!({"choices":[{"index":0,"delta":{"content":"It is late. "},"finish_reason":null}]}),
                    json!({"choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}),
                ])
            };
            let _ = tx.send(body);
            let _ = c.write_all(reply.as_bytes());
        }
    });
    (url, rx)
}

/// The next chat request whose last user turn is `text`.
fn asked(rx: &mpsc::Receiver<Value>, text: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let body = rx
            .recv_timeout(left)
            .unwrap_or_else(|_| panic!("no chat request for {text:?} reached the LLM"));
        let last_user = body["messages"]
            .as_array()
            .and_then(|m| m.iter().rev().find(|m| m["role"] == "user"))
            .and_then(|m| m["content"].as_str())
            .unwrap_or_default()
            .to_string();
        if last_user == text {
            return body;
        }
    }
}

fn offered(body: &Value) -> Vec<String> {
    body["tools"]
        .as_array()
        .map(|t| {
            t.iter()
                .filter_map(|t| t["function"]["name"].as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

fn type_turn(t: &Tmux, text: &str) {
    t.keys("/");
    t.wait_for("the editor", |s| s.contains("you ›"));
    t.tmux(&["send-keys", "-t", "e2e", "-l", text]);
    t.wait_for("the typed line", |s| s.contains(&format!("you › {text}")));
    t.keys("Enter");
}

#[test]
fn a_persona_switched_to_brings_its_tools_and_a_switch_away_takes_them() {
    let (url, requests) = stand_in();
    let config = tempfile::tempdir().unwrap();
    let personas = config.path().join("assistant/personas");
    std::fs::create_dir_all(&personas).unwrap();
    std::fs::write(personas.join("clock.toml"), CLOCK).unwrap();
    let input = config.path().join("silence.wav");
    assistant::audio::wav::write_wav_mono(&input, 24_000, &vec![0.0; 24_000 * 180]).unwrap();
    let Some(t) = Tmux::start_env(
        &[(
            "XDG_CONFIG_HOME",
            config.path().to_string_lossy().into_owned(),
        )],
        &[
            "--engine",
            "cascade",
            "--demo",
            "--seed",
            "7",
            "--llm-url",
            &url,
            "--llm-model",
            "stand-in",
            "--input",
            input.to_str().unwrap(),
        ],
    ) else {
        return;
    };
    t.wait_for("the cascade ready", |s| s.contains("model ready: cascade"));

    // The start persona lists no tools: none offered.
    type_turn(&t, "hello there");
    let first = asked(&requests, "hello there");
    assert!(first.get("tools").is_none(), "no tools offered: {first}");
    t.wait_for("the answer", |s| s.contains("It is late."));

    t.keys("F9");
    t.wait_for("the switch", |s| s.contains("persona: Clock"));
    t.keys("t");
    let s = t.wait_for("the overlay", |s| s.contains("1 of 4 tools offered"));
    assert!(s.contains("date_time (built-in): offered"), "{s}");
    t.keys("Escape");

    type_turn(&t, "what time is it");
    let asked_clock = asked(&requests, "what time is it");
    assert_eq!(offered(&asked_clock), ["date_time"], "{asked_clock}");
    // The call ran: its result went back to the LLM.
    let with_result = requests
        .recv_timeout(Duration::from_secs(30))
        .expect("the round with the tool's result");
    let result = with_result["messages"]
        .as_array()
        .and_then(|m| m.iter().find(|m| m["role"] == "tool"))
        .and_then(|m| m["content"].as_str())
        .unwrap_or_default()
        .to_string();
    let year = time::OffsetDateTime::now_utc().year().to_string();
    assert!(result.contains(&year), "the date and time: {result:?}");
    t.wait_for("the call in the feed", |s| {
        s.contains("date_time") && s.contains("ok")
    });
    // The answer with the time is in before the next turn: a turn typed while it is
    // still coming would join that exchange (seen under a loaded suite).
    t.wait_for("the answer with the time", |s| {
        s.matches("It is late.").count() >= 2
    });

    t.keys("F1");
    t.wait_for("the switch back", |s| s.contains("persona: Moshi"));
    type_turn(&t, "and now");
    let last = asked(&requests, "and now");
    assert!(last.get("tools").is_none(), "tools gone again: {last}");
    t.keys("q");
    let journal = t.journal();
    let calls: Vec<_> = journal.iter().filter(|r| r["kind"] == "tool").collect();
    assert_eq!(calls.len(), 1, "{journal:?}");
    assert_eq!(calls[0]["tool"], "date_time");
}

/// `doctor` lists the tools of the persona a run would start with, and names what a
/// switch to each other persona that lists tools would bring.
#[test]
fn doctor_lists_the_tools_of_the_persona_a_run_starts_with() {
    let tmp = tempfile::tempdir().unwrap();
    let personas = tmp.path().join("config/assistant/personas");
    std::fs::create_dir_all(&personas).unwrap();
    std::fs::write(personas.join("clock.toml"), CLOCK).unwrap();
    let doctor = |extra: &[&str]| {
        let out = common::assistant(tmp.path())
            .env("HOME", tmp.path())
            .args(["doctor", "--engine", "cascade"])
            .args(extra)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let first = doctor(&[]);
    for line in [
        "access: read-only; persona Moshi: 0 of 4 tools offered",
        "date_time (built-in): not offered: this persona lists no tools",
        "persona Clock (on a switch): date_time",
    ] {
        assert!(first.contains(line), "{line}:\n{first}");
    }
    let clock = doctor(&["--persona", "Clock"]);
    for line in [
        "persona Clock: 1 of 4 tools offered",
        "date_time (built-in): offered",
        "look_at_screen (built-in): not offered: not in the persona's tools",
    ] {
        assert!(clock.contains(line), "{line}:\n{clock}");
    }
}
