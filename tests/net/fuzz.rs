//! 10,000+ random and mutated messages against the real `assistant serve` on
//! 127.0.0.1: no crash, its memory flat, and the next honest client is served.

use assistant::net::opus_ogg::OggOpusWriter;
use assistant::net::protocol::{Limits, Message};
use futures_util::{SinkExt, StreamExt};
use rand::{Rng, SeedableRng};
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::Message as Ws;

type Conn =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// The server's resident memory, in MB.
fn rss_mb(pid: u32) -> f64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/statm")).unwrap_or_default();
    let pages: f64 = s
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0);
    pages * 4096.0 / 1e6
}

async fn open(url: &str) -> Conn {
    let t = Instant::now();
    loop {
        match tokio_tungstenite::connect_async(url).await {
            Ok((ws, _)) => return ws,
            Err(e) if t.elapsed() < Duration::from_secs(20) => {
                let _ = e;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("cannot reach the server: {e}"),
        }
    }
}

async fn next(ws: &mut Conn) -> Option<Message> {
    loop {
        match tokio::time::timeout(Duration::from_secs(5), ws.next()).await {
            Ok(Some(Ok(Ws::Binary(b)))) => return Message::parse(&b, &Limits::default()).ok(),
            Ok(Some(Ok(Ws::Close(_)))) | Ok(None) | Ok(Some(Err(_))) | Err(_) => return None,
            Ok(Some(Ok(_))) => continue,
        }
    }
}

/// An honest client: metadata, handshake, then audio back for audio sent.
async fn honest(url: &str) {
    let mut ws = open(url).await;
    assert!(matches!(next(&mut ws).await, Some(Message::Metadata(_))));
    assert!(matches!(next(&mut ws).await, Some(Message::Handshake(_))));
    let mut w = OggOpusWriter::new().unwrap();
    let mut back = 0;
    for _ in 0..5 {
        w.push(&[0.1; 1920]).unwrap();
        ws.send(Ws::Binary(Message::Audio(w.take()).encode().into()))
            .await
            .unwrap();
        if let Some(Message::Audio(_)) = next(&mut ws).await {
            back += 1;
        }
    }
    assert!(back >= 4, "{back} audio messages back");
    ws.close(None).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fuzz_ten_thousand_messages() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let log = tempfile::NamedTempFile::new().unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_assistant"))
        .args([
            "serve",
            "--engine",
            "loopback",
            "--max-sessions",
            "4",
            "--no-journal",
        ])
        .arg("--bind")
        .arg(format!("127.0.0.1:{port}"))
        .arg("--log-file")
        .arg(log.path())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let pid = child.id();
    let url = format!("ws://127.0.0.1:{port}/api/chat");
    honest(&url).await;

    let mut rng = rand::rngs::StdRng::seed_from_u64(2026);
    let good = {
        let mut w = OggOpusWriter::new().unwrap();
        w.push(&[0.2; 1920]).unwrap();
        Message::Audio(w.take()).encode()
    };
    let seeds: Vec<Vec<u8>> = vec![
        good.clone(),
        vec![0; 9],
        b"\x02 hi".to_vec(),
        b"\x03\x01".to_vec(),
        b"\x04{}".to_vec(),
        vec![6],
    ];
    let t = Instant::now();
    let (mut sent, mut sessions, mut refused) = (0usize, 0usize, 0usize);
    let mut rss = Vec::new();
    while sent < 10_000 {
        if sessions % 250 == 0 {
            rss.push(rss_mb(pid));
        }
        let mut ws = open(&url).await;
        sessions += 1;
        'session: for _ in 0..200 {
            let msg: Vec<u8> = match rng.random_range(0..10) {
                0..=6 => good.clone(),
                7 => {
                    let n = rng.random_range(0..300);
                    (0..n).map(|_| rng.random()).collect()
                }
                _ => {
                    let mut m = seeds[rng.random_range(0..seeds.len())].clone();
                    for _ in 0..rng.random_range(1..4) {
                        let j = rng.random_range(0..m.len().max(1));
                        match rng.random_range(0..3) {
                            0 if j < m.len() => m[j] = rng.random(),
                            1 => m.truncate(j),
                            _ => m.insert(j.min(m.len()), rng.random()),
                        }
                    }
                    m
                }
            };
            sent += 1;
            if ws.send(Ws::Binary(msg.into())).await.is_err() {
                refused += 1;
                break;
            }
            // Whatever the server sent meanwhile: its error, then its close.
            while let Ok(Some(m)) = tokio::time::timeout(Duration::ZERO, ws.next()).await {
                match m {
                    Ok(Ws::Binary(b)) if b.first() == Some(&5) => {}
                    Ok(Ws::Close(_)) | Err(_) => {
                        refused += 1;
                        break 'session;
                    }
                    _ => {}
                }
            }
        }
        let _ = ws.close(None).await;
    }
    assert!(
        child.try_wait().unwrap().is_none(),
        "the server died during the fuzzing"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    honest(&url).await;
    let end = rss_mb(pid);
    let _ = child.kill();
    let _ = child.wait();
    let fmt: Vec<String> = rss.iter().map(|r| format!("{r:.0}")).collect();
    eprintln!(
        "fuzz: {sent} messages in {sessions} sessions ({refused} ended by the server) in {:.1} s; \
         server RSS every 250 sessions: {} MB, at the end {end:.0} MB",
        t.elapsed().as_secs_f64(),
        fmt.join(" ")
    );
    assert!(refused > 500, "{refused}");
    // The first sessions warm the allocator up; after that memory stays flat.
    assert!(
        end - rss[1] < 16.0,
        "server RSS grew {:.0} -> {end:.0} MB",
        rss[1]
    );
}
