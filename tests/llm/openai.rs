//! The OpenAI-compatible client against hand-written HTTP servers on 127.0.0.1, one
//! per misbehaviour a real server shows: down, slow, HTTP errors, malformed or cut
//! streams, endless replies; and a cancel that drops the connection at once.
//! (tests/llm/llama_server.rs runs it against llama.cpp's own server.)

use crate::common;
use assistant::bus::Cancel;
use assistant::models::llm::{OpenAiLlm, OpenAiOptions};
use assistant::models::parts::{ChatMessage, ChatRequest, ChatRole, Llm, LlmError};
use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// A server that answers every connection with `respond`; requests come out of `rx`.
struct Server {
    url: String,
    rx: mpsc::Receiver<String>,
}

fn serve(respond: impl Fn(&mut TcpStream) + Send + Sync + 'static) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let (tx, rx) = mpsc::channel();
    let respond = std::sync::Arc::new(respond);
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut s) = conn else { return };
            let (tx, respond) = (tx.clone(), respond.clone());
            std::thread::spawn(move || {
                let req = common::read_http_request(&mut s);
                let _ = tx.send(req);
                respond(&mut s);
            });
        }
    });
    Server { url, rx }
}

const SSE_HEAD: &str =
    "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: close\r\n\r\n";

fn piece(text: &str) -> String {
    format!(
        "data: {}\n\n",
        serde_json::json!({"choices":[{"index":0,"delta":{"content":text},"finish_reason":null}]})
    )
}

fn send(s: &mut TcpStream, text: &str) -> std::io::Result<()> {
    s.write_all(text.as_bytes())?;
    s.flush()
}

fn status(code: u16, body: &str) -> impl Fn(&mut TcpStream) + Send + Sync + 'static {
    let body = body.to_string();
    move |s| {
        let _ = send(
            s,
            &format!(
                "HTTP/1.1 {code} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            ),
        );
    }
}

fn request() -> ChatRequest {
    ChatRequest {
        system: "Be brief.".into(),
        messages: vec![ChatMessage {
            role: ChatRole::User,
            content: "Hello?".into(),
        }],
        temperature: 0.7,
        max_tokens: 50,
        model: None,
    }
}

fn options(url: &str) -> OpenAiOptions {
    let mut o = OpenAiOptions::new(url, "tiny");
    o.api_key_env = "ASSISTANT_TEST_NO_SUCH_KEY".into();
    o.first_piece_timeout = Duration::from_millis(400);
    o.chunk_gap_timeout = Duration::from_millis(300);
    o
}

fn run(o: OpenAiOptions) -> (Vec<String>, Result<(), LlmError>, Duration) {
    let llm = OpenAiLlm::new(o).unwrap();
    let mut pieces = vec![];
    let t = Instant::now();
    let r = llm.stream(&request(), &Cancel::new(), &mut |p| {
        pieces.push(p.to_string())
    });
    (pieces, r, t.elapsed())
}

#[test]
fn pieces_arrive_in_order_and_the_request_is_a_streamed_chat_with_the_key() {
    let server = serve(|s| {
        let _ = send(s, SSE_HEAD);
        let _ = send(
            s,
            "data: {\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\"}}]}\n\n",
        );
        for p in ["Hel", "lo", " thé", "re"] {
            let _ = send(s, &piece(p));
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = send(s, "data: {\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}\n\ndata: [DONE]\n\n");
    });
    std::env::set_var("ASSISTANT_TEST_KEY_A", "sk-test-123");
    let mut o = options(&server.url);
    o.api_key_env = "ASSISTANT_TEST_KEY_A".into();
    let (pieces, r, _) = run(o);
    r.unwrap();
    assert_eq!(pieces, ["Hel", "lo", " thé", "re"]);
    let req = server.rx.recv().unwrap();
    assert!(req.starts_with("POST /v1/chat/completions "), "{req}");
    assert!(req.contains("authorization: Bearer sk-test-123"), "{req}");
    let body: serde_json::Value =
        serde_json::from_str(&req[req.find("\r\n\r\n").unwrap() + 4..]).unwrap();
    assert_eq!(body["stream"], true);
    assert_eq!(body["model"], "tiny");
    assert_eq!(body["messages"][0]["content"], "Be brief.");
    assert_eq!(body["messages"][1]["role"], "user");
}

#[test]
fn a_server_that_is_down_is_named_and_worth_retrying() {
    let port = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let (_, r, took) = run(options(&format!("http://127.0.0.1:{port}")));
    let e = r.unwrap_err();
    assert!(e.transient, "{e:?}");
    assert!(
        e.message.contains(&format!("127.0.0.1:{port}")) && e.message.contains("refused"),
        "{e:?}"
    );
    assert!(e.remedy.contains("Start the server"), "{e:?}");
    assert!(took < Duration::from_secs(2), "{took:?}");
}

#[test]
fn a_server_that_never_answers_times_out_on_the_first_piece() {
    let server = serve(|_| std::thread::sleep(Duration::from_secs(10)));
    let (_, r, took) = run(options(&server.url));
    let e = r.unwrap_err();
    assert!(
        e.transient && e.message.contains("no reply within 0.4 s"),
        "{e:?}"
    );
    assert!(
        took >= Duration::from_millis(400) && took < Duration::from_secs(2),
        "{took:?}"
    );
}

#[test]
fn a_stream_that_stalls_mid_reply_times_out_on_the_gap() {
    let server = serve(|s| {
        let _ = send(s, SSE_HEAD);
        let _ = send(s, &piece("Hi"));
        std::thread::sleep(Duration::from_secs(10));
    });
    let (pieces, r, took) = run(options(&server.url));
    let e = r.unwrap_err();
    assert_eq!(pieces, ["Hi"]);
    assert!(
        e.transient && e.message.contains("stopped sending for 0.3 s"),
        "{e:?}"
    );
    assert!(took < Duration::from_secs(2), "{took:?}");
}

#[test]
fn http_errors_say_what_to_fix() {
    let cases: [(u16, &str, bool, &str, &str); 6] = [
        (
            401,
            r#"{"error":{"message":"Incorrect API key"}}"#,
            false,
            "Incorrect API key",
            "Set $ASSISTANT_TEST_NO_SUCH_KEY",
        ),
        (
            404,
            r#"{"error":{"message":"model 'tiny' not found"}}"#,
            false,
            "no model `tiny`",
            "--llm-model",
        ),
        (
            429,
            r#"{"error":"slow down"}"#,
            true,
            "rate-limiting",
            "tries again",
        ),
        (500, "internal boom", true, "internal boom", "server's log"),
        (
            400,
            r#"{"detail":"max_tokens too large"}"#,
            false,
            "max_tokens too large",
            "persona's LLM settings",
        ),
        // llama-server's own words when the tools and history outgrow its context.
        (
            400,
            r#"{"error":{"code":400,"message":"request (3823 tokens) exceeds the available context size (2048 tokens), try increasing it","type":"exceed_context_size_error"}}"#,
            false,
            "exceeds the available context size",
            "fewer tools",
        ),
    ];
    for (code, body, transient, said, fix) in cases {
        let server = serve(status(code, body));
        let (pieces, r, _) = run(options(&server.url));
        let e = r.unwrap_err();
        assert!(pieces.is_empty());
        assert_eq!(e.transient, transient, "{code}: {e:?}");
        assert!(
            e.message.contains(&format!("HTTP {code}")) && e.message.contains(said),
            "{code}: {e:?}"
        );
        assert!(e.remedy.contains(fix), "{code}: {e:?}");
    }
}

#[test]
fn malformed_streams_are_errors_naming_what_was_wrong() {
    let cases = [
        ("data: {\"choices\": [\n\n", "not JSON"),
        ("data: {\"id\":\"x\"}\n\n", "no `choices`"),
    ];
    for (bad, said) in cases {
        let server = serve(move |s| {
            let _ = send(s, SSE_HEAD);
            let _ = send(s, &piece("ok"));
            let _ = send(s, bad);
        });
        let (pieces, r, _) = run(options(&server.url));
        let e = r.unwrap_err();
        assert_eq!(pieces, ["ok"]);
        assert!(
            e.message.contains("malformed") && e.message.contains(said),
            "{e:?}"
        );
        assert!(e.remedy.contains("OpenAI-compatible"));
    }
    // The server's own error, in the stream.
    let server = serve(|s| {
        let _ = send(s, SSE_HEAD);
        let _ = send(s, "data: {\"error\":{\"message\":\"out of memory\"}}\n\n");
    });
    let e = run(options(&server.url)).1.unwrap_err();
    assert!(e.transient && e.message.contains("out of memory"), "{e:?}");
}

#[test]
fn a_stream_cut_mid_reply_is_a_transient_error_after_the_pieces_that_came() {
    // Closed without [DONE] or a finish reason.
    let server = serve(|s| {
        let _ = send(s, SSE_HEAD);
        let _ = send(s, &piece("Half"));
    });
    let (pieces, r, _) = run(options(&server.url));
    let e = r.unwrap_err();
    assert_eq!(pieces, ["Half"]);
    assert!(
        e.transient && e.message.contains("ended before the reply was complete"),
        "{e:?}"
    );
    // Cut inside a chunk of a chunked body: the connection broke.
    let server = serve(|s| {
        let _ = send(s, "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n");
        let p = piece("Part");
        let _ = send(s, &format!("{:x}\r\n{p}\r\n", p.len()));
        let _ = send(s, "100\r\ndata: {\"cho");
    });
    let (pieces, r, _) = run(options(&server.url));
    let e = r.unwrap_err();
    assert_eq!(pieces, ["Part"]);
    assert!(
        e.transient && e.message.contains("broke mid-reply"),
        "{e:?}"
    );
}

#[test]
fn an_endless_reply_stops_at_the_size_bound() {
    let server = serve(|s| {
        let _ = send(s, SSE_HEAD);
        for _ in 0..10_000 {
            if send(s, &piece("blah ")).is_err() {
                return;
            }
        }
    });
    let mut o = options(&server.url);
    o.max_response_bytes = 10_000;
    let (pieces, r, _) = run(o);
    let e = r.unwrap_err();
    // Every piece that came before the bound is passed on; far from all were sent.
    assert!(
        !pieces.is_empty() && pieces.len() < 1000,
        "{}",
        pieces.len()
    );
    assert!(
        e.message.contains("9.8 KiB") && e.remedy.contains("max_tokens"),
        "{e:?}"
    );
}

#[test]
fn a_server_ignoring_stream_answers_in_one_piece() {
    let server = serve(status(
        200,
        r#"{"choices":[{"index":0,"message":{"role":"assistant","content":"All at once."}}]}"#,
    ));
    let (pieces, r, _) = run(options(&server.url));
    r.unwrap();
    assert_eq!(pieces, ["All at once."]);
}

#[test]
fn cancel_returns_at_once_and_drops_the_connection() {
    let (closed_tx, closed_rx) = mpsc::channel();
    let server = serve(move |s| {
        let _ = send(s, SSE_HEAD);
        // A piece every 20 ms until the client goes away.
        let t = Instant::now();
        loop {
            if send(s, &piece("word ")).is_err() {
                let _ = closed_tx.send(t.elapsed());
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
            if t.elapsed() > Duration::from_secs(10) {
                return;
            }
        }
    });
    let mut o = options(&server.url);
    o.first_piece_timeout = Duration::from_secs(5);
    let llm = OpenAiLlm::new(o).unwrap();
    let cancel = Cancel::new();
    let canceller = cancel.clone();
    let mut n = 0;
    let mut cancelled_at = None;
    llm.stream(&request(), &cancel, &mut |_| {
        n += 1;
        if n == 3 {
            canceller.cancel();
            cancelled_at = Some(Instant::now());
        }
    })
    .unwrap();
    let returned = cancelled_at.unwrap().elapsed();
    assert_eq!(n, 3, "no piece after the cancel");
    assert!(returned < Duration::from_millis(250), "{returned:?}");
    // The server notices on its next write (a write after a reset fails; the first
    // may still land in the socket buffer).
    let gone = closed_rx.recv_timeout(Duration::from_secs(3));
    assert!(
        gone.is_ok(),
        "the server kept streaming to a dropped connection"
    );

    // A cancel from another thread while the server thinks (before any piece).
    let server = serve(|_| std::thread::sleep(Duration::from_secs(10)));
    let mut o = options(&server.url);
    o.first_piece_timeout = Duration::from_secs(5);
    let llm = OpenAiLlm::new(o).unwrap();
    let cancel = Cancel::new();
    let c2 = cancel.clone();
    std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(150));
        c2.cancel();
    });
    let t = Instant::now();
    llm.stream(&request(), &cancel, &mut |_| {}).unwrap();
    let took = t.elapsed();
    assert!(
        took >= Duration::from_millis(150) && took < Duration::from_millis(1000),
        "{took:?}"
    );
}

#[test]
fn the_next_reply_works_once_the_server_is_back() {
    let port = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let llm = OpenAiLlm::new(options(&format!("http://127.0.0.1:{port}"))).unwrap();
    let e = llm
        .stream(&request(), &Cancel::new(), &mut |_| {})
        .unwrap_err();
    assert!(e.transient, "{e:?}");
    // The server comes up on the same port; the same client carries on.
    let listener = TcpListener::bind(("127.0.0.1", port)).unwrap();
    std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        common::read_http_request(&mut s);
        let _ = send(&mut s, SSE_HEAD);
        let _ = send(&mut s, &piece("Back."));
        let _ = send(&mut s, "data: [DONE]\n\n");
    });
    let mut pieces = vec![];
    llm.stream(&request(), &Cancel::new(), &mut |p| {
        pieces.push(p.to_string())
    })
    .unwrap();
    assert_eq!(pieces, ["Back."]);
}
