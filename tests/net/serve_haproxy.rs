//! Two `assistant serve` instances behind a real HAProxy, as users who outgrow one
//! machine run them, all on 127.0.0.1: sessions spread over both; SIGTERM drains one
//! (its port closes, its sessions run on until the drain's deadline, then are told
//! why and closed); its clients reconnect through HAProxy and land on the other.
//!
//! Needs Debian's `haproxy` (`./dev` installs it); skips, saying so, without it.

use assistant::net::opus_ogg::OggOpusWriter;
use assistant::net::protocol::{Limits, Message};
use assistant::net::server::DRAIN_REASON;
use futures_util::{SinkExt, StreamExt};
use std::io::{Read, Write};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::Message as Ws;

const BIN: &str = env!("CARGO_BIN_EXE_assistant");
const DRAIN: Duration = Duration::from_secs(4);

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Kills its process when dropped.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A plain GET: status and body (`(0, "")` when nothing answers).
fn get(port: u16, path: &str) -> (u16, String) {
    let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return (0, String::new());
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    let _ = write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n"
    );
    let mut text = String::new();
    let _ = s.read_to_string(&mut text);
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = text.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    (status, body.to_string())
}

fn wait_for(what: &str, within: Duration, mut ok: impl FnMut() -> bool) {
    let t = Instant::now();
    while !ok() {
        assert!(t.elapsed() < within, "{what}: not within {within:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Sessions running on the instance at `port`, from its metrics.
fn active(port: u16) -> u64 {
    get(port, "/metrics")
        .1
        .lines()
        .find_map(|l| l.strip_prefix("assistant_sessions_active ")?.parse().ok())
        .unwrap_or(0)
}

fn serve(port: u16) -> Proc {
    let child = Command::new(BIN)
        .args(["serve", "--engine", "loopback", "--no-journal"])
        .args(["--max-sessions", "4"])
        .args(["--bind", &format!("127.0.0.1:{port}")])
        .args(["--drain-timeout", &DRAIN.as_secs().to_string()])
        .args(["--log-file", "/dev/null"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let p = Proc(child);
    wait_for("serve's /readyz", Duration::from_secs(30), || {
        get(port, "/readyz").0 == 200
    });
    p
}

fn haproxy(dir: &std::path::Path, front: u16, backends: [u16; 2]) -> Proc {
    // Readiness (model loaded, a slot free, not draining) decides where sessions go;
    // long sessions go to the instance with the fewest; a refused connection is
    // retried on the other.
    let cfg = format!(
        "global
  maxconn 200
defaults
  mode http
  timeout connect 2s
  timeout client 60s
  timeout server 60s
  timeout tunnel 60s
  retries 3
  option redispatch
frontend chat
  bind 127.0.0.1:{front}
  default_backend serve
backend serve
  balance leastconn
  option httpchk GET /readyz
  http-check expect status 200
  default-server inter 250ms fall 1 rise 1
  server a 127.0.0.1:{} check
  server b 127.0.0.1:{} check
",
        backends[0], backends[1]
    );
    let path = dir.join("haproxy.cfg");
    std::fs::write(&path, cfg).unwrap();
    let child = Command::new("haproxy")
        .arg("-db")
        .arg("-f")
        .arg(&path)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let p = Proc(child);
    wait_for("HAProxy's frontend", Duration::from_secs(20), || {
        get(front, "/healthz").0 == 200
    });
    p
}

/// What one client saw.
#[derive(Debug)]
struct Seen {
    /// Since SIGTERM: when the session ended, and the error it was told.
    ended_after: Option<Duration>,
    told: Option<String>,
    /// Audio messages received after SIGTERM, before the end.
    audio_after_term: usize,
    /// A new session through HAProxy after the end.
    reconnected: bool,
}

type Conn =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn open_session(url: &str) -> Conn {
    let mut ws = tokio_tungstenite::connect_async(url).await.unwrap().0;
    loop {
        match tokio::time::timeout(Duration::from_secs(10), ws.next()).await {
            Ok(Some(Ok(Ws::Binary(b)))) => match Message::parse(&b, &Limits::default()) {
                Ok(Message::Metadata(_)) => continue,
                Ok(Message::Handshake(_)) => return ws,
                other => panic!("no session: {other:?}"),
            },
            Ok(Some(Ok(_))) => continue,
            other => panic!("no session: {other:?}"),
        }
    }
}

/// Real-time audio until `stop`, or until the server ends the session; then, if it
/// did, reconnect once.
async fn client(
    url: String,
    term: tokio::sync::watch::Receiver<Option<Instant>>,
    stop: tokio::sync::watch::Receiver<bool>,
) -> Seen {
    let mut ws = open_session(&url).await;
    let mut w = OggOpusWriter::new().unwrap();
    let mut tick = tokio::time::interval(Duration::from_millis(80));
    let mut seen = Seen {
        ended_after: None,
        told: None,
        audio_after_term: 0,
        reconnected: false,
    };
    loop {
        if *stop.borrow() {
            let _ = ws.close(None).await;
            return seen;
        }
        tokio::select! {
            _ = tick.tick() => {
                w.push(&[0.1; 1920]).unwrap();
                let _ = ws.send(Ws::Binary(Message::Audio(w.take()).encode().into())).await;
            }
            m = ws.next() => match m {
                Some(Ok(Ws::Binary(b))) => match Message::parse(&b, &Limits::default()) {
                    Ok(Message::Audio(_)) if term.borrow().is_some() => seen.audio_after_term += 1,
                    Ok(Message::Error(e)) => seen.told = Some(e),
                    _ => {}
                },
                Some(Ok(_)) => {}
                None | Some(Err(_)) => break,
            },
        }
        if seen.told.is_some() {
            break;
        }
    }
    seen.ended_after = term.borrow().map(|t| t.elapsed());
    // Through the balancer again: it must find the instance that is not draining.
    drop(ws);
    let ws = open_session(&url).await;
    seen.reconnected = true;
    let mut ws = ws;
    let mut stop = stop;
    let _ = stop.wait_for(|s| *s).await;
    let _ = ws.close(None).await;
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_behind_haproxy_spread_sessions_and_drain_without_losing_one() {
    if Command::new("haproxy").arg("-v").output().is_err() {
        eprintln!("skipped: haproxy is not installed (./dev installs it: apt-get install haproxy)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (pa, pb, front) = (free_port(), free_port(), free_port());
    let mut a = serve(pa);
    let _b = serve(pb);
    let _lb = haproxy(dir.path(), front, [pa, pb]);
    let url = format!("ws://127.0.0.1:{front}/api/chat");

    let (term_tx, term_rx) = tokio::sync::watch::channel(None);
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut clients = Vec::new();
    for _ in 0..4 {
        clients.push(tokio::spawn(client(
            url.clone(),
            term_rx.clone(),
            stop_rx.clone(),
        )));
        // One at a time, so the balancer sees each before the next.
        let n = clients.len() as u64;
        tokio::task::spawn_blocking(move || {
            wait_for("the session", Duration::from_secs(20), || {
                active(pa) + active(pb) == n
            })
        })
        .await
        .unwrap();
    }
    let (on_a, on_b) = (active(pa), active(pb));
    eprintln!("sessions per instance: a {on_a}, b {on_b}");
    assert!(on_a > 0 && on_b > 0, "not spread: a {on_a}, b {on_b}");

    // SIGTERM: a drains.
    let terminated = Instant::now();
    // SAFETY: kill(2) on our own child's pid.
    assert_eq!(
        unsafe { libc::kill(a.0.id() as i32, libc::SIGTERM) },
        0,
        "SIGTERM"
    );
    term_tx.send_replace(Some(terminated));
    // It exits once its sessions are closed at the deadline.
    let status = tokio::task::spawn_blocking(move || {
        let t = Instant::now();
        loop {
            if let Some(s) = a.0.try_wait().unwrap() {
                return (s, t.elapsed(), a);
            }
            assert!(
                t.elapsed() < DRAIN + Duration::from_secs(20),
                "a never exited"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    })
    .await
    .unwrap();
    let (exit, exited_after, mut a) = status;
    let mut err = String::new();
    if let Some(mut e) = a.0.stderr.take() {
        let _ = e.read_to_string(&mut err);
    }
    eprintln!(
        "a exited {exit} {:.1} s after SIGTERM:\n{err}",
        exited_after.as_secs_f64()
    );
    assert!(exit.success(), "{err}");
    assert!(err.contains("drained"), "{err}");

    // Every client is on b now: a's reconnected there.
    tokio::task::spawn_blocking(move || {
        wait_for("a's clients on b", Duration::from_secs(20), || {
            active(pb) == 4
        })
    })
    .await
    .unwrap();
    stop_tx.send_replace(true);
    let mut drained = 0;
    for c in clients {
        let seen = tokio::time::timeout(Duration::from_secs(20), c)
            .await
            .expect("a client hung")
            .unwrap();
        eprintln!("{seen:?}");
        if let Some(after) = seen.ended_after {
            drained += 1;
            // Not one session of a's ended before the drain's deadline, and each kept
            // getting audio meanwhile.
            assert!(after >= DRAIN, "a session ended {after:?} after SIGTERM");
            assert_eq!(seen.told.as_deref(), Some(DRAIN_REASON));
            assert!(seen.audio_after_term > 0, "{seen:?}");
            assert!(seen.reconnected);
        }
    }
    assert_eq!(drained, on_a as usize, "a's sessions, drained");
    eprintln!(
        "drain: {on_a} session(s) on a ran until the {:.0} s deadline, were closed with the reason and reconnected to b; a exited {:.1} s after SIGTERM",
        DRAIN.as_secs_f64(),
        exited_after.as_secs_f64()
    );
}
