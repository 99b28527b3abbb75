//! Typed turns through the whole binary: in the TUI (tmux) `/` opens the editor, the
//! typed words go to the LLM as the user's turn, and the answer shows in the feed and
//! the journal; headless, `--say` does the same once. The cascade runs on its demo
//! parts, with a stand-in OpenAI-compatible server (written here) as its LLM, so the
//! answer is known. A model that hears only audio says so in the editor, and Tab
//! saves the cascade as the engine for the next start.

use crate::common;
use crate::tmux_support;
use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use tmux_support::Tmux;

const ANSWER: &str = "Forty two is the answer.";

/// A chat-completions server that streams `ANSWER` to every request, and hands the
/// test each request's body.
struct Llm {
    url: String,
    requests: mpsc::Receiver<String>,
}

fn llm() -> Llm {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/v1", listener.local_addr().unwrap());
    let (tx, requests) = mpsc::channel();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut s) = conn else { return };
            let tx = tx.clone();
            std::thread::spawn(move || {
                let req = common::read_http_request(&mut s);
                let _ = tx.send(req.clone());
                let _ = answer(&mut s, &req);
            });
        }
    });
    Llm { url, requests }
}

fn answer(s: &mut TcpStream, req: &str) -> std::io::Result<()> {
    if !req.starts_with("POST ") || !req.contains("/chat/completions") {
        return s.write_all(
            b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        );
    }
    s.write_all(
        b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: close\r\n\r\n",
    )?;
    for word in ANSWER.split_inclusive(' ') {
        let piece = serde_json::json!({"choices":[{"index":0,"delta":{"content":word},"finish_reason":null}]});
        s.write_all(format!("data: {piece}\n\n").as_bytes())?;
    }
    s.write_all(b"data: [DONE]\n\n")?;
    s.flush()
}

/// The user's words in the chat requests the LLM saw, until one has `text`.
fn asked(llm: &Llm, text: &str) -> String {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let req = llm
            .requests
            .recv_timeout(left)
            .unwrap_or_else(|_| panic!("no chat request with {text:?} reached the LLM"));
        if req.contains("/chat/completions") && req.contains(text) {
            return req;
        }
    }
}

/// Seconds of silence as a 24 kHz WAV: nothing for the recogniser to hear.
fn silence(dir: &Path, seconds: f32) -> PathBuf {
    let path = dir.join("silence.wav");
    let n = (24_000.0 * seconds) as usize;
    assistant::audio::wav::write_wav_mono(&path, 24_000, &vec![0.0; n]).unwrap();
    path
}

#[test]
fn a_typed_turn_is_answered_in_the_feed_and_marked_in_the_journal() {
    let llm = llm();
    let dir = tempfile::tempdir().unwrap();
    let input = silence(dir.path(), 120.0);
    let input = input.to_str().unwrap();
    let Some(t) = Tmux::start(&[
        "--engine",
        "cascade",
        "--demo",
        "--seed",
        "7",
        "--llm-url",
        &llm.url,
        "--llm-model",
        "stand-in",
        "--input",
        input,
    ]) else {
        return;
    };
    t.wait_for("the cascade ready", |s| s.contains("model ready: cascade"));
    t.keys("/");
    let s = t.wait_for("the editor", |s| {
        s.contains("you ›") && s.contains("Enter send")
    });
    assert!(
        !s.contains("hears only audio"),
        "the cascade takes text:\n{s}"
    );
    t.tmux(&["send-keys", "-t", "e2e", "-l", "what is the anser"]);
    // Edited: back over the last word's tail, the missing letter put in.
    t.keys("Left");
    t.keys("Left");
    t.tmux(&["send-keys", "-t", "e2e", "-l", "w"]);
    t.wait_for("the typed line", |s| s.contains("you › what is the answer"));
    t.keys("Enter");
    let req = asked(&llm, "what is the answer");
    let body: serde_json::Value =
        serde_json::from_str(req.split_once("\r\n\r\n").unwrap().1).unwrap();
    let last = body["messages"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(
        (last["role"].as_str(), last["content"].as_str()),
        (Some("user"), Some("what is the answer")),
        "the typed words are the user's turn:\n{req}"
    );
    let s = t.wait_for("the answer in the feed", |s| {
        s.contains("⌨ what is the answer") && s.contains(ANSWER)
    });
    assert!(!s.contains("you ›"), "the editor closed on Enter:\n{s}");
    // ↑ brings the turn back.
    t.keys("/");
    t.keys("Up");
    t.wait_for("the history", |s| s.contains("you › what is the answer"));
    t.keys("Escape");
    t.wait_for("the editor closed", |s| !s.contains("you ›"));
    t.keys("q");
    let journal = t.journal();
    let typed: Vec<_> = journal.iter().filter(|r| r["kind"] == "typed").collect();
    assert_eq!(typed.len(), 1, "{journal:?}");
    assert_eq!(typed[0]["text"], "what is the answer");
    let text: String = journal
        .iter()
        .filter(|r| r["kind"] == "text")
        .filter_map(|r| r["text"].as_str())
        .collect();
    assert!(text.contains("Forty two is the answer"), "{text:?}");
}

#[test]
fn a_model_that_hears_only_audio_says_so_in_the_editor() {
    let dir = tempfile::tempdir().unwrap();
    let input = silence(dir.path(), 120.0);
    let Some(t) = Tmux::start(&["--engine", "loopback", "--input", input.to_str().unwrap()]) else {
        return;
    };
    t.wait_for("ready", |s| s.contains("model ready: loopback"));
    t.keys("/");
    t.wait_for("the refusal and the offer", |s| {
        s.contains("loopback hears only audio") && s.contains("Tab the cascade from the next start")
    });
    t.tmux(&["send-keys", "-t", "e2e", "-l", "hello"]);
    t.keys("Enter");
    t.wait_for("not sent", |s| {
        s.contains("not sent (loopback hears only audio): hello") && s.contains("--engine cascade")
    });
    // The offer taken: the cascade is saved as the engine for the next start.
    t.keys("/");
    t.keys("Tab");
    t.wait_for("the offer taken", |s| {
        s.contains("the cascade is the engine from the next start")
    });
    let config = std::fs::read_to_string(t.path("config/assistant/config.toml")).unwrap();
    assert_eq!(config.trim(), r#"engine = "cascade""#);
    t.keys("Escape");
    t.wait_for("the editor closed", |s| !s.contains("you ›"));
    t.keys("q");
}

#[test]
fn say_sends_one_typed_turn_headless() {
    let llm = llm();
    let tmp = tempfile::tempdir().unwrap();
    let input = silence(tmp.path(), 2.0);
    let out = common::run_ok(
        common::assistant(tmp.path())
            .env("XDG_CACHE_HOME", tmp.path().join("cache"))
            .args(["--engine", "cascade", "--demo", "--headless", "--seed", "7"])
            .args([
                "--llm-url",
                &llm.url,
                "--llm-model",
                "stand-in",
                "--say",
                "what is the answer",
                "--input",
            ])
            .arg(&input),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stderr.contains("you (typed): what is the answer"),
        "{stderr}"
    );
    assert!(
        stdout.contains(ANSWER),
        "the answer is written:\n{stdout}\n{stderr}"
    );
    asked(&llm, "what is the answer");
}
