//! `assistant --connect` takes each server as it comes: `moshi-server`'s order (the
//! handshake at once, no metadata, a message of only OpusHead/OpusTags, no audio for
//! its first two steps, then two 40 ms pages per message with the text first), the
//! Python server's 1-byte
//! handshake, and servers that misbehave (an error before the handshake, an unknown
//! kind, a 100 MB message) get a clear error.

use assistant::audio::wav::read_wav;
use assistant::net::opus_ogg::{OggOpusReader, OggOpusWriter, ReaderLimits};
use assistant::net::protocol::Message;
use futures_util::{SinkExt, StreamExt};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Output};
use tokio_tungstenite::tungstenite::Message as Ws;

#[derive(Clone, Copy, PartialEq)]
enum Fake {
    /// moshi-server 0.6.4 as seen on the wire.
    MoshiServer,
    /// The Python server: a 1-byte handshake.
    Python,
    /// "busy" (kind 5) instead of a handshake.
    BusyFirst,
    /// A handshake, then a message of an unknown kind.
    StrangeKind,
    /// A handshake, then a 100 MB message.
    Huge,
}

/// Serve one connection the way `kind` does, on a thread of its own.
fn fake_server(kind: Fake) -> (SocketAddr, std::thread::JoinHandle<()>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let addr = listener.local_addr().unwrap();
    let t = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            let (tcp, _) = listener.accept().await.unwrap();
            let mut ws = tokio_tungstenite::accept_async(tcp).await.unwrap();
            let bin = |m: Message| Ws::Binary(m.encode().into());
            match kind {
                Fake::BusyFirst => {
                    let _ = ws
                        .send(bin(Message::Error("busy, come back later".into())))
                        .await;
                    let _ = ws.close(None).await;
                    return;
                }
                Fake::Python => ws.send(Ws::Binary(vec![0u8].into())).await.unwrap(),
                _ => ws.send(Ws::Binary(vec![0u8; 9].into())).await.unwrap(),
            }
            match kind {
                Fake::StrangeKind => {
                    let _ = ws.send(Ws::Binary(vec![42u8, 1, 2, 3].into())).await;
                }
                Fake::Huge => {
                    let mut huge = vec![0u8; 100 * 1024 * 1024];
                    huge[0] = 1;
                    let _ = ws.send(Ws::Binary(huge.into())).await;
                }
                _ => {}
            }
            // Echo: the client's audio back, each step's text before its audio.
            let mut writer = OggOpusWriter::new().unwrap();
            // moshi-server sends the header pages alone, first.
            if ws.send(bin(Message::Audio(writer.take()))).await.is_err() {
                return; // the client left (after a misbehaviour)
            }
            let mut reader = OggOpusReader::new(ReaderLimits::default()).unwrap();
            let mut pcm = Vec::new();
            let mut step = 0;
            while let Some(Ok(m)) = ws.next().await {
                let Ws::Binary(b) = m else { continue };
                if let Ok(Message::Audio(pages)) = Message::parse(&b, &Default::default()) {
                    reader.feed(&pages, &mut pcm).unwrap();
                }
                while pcm.len() >= 1920 {
                    let frame: Vec<f32> = pcm.drain(..1920).collect();
                    if step % 5 == 0 {
                        let _ = ws.send(bin(Message::Text(format!(" w{step}")))).await;
                    }
                    step += 1;
                    // moshi-server sends no audio during its model's acoustic delay
                    // (2 steps): its answers lag the input by two frames.
                    if kind == Fake::MoshiServer && step <= 2 {
                        continue;
                    }
                    writer.push(&frame).unwrap();
                    let _ = ws.send(bin(Message::Audio(writer.take()))).await;
                }
            }
        });
    });
    (addr, t)
}

fn client(addr: SocketAddr, out: &Path, dir: &Path) -> Output {
    let input = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/audio/tone_440hz_3s_24k_mono.wav");
    Command::new(env!("CARGO_BIN_EXE_assistant"))
        .args(["--headless", "--no-journal", "--connect"])
        .arg(format!("ws://{addr}"))
        .arg("--input")
        .arg(input)
        .arg("--output")
        .arg(out)
        .arg("--log-file")
        .arg(dir.join("client.log"))
        .output()
        .unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn moshi_server_and_python_server_orders_work() {
    for kind in [Fake::MoshiServer, Fake::Python] {
        let dir = tempfile::tempdir().unwrap();
        let (addr, server) = fake_server(kind);
        let out = dir.path().join("out.wav");
        let o = client(addr, &out, dir.path());
        server.join().unwrap();
        assert!(o.status.success(), "{}", stderr(&o));
        let text = String::from_utf8_lossy(&o.stdout).trim().to_string();
        assert!(text.starts_with("w0 w5 w10"), "{text:?}");
        assert!(stderr(&o).contains(if kind == Fake::Python {
            "handshake: 1-byte"
        } else {
            "handshake: protocol 0, model 0"
        }));
        if kind == Fake::MoshiServer {
            // Lock step let the answers lag by the server's two frames (160 ms).
            assert!(
                stderr(&o).contains("jitter buffer 160 ms"),
                "{}",
                stderr(&o)
            );
        }
        let got = read_wav(&out).unwrap().samples;
        let loud = got.iter().filter(|s| s.abs() > 0.2).count();
        assert!(
            loud > 24_000,
            "the tone did not come back: {loud} loud samples"
        );
    }
}

#[test]
fn misbehaving_servers_get_clear_errors() {
    let cases = [
        (Fake::BusyFirst, 2, "the server said: busy, come back later"),
        (Fake::StrangeKind, 1, "unknown message kind 42"),
        (Fake::Huge, 1, "Message too long"),
    ];
    for (kind, code, says) in cases {
        let dir = tempfile::tempdir().unwrap();
        let (addr, server) = fake_server(kind);
        let o = client(addr, &dir.path().join("out.wav"), dir.path());
        server.join().unwrap();
        assert_eq!(o.status.code(), Some(code), "{}", stderr(&o));
        assert!(stderr(&o).contains(says), "{}", stderr(&o));
    }
}
