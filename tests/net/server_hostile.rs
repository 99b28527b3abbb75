//! `assistant serve` against bad and hostile clients on 127.0.0.1: each gets a clear
//! error (kind 5) naming what failed and loses its own session only; the server keeps
//! serving. (`net_fuzz.rs` sends 10,000+ random and mutated messages.)

use assistant::cli::Cli;
use assistant::net::opus_ogg::OggOpusWriter;
use assistant::net::protocol::{kind, Limits, Message};
use assistant::net::server::{ServeOptions, Server};
use clap::Parser;
use futures_util::{SinkExt, StreamExt};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::Message as Ws;

type Conn =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

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

async fn open(srv: &Server) -> Conn {
    let url = format!("ws://{}/api/chat", srv.local_addr());
    tokio_tungstenite::connect_async(url).await.unwrap().0
}

/// Next protocol message from the server (None when it closed), within 5 s.
async fn next(ws: &mut Conn) -> Option<Message> {
    loop {
        let m = tokio::time::timeout(Duration::from_secs(5), ws.next())
            .await
            .expect("the server answers within 5 s");
        match m {
            Some(Ok(Ws::Binary(b))) => {
                return Some(Message::parse(&b, &Limits::default()).unwrap())
            }
            Some(Ok(Ws::Close(_))) | None | Some(Err(_)) => return None,
            Some(Ok(_)) => continue,
        }
    }
}

/// Until the handshake: metadata first, as moshi-backend sends it.
async fn until_handshake(ws: &mut Conn) {
    let first = next(ws).await.expect("metadata");
    assert!(matches!(first, Message::Metadata(_)), "{first:?}");
    let second = next(ws).await.expect("handshake");
    assert!(matches!(second, Message::Handshake(_)), "{second:?}");
}

/// The error the server sends before it closes the session.
async fn error_of(ws: &mut Conn) -> String {
    while let Some(m) = next(ws).await {
        if let Message::Error(e) = m {
            return e;
        }
    }
    panic!("the server closed without an error message")
}

fn audio(frames: usize) -> Vec<u8> {
    let mut w = OggOpusWriter::new().unwrap();
    let pcm: Vec<f32> = (0..frames * 1920)
        .map(|i| 0.3 * (i as f32 * 0.05).sin())
        .collect();
    w.push(&pcm).unwrap();
    Message::Audio(w.take()).encode()
}

/// An honest client: audio in, audio back.
async fn honest(srv: &Server) {
    let mut ws = open(srv).await;
    until_handshake(&mut ws).await;
    let mut w = OggOpusWriter::new().unwrap();
    let mut got_audio = 0;
    for _ in 0..5 {
        w.push(&[0.1; 1920]).unwrap();
        ws.send(Ws::Binary(Message::Audio(w.take()).encode().into()))
            .await
            .unwrap();
        if let Some(Message::Audio(_)) = next(&mut ws).await {
            got_audio += 1;
        }
    }
    assert!(got_audio >= 4, "{got_audio} audio messages back");
    ws.close(None).await.unwrap();
    // Its slot frees once its engine has stopped (a few ms).
    let t = Instant::now();
    while srv.stats.active.load(Ordering::Relaxed) > 0 && t.elapsed() < Duration::from_secs(2) {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_messages_end_their_session_only() {
    let srv = server(ServeOptions {
        max_sessions: 4,
        ..Default::default()
    });
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("unknown kind", vec![10, 1, 2], "unknown message kind 10"),
        ("empty", vec![], "empty message"),
        (
            "truncated Ogg",
            {
                let a = audio(1);
                a[..a.len() - 7].to_vec()
            },
            "truncated Ogg page",
        ),
        (
            "not Ogg",
            b"\x01RIFF\x00\x00\x00\x00WAVE".to_vec(),
            "not an Ogg page",
        ),
        (
            "undecodable Opus",
            {
                let mut pw = ogg::PacketWriter::new(Vec::new());
                pw.write_packet(vec![0x03, 0x00], 42, ogg::PacketWriteEndInfo::EndPage, 0)
                    .unwrap();
                Message::Audio(pw.into_inner()).encode()
            },
            "does not decode",
        ),
        ("bad control", vec![kind::CONTROL, 9], "control message"),
    ];
    for (what, bytes, says) in cases {
        let mut ws = open(&srv).await;
        until_handshake(&mut ws).await;
        ws.send(Ws::Binary(bytes.into())).await.unwrap();
        let e = error_of(&mut ws).await;
        eprintln!("{what}: the server said {e:?}");
        assert!(e.contains(says), "{what}: {e}");
        // Another client is served meanwhile and after.
        honest(&srv).await;
    }
    // A WebSocket text frame is not part of the protocol.
    let mut ws = open(&srv).await;
    until_handshake(&mut ws).await;
    ws.send(Ws::Text("hello".into())).await.unwrap();
    assert!(error_of(&mut ws).await.contains("binary"));
    // Counted when each session has wound down.
    let deadline = Instant::now() + Duration::from_secs(5);
    while srv.stats.protocol_errors.load(Ordering::Relaxed) < 7 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(srv.stats.protocol_errors.load(Ordering::Relaxed), 7);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_100_mb_message_is_refused_without_reading_it() {
    let srv = server(ServeOptions::default());
    let mut ws = open(&srv).await;
    until_handshake(&mut ws).await;
    let t = Instant::now();
    let mut huge = vec![0u8; 100 * 1024 * 1024];
    huge[0] = kind::AUDIO;
    // The server refuses on the frame header and closes; our send may fail midway.
    let sent =
        tokio::time::timeout(Duration::from_secs(20), ws.send(Ws::Binary(huge.into()))).await;
    assert!(sent.is_ok(), "sending did not end");
    let mut said = None;
    while let Ok(Some(m)) = tokio::time::timeout(Duration::from_secs(5), ws.next()).await {
        if let Ok(Ws::Binary(b)) = m {
            said = Message::parse(&b, &Limits::default()).ok();
        }
    }
    eprintln!(
        "100 MB message: refused in {:.2} s, the server said {said:?}",
        t.elapsed().as_secs_f64(),
    );
    if let Some(Message::Error(e)) = &said {
        assert!(e.contains("too long") || e.contains("Message"), "{e}");
    }
    honest(&srv).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn busy_idle_and_raw_garbage() {
    let srv = server(ServeOptions {
        max_sessions: 1,
        idle: Duration::from_millis(800),
        ..Default::default()
    });
    // One session holds the only slot; the next client is told the server is busy.
    let mut first = open(&srv).await;
    until_handshake(&mut first).await;
    let mut second = open(&srv).await;
    let e = error_of(&mut second).await;
    assert!(e.starts_with("busy"), "{e}");
    assert_eq!(srv.stats.busy.load(Ordering::Relaxed), 1);
    // The first one says nothing: it is closed for idleness, and the slot frees.
    let e = error_of(&mut first).await;
    assert!(e.contains("nothing received"), "{e}");
    let t = Instant::now();
    while srv.stats.active.load(Ordering::Relaxed) > 0 {
        assert!(
            t.elapsed() < Duration::from_secs(2),
            "the idle session did not end"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    eprintln!("idle session wound down {:?} after its error", t.elapsed());
    honest(&srv).await;

    // Raw bytes where an HTTP upgrade should be.
    use tokio::io::AsyncWriteExt;
    let mut tcp = tokio::net::TcpStream::connect(srv.local_addr())
        .await
        .unwrap();
    let junk: Vec<u8> = (0..4096u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    let _ = tcp.write_all(&junk).await;
    drop(tcp);
    // A client that connects and never speaks HTTP holds nothing for long.
    let _silent = tokio::net::TcpStream::connect(srv.local_addr())
        .await
        .unwrap();
    honest(&srv).await;
    assert!(srv.stats.rejected.load(Ordering::Relaxed) >= 1);
}
