//! Tools through the whole binary, headless: a spoken question (a WAV) goes to the
//! recogniser, then to a stand-in OpenAI-compatible server (written here, so that it
//! is deterministic) that calls tools; the tools run (server-everything over MCP, the
//! built-in date and time), their results go back, and the answer is spoken. All of it
//! is journalled, and `history show` prints the calls. With consent refused, the tool
//! does not run and the LLM is told so.

use crate::common;

use assistant::app::bench::cascade::script;
use common::*;
use serde_json::{json, Value};
use std::io::Write;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

fn npm_server(bin: &str) -> PathBuf {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tools/mcp_servers/node_modules/.bin")
        .join(bin);
    assert!(
        p.exists(),
        "{} is missing: run `npm ci --prefix tools/mcp_servers` (./dev test does)",
        p.display()
    );
    p
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

/// Tool calls streamed as OpenAI does: the name first, the arguments in two pieces.
fn calls(list: &[(&str, &str)]) -> String {
    let mut ev = Vec::new();
    for (i, (name, args)) in list.iter().enumerate() {
        let (a, b) = args.split_at(args.len() / 2);
        ev.push(json!({"choices":[{"index":0,"delta":{"tool_calls":[{"index":i,"id":format!("call_{name}"),"type":"function","function":{"name":name,"arguments":""}}]},"finish_reason":null}]}));
        ev.push(json!({"choices":[{"index":0,"delta":{"tool_calls":[{"index":i,"function":{"arguments":a}}]},"finish_reason":null}]}));
        ev.push(json!({"choices":[{"index":0,"delta":{"tool_calls":[{"index":i,"function":{"arguments":b}}]},"finish_reason":null}]}));
    }
    ev.push(json!({"choices":[{"index":0,"delta":{},"finish_reason":"tool_calls"}]}));
    sse(&ev)
}

fn words(text: &str) -> String {
    let mut ev: Vec<Value> = text
        .split_inclusive(' ')
        .map(|w| json!({"choices":[{"index":0,"delta":{"content":w},"finish_reason":null}]}))
        .collect();
    ev.push(json!({"choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}));
    sse(&ev)
}

/// The stand-in LLM: answers by how many tool results the request already holds,
/// following `script` (one reply per round); every request body is kept.
fn stand_in(script: Vec<String>) -> (String, Arc<Mutex<Vec<Value>>>) {
    stand_in_with(move |_, round| {
        script
            .get(round)
            .cloned()
            .unwrap_or_else(|| words("Done. "))
    })
}

/// The stand-in LLM answering `reply(request number from 0, round)`.
fn stand_in_with(
    reply: impl Fn(usize, usize) -> String + Send + 'static,
) -> (String, Arc<Mutex<Vec<Value>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/v1", listener.local_addr().unwrap());
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s = seen.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut c) = conn else { return };
            let body: Value =
                serde_json::from_str(common::http_body(&common::read_http_request(&mut c)))
                    .unwrap_or(Value::Null);
            // A round is known by the assistant tool-call messages already in it.
            let round = body["messages"].as_array().map_or(0, |m| {
                m.iter().filter(|m| m.get("tool_calls").is_some()).count()
            });
            let n = {
                let mut seen = s.lock().unwrap();
                seen.push(body);
                seen.len() - 1
            };
            let _ = c.write_all(reply(n, round).as_bytes());
        }
    });
    (url, seen)
}

fn journal(tmp: &Path) -> Vec<Value> {
    let dir = tmp.join("data/assistant/sessions");
    let file = std::fs::read_dir(&dir)
        .expect("a sessions directory")
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|x| x == "jsonl"))
        .expect("a journal");
    std::fs::read_to_string(file)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn run_cascade(tmp: &Path, url: &str, extra: &[&str]) -> std::process::Output {
    run_script(tmp, url, extra, script(0, 1.5, 0.3))
}

fn run_script(
    tmp: &Path,
    url: &str,
    extra: &[&str],
    s: assistant::app::bench::cascade::Script,
) -> std::process::Output {
    let (input, output) = (tmp.join("q.wav"), tmp.join("a.wav"));
    assistant::audio::wav::write_wav_mono(&input, 24_000, &s.pcm).unwrap();
    let mut c = assistant(tmp);
    c.env("XDG_CACHE_HOME", tmp.join("cache"))
        .current_dir(tmp)
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
        .arg("--output")
        .arg(&output)
        .args(["--llm-url", url, "--llm-model", "stand-in"])
        .args(extra);
    run_ok(&mut c)
}

#[test]
fn a_spoken_question_calls_tools_in_one_turn_and_in_sequence_and_the_answer_is_spoken() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = tmp.path().join("mcp.json");
    std::fs::write(
        &cfg,
        json!({"mcpServers": {"everything": {"command": npm_server("mcp-server-everything")}}})
            .to_string(),
    )
    .unwrap();
    let (url, seen) = stand_in(vec![
        // Two calls in one round, then one more after their results.
        calls(&[
            ("get-sum", r#"{"a": 19, "b": 23}"#),
            ("echo", r#"{"message": "hello tools"}"#),
        ]),
        calls(&[("date_time", "{}")]),
        words("The sum is forty two. "),
    ]);
    let out = run_cascade(tmp.path(), &url, &["--mcp-config", cfg.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("The sum is forty two."),
        "the answer is said: {stdout}\n{stderr}"
    );
    assert!(stderr.contains("tool: get-sum ok"), "{stderr}");

    // The LLM was offered the tools and got each result, by its call's id.
    let reqs = seen.lock().unwrap().clone();
    assert_eq!(reqs.len(), 3, "three rounds");
    let names: Vec<&str> = reqs[0]["tools"]
        .as_array()
        .expect("tools offered")
        .iter()
        .filter_map(|t| t["function"]["name"].as_str())
        .collect();
    assert!(
        names.contains(&"get-sum") && names.contains(&"date_time"),
        "{names:?}"
    );
    assert!(
        !names.contains(&"run_shell"),
        "read-only by default: {names:?}"
    );
    let results = |r: &Value| -> Vec<(String, String)> {
        r["messages"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|m| m["role"] == "tool")
            .map(|m| {
                (
                    m["tool_call_id"].as_str().unwrap().to_string(),
                    m["content"].as_str().unwrap().to_string(),
                )
            })
            .collect()
    };
    let r1 = results(&reqs[1]);
    assert_eq!(r1.len(), 2);
    assert_eq!(r1[0].0, "call_get-sum");
    assert!(r1[0].1.contains("42"), "{r1:?}");
    assert!(r1[1].1.contains("hello tools"), "{r1:?}");
    let r2 = results(&reqs[2]);
    assert_eq!(r2.len(), 3);
    assert!(r2[2].1.contains("UTC"), "the date and time: {r2:?}");

    // The journal keeps each call, its arguments, consent and result.
    let records = journal(tmp.path());
    let tools: Vec<&Value> = records.iter().filter(|r| r["kind"] == "tool").collect();
    assert_eq!(tools.len(), 3, "{tools:?}");
    assert_eq!(tools[0]["tool"], "get-sum");
    assert!(tools[0]["args"].as_str().unwrap().contains("19"));
    assert_eq!(tools[0]["consent"], "not needed");
    assert_eq!(tools[0]["outcome"], "ok");
    assert!(tools[0]["result"].as_str().unwrap().contains("42"));
    // Added latency: from the last tool's result to the first heard word of the answer
    // (the journal's text records are written as their audio starts).
    let t_result = tools[2]["t"].as_f64().unwrap();
    let first_word = records
        .iter()
        .filter(|r| r["kind"] == "text")
        .filter_map(|r| r["t"].as_f64())
        .find(|t| *t >= t_result)
        .expect("the answer's words after the tool's result");
    eprintln!(
        "figure: tool result to the answer's first audio: {:.0} ms (demo parts, --realtime; load-dependent)",
        (first_word - t_result) * 1e3
    );

    let hist = run_ok(assistant(tmp.path()).args(["history", "show", "last"]));
    let md = String::from_utf8_lossy(&hist.stdout);
    assert!(
        md.contains("tool `get-sum`") && md.contains("consent: not needed"),
        "{md}"
    );
    assert!(md.contains("42"), "{md}");
}

#[test]
fn consent_refused_the_tool_does_not_run_and_the_llm_is_told() {
    let tmp = tempfile::tempdir().unwrap();
    let marker = tmp.path().join("ran.txt");
    let (url, seen) = stand_in(vec![
        calls(&[(
            "run_shell",
            &json!({"command": format!("touch {}", marker.display())}).to_string(),
        )]),
        words("I did not run it. "),
    ]);
    // No mcp.json: --tools-access alone turns on the built-in actions.
    let out = run_cascade(tmp.path(), &url, &["--tools-access", "ask"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!marker.exists(), "the command did not run: {stderr}");
    assert!(
        stderr.contains("allow? Run `touch"),
        "the question shows the command: {stderr}"
    );
    let reqs = seen.lock().unwrap().clone();
    assert_eq!(reqs.len(), 2, "{stderr}");
    let told = reqs[1]["messages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["role"] == "tool")
        .expect("the tool's answer")["content"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(told.contains("did not allow"), "{told}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("I did not run it."));
    let records = journal(tmp.path());
    let t = records
        .iter()
        .find(|r| r["kind"] == "tool")
        .expect("the call is journalled");
    assert_eq!(t["outcome"], "refused");
    assert!(t["consent"].as_str().unwrap().contains("refused"), "{t}");
    assert!(t["args"].as_str().unwrap().contains("touch"));
}

#[test]
fn doctor_lists_the_tools_of_the_servers_that_start_and_names_those_that_do_not() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = tmp.path().join("mcp.json");
    std::fs::write(
        &cfg,
        json!({"mcpServers": {
            "everything": {"command": npm_server("mcp-server-everything")},
            "broken": {"command": "/nonexistent/server"},
        }})
        .to_string(),
    )
    .unwrap();
    let out = assistant(tmp.path())
        .env("XDG_CACHE_HOME", tmp.path().join("cache"))
        .args(["doctor", "--engine", "cascade", "--mcp-config"])
        .arg(&cfg)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("\ntools\n"), "{stdout}");
    assert!(
        stdout.contains("echo (mcp: everything): offered"),
        "{stdout}"
    );
    assert!(
        stdout.contains("run_shell (built-in, asks first): not offered"),
        "{stdout}"
    );
    assert!(stdout.contains("`broken` did not start"), "{stdout}");
}

#[test]
fn a_slow_tool_is_acknowledged_in_speech_and_talking_over_it_cancels_it() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = tmp.path().join("mcp.json");
    std::fs::write(
        &cfg,
        json!({"mcpServers": {"everything": {"command": npm_server("mcp-server-everything")}}})
            .to_string(),
    )
    .unwrap();
    // The first question starts a 20 s operation; the user speaks again 3.5 s after it.
    let (url, seen) = stand_in_with(|n, round| match (n, round) {
        (0, 0) => calls(&[(
            "trigger-long-running-operation",
            r#"{"duration": 20, "steps": 20}"#,
        )]),
        _ => words("Stopped. "),
    });
    let started = std::time::Instant::now();
    let out = run_script(
        tmp.path(),
        &url,
        &["--mcp-config", cfg.to_str().unwrap()],
        script(1, 1.2, 3.5),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    // "One moment." begins to play; the user's words stop it (what was heard is printed).
    assert!(
        stdout.trim_start().starts_with("One"),
        "a tool over a second is acknowledged: {stdout}\n{stderr}"
    );
    assert!(stderr.contains("you spoke over the reply"), "{stderr}");
    let records = journal(tmp.path());
    let call = records
        .iter()
        .find(|r| r["kind"] == "tool")
        .expect("the call is journalled");
    assert_eq!(call["tool"], "trigger-long-running-operation");
    assert_eq!(call["outcome"], "cancelled", "{call}\n{stderr}");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(19),
        "the run did not wait for the 20 s operation: {:?}",
        started.elapsed()
    );
    assert!(seen.lock().unwrap().len() >= 2, "the conversation went on");
}
