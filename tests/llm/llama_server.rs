//! The OpenAI-compatible client against a real server: llama.cpp's, as
//! llama-cpp-python serves it (`python -m llama_cpp.server`), on 127.0.0.1, running the
//! tiny Qwen2 GGUF this test writes. The same file also checks our in-process loader
//! against llama.cpp: the same token ids for the same text, the same greedy reply.
//!
//! It needs `llama-cpp-python[server]` in the Python named by ASSISTANT_LLAMA_PYTHON
//! (else `python3`); without it the test says so and skips (see README, "Cascade LLM").

use assistant::bus::Cancel;
use assistant::models::llm::synthetic::{write_tiny_qwen2, TinyQwen2};
use assistant::models::llm::{GgufLlm, GgufLlmOptions, OpenAiLlm, OpenAiOptions};
use assistant::models::parts::{ChatMessage, ChatRequest, ChatRole, Llm};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn python() -> Result<String, String> {
    let py = std::env::var("ASSISTANT_LLAMA_PYTHON").unwrap_or_else(|_| "python3".into());
    let ok = Command::new(&py)
        .args(["-c", "import llama_cpp.server"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if ok {
        Ok(py)
    } else {
        Err(format!(
            "`{py}` cannot import llama_cpp.server; install it with \
             `pip install 'llama-cpp-python[server]'` (or set ASSISTANT_LLAMA_PYTHON)"
        ))
    }
}

/// Said past the test harness's capture (a plain `eprintln!` shows only on failure),
/// so a skip is seen in every run.
fn skipped(why: &str) {
    let _ = writeln!(
        std::io::stderr(),
        "SKIPPED llm_llama_server: no llama.cpp server: {why}"
    );
}

/// The server process, killed when dropped.
struct LlamaServer {
    child: Child,
    url: String,
    log: PathBuf,
}

impl Drop for LlamaServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A plain HTTP/1.0 request; the status and body.
fn http(url: &str, method: &str, path: &str, body: &str) -> std::io::Result<(u16, String)> {
    let addr = url.trim_start_matches("http://");
    let mut s = TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    write!(
        s,
        "{method} {path} HTTP/1.0\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    let code = out
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = out
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_string();
    Ok((code, body))
}

fn start(py: &str, model: &Path, dir: &Path) -> LlamaServer {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let log = dir.join("llama-server.log");
    let f = std::fs::File::create(&log).unwrap();
    let child = Command::new(py)
        .args(["-m", "llama_cpp.server", "--model"])
        .arg(model)
        .args(["--host", "127.0.0.1", "--port", &port.to_string()])
        .args([
            "--n_ctx",
            "1024",
            "--n_threads",
            "2",
            "--model_alias",
            "tiny",
        ])
        .stdout(f.try_clone().unwrap())
        .stderr(f)
        .spawn()
        .unwrap();
    let mut server = LlamaServer {
        child,
        url: format!("http://127.0.0.1:{port}"),
        log,
    };
    let t = Instant::now();
    loop {
        if let Ok((200, _)) = http(&server.url, "GET", "/v1/models", "") {
            eprintln!("llama.cpp server up in {:.1} s", t.elapsed().as_secs_f64());
            return server;
        }
        let gone = server.child.try_wait().unwrap();
        if gone.is_some() || t.elapsed() > Duration::from_secs(120) {
            panic!(
                "llama.cpp's server did not start ({gone:?}); its log:\n{}",
                std::fs::read_to_string(&server.log).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn request(max_tokens: u32) -> ChatRequest {
    ChatRequest {
        system: "You are a helpful assistant.".into(),
        messages: vec![ChatMessage {
            role: ChatRole::User,
            content: "hello world, is it you?".into(),
        }],
        temperature: 0.0,
        max_tokens,
        model: None,
    }
}

#[test]
fn our_client_streams_from_llama_cpp_and_our_loader_agrees_with_it() {
    let py = match python() {
        Ok(p) => p,
        Err(why) => {
            skipped(&why);
            return;
        }
    };
    let tmp = tempfile::tempdir().unwrap();
    let model = tmp.path().join("tiny-qwen2.gguf");
    write_tiny_qwen2(&model, &TinyQwen2::default()).unwrap();
    let t0 = Instant::now();
    let server = start(&py, &model, tmp.path());
    let ours = GgufLlm::load(
        &model,
        &moshi::candle::Device::Cpu,
        &GgufLlmOptions::default(),
        &Cancel::new(),
    )
    .unwrap();

    // 1. llama.cpp reads the tokenizer metadata as we do: the same ids.
    for text in [
        "hello world, is it you?",
        "The system user said: 12 apples\n\n  ok",
        "naïve 日本 🎉",
    ] {
        let (code, body) = http(
            &server.url,
            "POST",
            "/extras/tokenize",
            &serde_json::json!({"input": text}).to_string(),
        )
        .unwrap();
        assert_eq!(code, 200, "{body}");
        let theirs: Vec<u32> = serde_json::from_str::<serde_json::Value>(&body).unwrap()["tokens"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap() as u32)
            .collect();
        assert_eq!(ours.tokenizer().encode(text), theirs, "{text:?}");
    }

    eprintln!("tokenizer checked at {:.1} s", t0.elapsed().as_secs_f64());
    // 2. Our client streams the reply, piece by piece.
    let llm = OpenAiLlm::new(OpenAiOptions::new(&server.url, "tiny")).unwrap();
    let mut pieces = vec![];
    let t = Instant::now();
    let mut first = None;
    llm.stream(&request(24), &Cancel::new(), &mut |p| {
        first.get_or_insert(t.elapsed());
        pieces.push(p.to_string());
    })
    .unwrap_or_else(|e| {
        panic!(
            "{e:?}\n{}",
            std::fs::read_to_string(&server.log).unwrap_or_default()
        )
    });
    let total = t.elapsed();
    assert!(pieces.len() > 4, "{pieces:?}");
    let served = pieces.concat();

    eprintln!("streamed at {:.1} s", t0.elapsed().as_secs_f64());
    // 3. The same greedy reply in-process: same template, same model maths (asked
    // without llama-cpp-python's default repeat penalty, which we do not apply).
    let (code, body) = http(
        &server.url,
        "POST",
        "/v1/chat/completions",
        &serde_json::json!({
            "model": "tiny",
            "messages": [
                {"role": "system", "content": request(1).system},
                {"role": "user", "content": request(1).messages[0].content},
            ],
            "temperature": 0.0,
            "repeat_penalty": 1.0,
            "max_tokens": 24,
        })
        .to_string(),
    )
    .unwrap();
    assert_eq!(code, 200, "{body}");
    let theirs = serde_json::from_str::<serde_json::Value>(&body).unwrap()["choices"][0]["message"]
        ["content"]
        .as_str()
        .unwrap()
        .to_string();
    let mut mine = String::new();
    ours.stream(&request(24), &Cancel::new(), &mut |p| mine.push_str(p))
        .unwrap();
    eprintln!("llama.cpp greedy: {theirs:?}\nin-process greedy: {mine:?}\nstreamed (repeat penalty 1.1): {served:?}");
    // llama.cpp keeps its KV cache in f16, we keep f32: a near tie late in a
    // random model's reply could go either way, so the first tokens must agree.
    let (a, b) = (
        ours.tokenizer().encode(&theirs),
        ours.tokenizer().encode(&mine),
    );
    let same = a.iter().zip(&b).take_while(|(x, y)| x == y).count();
    assert!(same >= 16, "the replies part after {same} tokens");
    eprintln!("greedy compared at {:.1} s", t0.elapsed().as_secs_f64());
    // 4. A cancel mid-reply returns at once.
    let cancel = Cancel::new();
    let mut n = 0;
    let mut at = None;
    llm.stream(&request(400), &cancel, &mut |_| {
        n += 1;
        if n == 2 {
            cancel.cancel();
            at = Some(Instant::now());
        }
    })
    .unwrap();
    let took = at.unwrap().elapsed();
    eprintln!("cancelled at {:.1} s", t0.elapsed().as_secs_f64());
    assert!(took < Duration::from_millis(250), "{took:?}");

    let tokens = ours.count_tokens(&served);
    let first = first.unwrap();
    eprintln!(
        "FIGURES llama.cpp server, tiny model: first piece {:.0} ms, {tokens} tokens, {:.1} tokens/s after the first",
        first.as_secs_f64() * 1e3,
        (tokens.saturating_sub(1)) as f64 / (total - first).as_secs_f64().max(1e-9)
    );
}

/// Figures at the default model's size (Qwen2.5 0.5B's shape, random, Q8_0) through
/// llama.cpp's server, to set beside tests/llm/gguf.rs's in-process figures:
/// `ASSISTANT_LLAMA_PYTHON=… cargo test --test llm llama_server:: -- --ignored --nocapture`.
#[test]
#[ignore]
fn figures_at_the_default_models_size_through_llama_cpp() {
    let py = match python() {
        Ok(p) => p,
        Err(why) => {
            skipped(&why);
            return;
        }
    };
    let tmp = tempfile::tempdir().unwrap();
    let model = tmp.path().join("qwen-0.5b-shape.gguf");
    write_tiny_qwen2(&model, &TinyQwen2::qwen25_05b_shape()).unwrap();
    let server = start(&py, &model, tmp.path());
    let llm = OpenAiLlm::new(OpenAiOptions::new(&server.url, "tiny")).unwrap();
    let mut req = request(32);
    req.messages[0].content = "Hello! Tell me about the weather in two sentences.".into();
    for label in ["first request", "same again (llama.cpp reuses its cache)"] {
        let t = Instant::now();
        let mut first = None;
        let mut pieces = 0usize;
        llm.stream(&req, &Cancel::new(), &mut |_| {
            first.get_or_insert(t.elapsed());
            pieces += 1;
        })
        .unwrap();
        let total = t.elapsed();
        let first = first.unwrap_or(total);
        eprintln!(
            "FIGURES llama.cpp server, Qwen2.5-0.5B shape (Q8_0, random): {label}: first piece {:.0} ms, {pieces} pieces, {:.1} pieces/s after the first",
            first.as_secs_f64() * 1e3,
            pieces.saturating_sub(1) as f64 / (total - first).as_secs_f64().max(1e-9)
        );
    }
}
