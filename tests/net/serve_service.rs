//! `assistant serve` as a service on 127.0.0.1: no client can hold it (a link that
//! dies silently, a client that sends but never reads), its slot frees in time for the
//! client's reconnection; plain GETs for health, readiness and metrics on the same
//! port; a drain that lets sessions finish, then closes the rest with a reason;
//! pings answered; weak tokens refused at start; SIGTERM drains the binary.

use assistant::cli::Cli;
use assistant::net::opus_ogg::OggOpusWriter;
use assistant::net::protocol::{Limits, Message};
use assistant::net::server::{ServeOptions, Server, StartError, DRAIN_REASON};
use clap::Parser;
use futures_util::{SinkExt, StreamExt};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::Message as Ws;

type Conn =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

const BIN: &str = env!("CARGO_BIN_EXE_assistant");
/// The client's reconnect window (net::client's backoff gives up after about this).
const RECONNECT_WINDOW: Duration = Duration::from_secs(20);

fn server(opts: ServeOptions) -> Server {
    let cli = Cli::try_parse_from(["assistant", "--engine", "loopback"]).unwrap();
    Server::start(
        ServeOptions {
            addr: "127.0.0.1:0".parse().unwrap(),
            ..opts
        },
        assistant::app::serve::factory(&cli.run),
    )
    .unwrap()
}

async fn open(addr: SocketAddr) -> Conn {
    let url = format!("ws://{addr}/api/chat");
    tokio_tungstenite::connect_async(url).await.unwrap().0
}

/// The next protocol message within `wait`: `Err(())` on a timeout, `Ok(None)` when closed.
async fn next(ws: &mut Conn, wait: Duration) -> Result<Option<Message>, ()> {
    loop {
        match tokio::time::timeout(wait, ws.next()).await {
            Err(_) => return Err(()),
            Ok(Some(Ok(Ws::Binary(b)))) => {
                return Ok(Some(Message::parse(&b, &Limits::default()).unwrap()))
            }
            Ok(Some(Ok(Ws::Close(_))) | None | Some(Err(_))) => return Ok(None),
            Ok(Some(Ok(_))) => continue,
        }
    }
}

/// Metadata, then the handshake: a session. Anything else (busy) is `false`.
async fn session(ws: &mut Conn) -> bool {
    loop {
        match next(ws, Duration::from_secs(10)).await {
            Ok(Some(Message::Metadata(_))) => continue,
            Ok(Some(Message::Handshake(_))) => return true,
            _ => return false,
        }
    }
}

/// A live client: audio in real time, and reading (so pongs go back) until the
/// connection ends. Returns the last error the server sent.
fn live_client(ws: Conn) -> tokio::task::JoinHandle<Option<String>> {
    tokio::spawn(async move {
        let (mut tx, mut rx) = ws.split();
        let talk = tokio::spawn(async move {
            let mut w = OggOpusWriter::new().unwrap();
            let mut tick = tokio::time::interval(Duration::from_millis(80));
            loop {
                tick.tick().await;
                w.push(&[0.1; 1920]).unwrap();
                let m = Message::Audio(w.take()).encode();
                if tx.send(Ws::Binary(m.into())).await.is_err() {
                    return;
                }
            }
        });
        let mut error = None;
        while let Some(Ok(m)) = rx.next().await {
            if let Ws::Binary(b) = m {
                if let Ok(Message::Error(e)) = Message::parse(&b, &Limits::default()) {
                    error = Some(e);
                }
            }
        }
        talk.abort();
        error
    })
}

/// A TCP relay to `to` that can freeze: stop forwarding in both directions without
/// closing either side, as a dead Wi-Fi link or an expired NAT entry does.
async fn relay(to: SocketAddr, frozen: Arc<AtomicBool>) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let server = TcpStream::connect(to).await.unwrap();
            let (cr, cw) = client.into_split();
            let (sr, sw) = server.into_split();
            for (mut r, mut w) in [(cr, sw), (sr, cw)] {
                let frozen = frozen.clone();
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 16 * 1024];
                    loop {
                        if frozen.load(Ordering::Acquire) {
                            // Hold both sockets open and move nothing, for ever.
                            std::future::pending::<()>().await;
                        }
                        let n = match r.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => n,
                        };
                        if frozen.load(Ordering::Acquire) {
                            std::future::pending::<()>().await;
                        }
                        if w.write_all(&buf[..n]).await.is_err() {
                            return;
                        }
                    }
                });
            }
        }
    });
    addr
}

/// Connect directly until a session starts (not busy); how long that took.
async fn reconnect_until_served(addr: SocketAddr, window: Duration) -> Option<Duration> {
    let t = Instant::now();
    while t.elapsed() < window {
        let mut ws = open(addr).await;
        if session(&mut ws).await {
            return Some(t.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silently_dropped_client_frees_its_slot_within_the_reconnect_window() {
    // The defaults: one session, nobody queues.
    let srv = server(ServeOptions::default());
    let frozen = Arc::new(AtomicBool::new(false));
    let via = relay(srv.local_addr(), frozen.clone()).await;
    let mut ws = open(via).await;
    assert!(session(&mut ws).await);
    let reader = live_client(ws);
    // The session lives on while the link does, past the idle time.
    tokio::time::sleep(ServeOptions::default().idle + Duration::from_secs(2)).await;
    assert_eq!(srv.stats.active.load(Ordering::Acquire), 1);
    let mut busy = open(srv.local_addr()).await;
    assert!(
        !session(&mut busy).await,
        "a second client got the only slot"
    );

    frozen.store(true, Ordering::Release);
    let took = reconnect_until_served(srv.local_addr(), RECONNECT_WINDOW)
        .await
        .expect("the dead session still held the slot after the client's reconnect window");
    eprintln!(
        "silent drop: the slot was free for a new session {:.1} s after the link died (idle {:.0} s)",
        took.as_secs_f64(),
        ServeOptions::default().idle.as_secs_f64()
    );
    assert_eq!(srv.stats.sessions_stalled.load(Ordering::Relaxed), 1);
    reader.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_sends_but_never_reads_is_dropped() {
    let srv = server(ServeOptions::default());
    let mut ws = open(srv.local_addr()).await;
    assert!(session(&mut ws).await);
    // Audio in real time, and never a read: its pongs never go back.
    let sender = tokio::spawn(async move {
        let mut w = OggOpusWriter::new().unwrap();
        loop {
            w.push(&[0.1; 1920]).unwrap();
            let m = Message::Audio(w.take()).encode();
            if ws.send(Ws::Binary(m.into())).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(80)).await;
        }
    });
    let took = reconnect_until_served(srv.local_addr(), RECONNECT_WINDOW)
        .await
        .expect("a client that never reads kept its slot");
    eprintln!(
        "a client that never reads: its slot was free after {:.1} s",
        took.as_secs_f64()
    );
    assert_eq!(srv.stats.sessions_stalled.load(Ordering::Relaxed), 1);
    sender.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pings_are_answered() {
    let srv = server(ServeOptions::default());
    let mut ws = open(srv.local_addr()).await;
    assert!(session(&mut ws).await);
    ws.send(Ws::Ping(b"are you there".to_vec().into()))
        .await
        .unwrap();
    let t = Instant::now();
    loop {
        match tokio::time::timeout(Duration::from_secs(5), ws.next()).await {
            Ok(Some(Ok(Ws::Pong(p)))) if p.as_ref() == b"are you there" => break,
            Ok(Some(Ok(_))) if t.elapsed() < Duration::from_secs(10) => continue,
            other => panic!("no pong: {other:?}"),
        }
    }
}

/// A plain HTTP GET: the status code and the body.
async fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: test\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut text = String::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_string(&mut text))
        .await
        .expect("an answer")
        .unwrap();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = text.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    (status, body.to_string())
}

/// A metric's value in a `/metrics` body.
fn metric(body: &str, name: &str) -> f64 {
    body.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in:\n{body}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_readiness_and_metrics_answer_plain_gets_on_the_same_port() {
    let srv = server(ServeOptions::default());
    let addr = srv.local_addr();
    assert_eq!(get(addr, "/healthz").await, (200, "ok\n".into()));
    assert_eq!(get(addr, "/readyz").await, (200, "ready\n".into()));
    let (status, body) = get(addr, "/metrics").await;
    assert_eq!(status, 200);
    assert_eq!(metric(&body, "assistant_sessions_active"), 0.0);
    let (status, body) = get(addr, "/").await;
    assert_eq!(status, 404);
    assert!(body.contains("/api/chat"), "{body}");

    // The only slot taken: alive, not ready; the session shows in the metrics.
    let mut ws = open(addr).await;
    assert!(session(&mut ws).await);
    // Audio in real time, answers read between frames.
    let mut w = OggOpusWriter::new().unwrap();
    let mut got = 0;
    for _ in 0..200 {
        w.push(&[0.1; 1920]).unwrap();
        ws.send(Ws::Binary(Message::Audio(w.take()).encode().into()))
            .await
            .unwrap();
        match next(&mut ws, Duration::from_millis(80)).await {
            Ok(Some(Message::Audio(_))) => got += 1,
            Ok(Some(_)) | Err(()) => {}
            Ok(None) => panic!("the session ended"),
        }
        if got >= 5 {
            break;
        }
    }
    assert!(got >= 5, "{got} answers");
    assert_eq!(get(addr, "/healthz").await.0, 200);
    let (status, body) = get(addr, "/readyz").await;
    assert_eq!(status, 503);
    assert!(body.contains("busy"), "{body}");
    let (_, m) = get(addr, "/metrics").await;
    assert_eq!(metric(&m, "assistant_sessions_active"), 1.0);
    assert_eq!(metric(&m, "assistant_sessions_total"), 1.0);
    assert!(metric(&m, "assistant_received_bytes_total") > 0.0);
    assert!(metric(&m, "assistant_sent_bytes_total") > 0.0);
    assert!(metric(&m, "assistant_step_seconds_count") >= 5.0);
    assert!(m.contains("assistant_step_seconds_bucket{le=\"+Inf\"}"));
    drop(ws);
    let t = Instant::now();
    while get(addr, "/readyz").await.0 != 200 {
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "the slot never freed"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_waiting_for_a_slow_prefill_is_not_taken_for_idle() {
    use assistant::engine::load::{loader, Loaded};
    use assistant::engine::loopback::Loopback;
    let idle = Duration::from_secs(1);
    // A session whose model takes three idle periods to get ready (a long prefill).
    let slow: assistant::net::server::LoaderFactory = Arc::new(move |_| {
        loader(move |_| {
            std::thread::sleep(3 * idle);
            Ok(Loaded::plain(Box::new(Loopback::new(24_000, 1920))))
        })
    });
    let srv = Server::start(
        ServeOptions {
            addr: "127.0.0.1:0".parse().unwrap(),
            idle,
            ..Default::default()
        },
        slow,
    )
    .unwrap();
    // The client reads (its pongs go back) but, like Kyutai's, sends nothing before
    // the handshake.
    let mut ws = open(srv.local_addr()).await;
    assert!(session(&mut ws).await, "dropped while the model got ready");
    // Once ready, a client that says nothing is idle.
    let t = Instant::now();
    loop {
        match next(&mut ws, Duration::from_secs(10)).await {
            Ok(Some(Message::Error(e))) => {
                assert!(e.contains("nothing received"), "{e}");
                break;
            }
            // The Ogg stream's headers, as the engine starts.
            Ok(Some(Message::Audio(_))) => continue,
            other => panic!("{other:?}"),
        }
    }
    assert!(t.elapsed() >= idle / 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn while_the_model_loads_the_server_is_alive_not_ready_and_says_so() {
    let srv = Server::start_loading(
        ServeOptions {
            addr: "127.0.0.1:0".parse().unwrap(),
            ..Default::default()
        },
        None,
    )
    .unwrap();
    let addr = srv.local_addr();
    assert_eq!(get(addr, "/healthz").await.0, 200);
    assert_eq!(
        get(addr, "/readyz").await,
        (503, "loading the model\n".into())
    );
    assert_eq!(
        metric(&get(addr, "/metrics").await.1, "assistant_loaded"),
        0.0
    );
    let mut ws = open(addr).await;
    match next(&mut ws, Duration::from_secs(10)).await {
        Ok(Some(Message::Error(e))) => assert!(e.starts_with("loading"), "{e}"),
        other => panic!("{other:?}"),
    }
    let cli = Cli::try_parse_from(["assistant", "--engine", "loopback"]).unwrap();
    srv.loaded(assistant::app::serve::factory(&cli.run));
    assert_eq!(get(addr, "/readyz").await, (200, "ready\n".into()));
    assert_eq!(
        metric(&get(addr, "/metrics").await.1, "assistant_loaded"),
        1.0
    );
    let mut ws = open(addr).await;
    assert!(session(&mut ws).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drain_lets_sessions_finish_then_closes_the_rest_with_a_reason() {
    let srv = Arc::new(server(ServeOptions {
        max_sessions: 2,
        queue: 1,
        ..Default::default()
    }));
    let addr = srv.local_addr();
    let mut leaving = open(addr).await;
    assert!(session(&mut leaving).await);
    let mut staying = open(addr).await;
    assert!(session(&mut staying).await);
    let staying = live_client(staying);
    // A third waits in the queue for a slot.
    let mut queued = open(addr).await;
    let t = Instant::now();
    while srv.stats.queued.load(Ordering::Acquire) == 0 {
        assert!(t.elapsed() < Duration::from_secs(10), "never queued");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    let deadline = Duration::from_secs(3);
    let drainer = srv.clone();
    let drain = std::thread::spawn(move || drainer.drain(deadline));
    // No new clients: the port closes (a load balancer sends them elsewhere).
    let t = Instant::now();
    while TcpStream::connect(addr).await.is_ok() {
        assert!(t.elapsed() < Duration::from_secs(5), "still accepting");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // One session ends by itself before the deadline: it is not cut short.
    tokio::time::sleep(Duration::from_millis(300)).await;
    leaving.close(None).await.unwrap();
    // The queued client gets no slot from the session that left: it is told why.
    loop {
        match next(&mut queued, Duration::from_secs(10)).await {
            Ok(Some(Message::Error(e))) => {
                assert_eq!(e, DRAIN_REASON);
                break;
            }
            Ok(Some(Message::Metadata(_))) => continue,
            other => panic!("the queued client: {other:?}"),
        }
    }
    let d = drain.join().unwrap();
    eprintln!("drain: {d:?}");
    assert_eq!((d.active, d.finished, d.closed), (2, 1, 1));
    assert!(d.waited >= deadline);
    // The other is told why, then closed.
    let told = tokio::time::timeout(Duration::from_secs(10), staying)
        .await
        .expect("the session was not closed")
        .unwrap();
    assert_eq!(told.as_deref(), Some(DRAIN_REASON));
    assert_eq!(srv.stats.sessions_drained.load(Ordering::Relaxed), 1);
}

#[test]
fn a_token_shorter_than_16_bytes_is_refused_at_start_with_the_reason() {
    let cli = Cli::try_parse_from(["assistant", "--engine", "loopback"]).unwrap();
    for (token, len) in [("", 0), ("s3cret", 6), ("fifteen-bytes!!", 15)] {
        let r = Server::start(
            ServeOptions {
                addr: "127.0.0.1:0".parse().unwrap(),
                token: Some(token.into()),
                ..Default::default()
            },
            assistant::app::serve::factory(&cli.run),
        );
        match r {
            Err(e @ StartError::WeakToken(n)) => {
                assert_eq!(n, len);
                assert!(e.to_string().contains("at least 16"), "{e}");
            }
            Err(e) => panic!("{token:?}: {e}"),
            Ok(_) => panic!("{token:?} was accepted"),
        }
    }
    // From the command line: an empty --token= on a public address, and an empty
    // ASSISTANT_TOKEN, are refused with the reason; neither counts as authentication.
    let serve = ["serve", "--engine", "loopback", "--no-journal"];
    for (args, env) in [
        (vec!["--bind", "0.0.0.0:0", "--token="], None),
        (vec!["--bind", "127.0.0.1:0", "--token", "short"], None),
        (vec!["--bind", "0.0.0.0:0"], Some("")),
    ] {
        let mut cmd = std::process::Command::new(BIN);
        cmd.args(serve).args(&args).env_remove("ASSISTANT_TOKEN");
        if let Some(v) = env {
            cmd.env("ASSISTANT_TOKEN", v);
        }
        let o = cmd.output().unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{args:?} {env:?}: {err}");
        assert!(err.contains("token"), "{args:?}: {err}");
    }
    let ok = "0123456789abcdef";
    assert!(Server::start(
        ServeOptions {
            addr: "127.0.0.1:0".parse().unwrap(),
            token: Some(ok.into()),
            ..Default::default()
        },
        assistant::app::serve::factory(&cli.run),
    )
    .is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_the_binary_and_its_client_is_told_why() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut child = std::process::Command::new(BIN)
        .args(["serve", "--engine", "loopback", "--no-journal"])
        .args(["--bind", &format!("127.0.0.1:{port}")])
        .args(["--drain-timeout", "1", "--log-file", "/dev/null"])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let t = Instant::now();
    while get_or_nothing(addr, "/readyz").await != 200 {
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "serve never got ready"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut ws = open(addr).await;
    assert!(session(&mut ws).await);
    let client = live_client(ws);
    let term = Instant::now();
    // SAFETY: kill(2) on our own child's pid.
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGTERM) }, 0);
    let told = tokio::time::timeout(Duration::from_secs(20), client)
        .await
        .expect("the session was never closed")
        .unwrap();
    assert!(
        term.elapsed() >= Duration::from_secs(1),
        "closed before the deadline"
    );
    assert_eq!(told.as_deref(), Some(DRAIN_REASON));
    let out = tokio::task::spawn_blocking(move || {
        let status = child.wait().unwrap();
        let mut err = String::new();
        std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
        (status, err)
    })
    .await
    .unwrap();
    assert!(out.0.success(), "{}", out.1);
    assert!(
        out.1
            .contains("1 session(s) were running, 0 finished, 1 closed at the deadline"),
        "{}",
        out.1
    );
}

/// A GET's status, 0 when nothing answers (the server is not up yet).
async fn get_or_nothing(addr: SocketAddr, path: &str) -> u16 {
    let Ok(mut s) = TcpStream::connect(addr).await else {
        return 0;
    };
    let _ = s
        .write_all(format!("GET {path} HTTP/1.1\r\nHost: test\r\n\r\n").as_bytes())
        .await;
    let mut text = String::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_string(&mut text)).await;
    text.split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}
