//! `assistant serve`'s sessions on 127.0.0.1: clients beyond `--max-sessions` wait
//! in a bounded queue (`--queue`, `--queue-wait`) and are served in turn, or told
//! "busy" when the queue is full or the wait is over; each session is journalled
//! with who, how long, frames and drops.

use assistant::cli::Cli;
use assistant::models::duplex::{DuplexModel, StepOutput};
use assistant::net::client::{connect, ConnectError, ConnectOptions};
use assistant::net::protocol::{Limits, Message};
use assistant::net::server::{ServeOptions, Server};
use clap::Parser;
use futures_util::StreamExt;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::Message as Ws;

type Conn =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

fn server(opts: ServeOptions, journal: bool) -> Server {
    let cli = Cli::try_parse_from(["assistant", "--engine", "loopback"]).unwrap();
    Server::start_with(
        ServeOptions {
            addr: "127.0.0.1:0".parse().unwrap(),
            ..opts
        },
        assistant::app::serve::factory(&cli.run),
        journal.then(assistant::app::serve::journal_tap),
    )
    .unwrap()
}

async fn open(srv: &Server) -> Conn {
    let url = format!("ws://{}/api/chat", srv.local_addr());
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

async fn handshake_within(ws: &mut Conn, wait: Duration) -> bool {
    loop {
        match next(ws, wait).await {
            Ok(Some(Message::Handshake(_))) => return true,
            Ok(Some(Message::Metadata(_))) => continue,
            other => {
                eprintln!("no handshake: {other:?}");
                return false;
            }
        }
    }
}

async fn busy(ws: &mut Conn) -> String {
    match next(ws, Duration::from_secs(10)).await {
        Ok(Some(Message::Error(e))) => e,
        other => panic!("expected an error, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_beyond_max_sessions_wait_their_turn_or_are_told_busy() {
    let srv = server(
        ServeOptions {
            max_sessions: 1,
            queue: 1,
            queue_wait: Duration::from_secs(20),
            ..Default::default()
        },
        false,
    );
    let mut first = open(&srv).await;
    assert!(handshake_within(&mut first, Duration::from_secs(5)).await);
    // The second waits: no handshake yet, and no error.
    let mut second = open(&srv).await;
    assert_eq!(next(&mut second, Duration::from_millis(500)).await, Err(()));
    assert_eq!(srv.stats.queued.load(Ordering::Relaxed), 1);
    // The queue holds one: the third is told at once.
    let mut third = open(&srv).await;
    let t = Instant::now();
    let e = busy(&mut third).await;
    assert!(e.starts_with("busy"), "{e}");
    assert!(t.elapsed() < Duration::from_secs(2));
    // The first leaves: the second is served.
    first.close(None).await.unwrap();
    drop(first);
    let t = Instant::now();
    assert!(handshake_within(&mut second, Duration::from_secs(5)).await);
    eprintln!(
        "a queued client got its session {:?} after the first left",
        t.elapsed()
    );
    assert_eq!(srv.stats.queued.load(Ordering::Relaxed), 0);
    assert_eq!(srv.stats.busy.load(Ordering::Relaxed), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queued_client_gets_busy_when_the_wait_is_over_and_our_client_says_so() {
    let srv = server(
        ServeOptions {
            max_sessions: 1,
            queue: 2,
            queue_wait: Duration::from_millis(600),
            ..Default::default()
        },
        false,
    );
    let mut first = open(&srv).await;
    assert!(handshake_within(&mut first, Duration::from_secs(5)).await);
    let mut second = open(&srv).await;
    let t = Instant::now();
    let e = busy(&mut second).await;
    let waited = t.elapsed();
    assert!(e.starts_with("busy"), "{e}");
    assert!(
        waited >= Duration::from_millis(500) && waited < Duration::from_secs(5),
        "{waited:?}"
    );
    // Our client, queued and then refused, names the server's reason.
    let url = format!("ws://{}", srv.local_addr());
    let e = tokio::task::spawn_blocking(move || connect(&ConnectOptions::new(url)).err())
        .await
        .unwrap()
        .expect("refused");
    assert!(
        matches!(&e, ConnectError::Server { message, .. } if message.starts_with("busy")),
        "{e}"
    );
    assert_eq!(srv.stats.busy.load(Ordering::Relaxed), 2);
    assert_eq!(srv.stats.queued.load(Ordering::Relaxed), 0);
}

#[test]
fn each_session_is_journalled_with_who_how_long_frames_and_drops() {
    let dir = tempfile::tempdir().unwrap();
    // The only test in this binary that journals; the others pass no tap.
    std::env::set_var("XDG_DATA_HOME", dir.path());
    let srv = server(ServeOptions::default(), true);
    let mut m = connect(&ConnectOptions {
        lockstep: true,
        ..ConnectOptions::new(format!("ws://{}", srv.local_addr()))
    })
    .unwrap();
    let mut out = StepOutput::default();
    for _ in 0..25 {
        out.clear(1920);
        m.step(&[0.1; 1920], &mut out).unwrap();
    }
    drop(m);
    let sessions = dir.path().join("assistant/sessions");
    let t = Instant::now();
    let journal = loop {
        let text: String = std::fs::read_dir(&sessions)
            .map(|d| {
                d.map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap())
                    .collect()
            })
            .unwrap_or_default();
        if text.contains("\"kind\":\"end\"") || t.elapsed() > Duration::from_secs(5) {
            break text;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(
        journal.contains("\"input\":\"network 127.0.0.1:"),
        "{journal}"
    );
    assert!(
        journal.contains("network session from 127.0.0.1:"),
        "{journal}"
    );
    assert!(
        journal.contains("25 frames in, 25 frames out, 0 dropped"),
        "{journal}"
    );
    assert!(journal.contains("ended: the client"), "{journal}");
    assert!(journal.contains("\"kind\":\"end\""), "{journal}");
}
