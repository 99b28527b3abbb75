//! `assistant --connect` never waits forever, and notices a dead link. Servers that
//! stall, written here on 127.0.0.1: one that accepts TCP and says nothing, one that
//! accepts the WebSocket and never sends its handshake, one that stops reading (and
//! answering). Ctrl-C (headless) and `q` (TUI) end the client quickly in each state of
//! a session: loading, connected, reconnecting, lock step. A TCP relay that stops
//! forwarding without closing is a silent drop: the client notices it by itself and
//! reconnects. The figures are printed (run with `--nocapture`); the bounds asserted
//! are generous, for a loaded machine.

use crate::tmux_support;

use assistant::bus::Happening;
use assistant::cli::Cli;
use assistant::models::duplex::{DuplexModel, StepOutput};
use assistant::net::client::{connect, ConnectOptions};
use assistant::net::server::{ServeOptions, Server};
use clap::Parser;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::sleep;
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite;

const BIN: &str = env!("CARGO_BIN_EXE_assistant");
/// What a quit may take here, on a loaded machine (the target is 1 s).
const QUIT_BOUND: Duration = Duration::from_secs(5);

/// How a stalling server treats a connection.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Stall {
    /// Accepts TCP and says nothing.
    Silent,
    /// Accepts the WebSocket upgrade, never sends Kyutai's handshake.
    NoHandshake,
    /// Sends the handshake, then neither reads nor sends anything.
    StopsReading,
}

/// A server whose `n`th connection (from 0) is treated as `plan(n)`. Sockets stay
/// open until it is dropped.
struct Stalling {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    accepted: Arc<AtomicUsize>,
}

impl Stalling {
    fn start(plan: fn(usize) -> Stall) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let accepted = Arc::new(AtomicUsize::new(0));
        let (s, a) = (stop.clone(), accepted.clone());
        std::thread::spawn(move || {
            let mut held = Vec::new();
            while !s.load(Ordering::SeqCst) {
                let Ok((tcp, _)) = listener.accept() else {
                    sleep(Duration::from_millis(10));
                    continue;
                };
                tcp.set_nonblocking(false).unwrap();
                let n = a.fetch_add(1, Ordering::SeqCst);
                match plan(n) {
                    Stall::Silent => held.push(Held::Tcp(tcp)),
                    kind => {
                        let mut ws = tungstenite::accept(tcp).unwrap();
                        if kind == Stall::StopsReading {
                            ws.send(tungstenite::Message::Binary(vec![0u8; 9].into()))
                                .unwrap();
                        }
                        held.push(Held::Ws(Box::new(ws)));
                    }
                }
            }
        });
        Self {
            addr,
            stop,
            accepted,
        }
    }

    fn url(&self) -> String {
        format!("ws://{}", self.addr)
    }
}

impl Drop for Stalling {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

#[allow(dead_code)] // held only to keep the sockets open
enum Held {
    Tcp(TcpStream),
    Ws(Box<tungstenite::WebSocket<TcpStream>>),
}

/// The client binary, headless, with its stderr lines collected as they come.
struct Client {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
    _dir: tempfile::TempDir,
}

impl Client {
    fn start(url: &str, realtime: bool, extra: &[&str]) -> Self {
        // 30 s: long enough that no state ends by itself while it is measured.
        Self::start_for(30, url, realtime, extra)
    }

    fn start_for(seconds: usize, url: &str, realtime: bool, extra: &[&str]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let input = dir.path().join("in.wav");
        let tone: Vec<f32> = (0..24_000 * seconds)
            .map(|i| 0.3 * (i as f32 * 440.0 * std::f32::consts::TAU / 24_000.0).sin())
            .collect();
        assistant::audio::wav::write_wav_mono(&input, 24_000, &tone).unwrap();
        let mut cmd = Command::new(BIN);
        cmd.args(["--headless", "--no-journal", "--connect", url])
            .arg("--input")
            .arg(&input)
            .arg("--output")
            .arg(dir.path().join("out.wav"))
            .arg("--log-file")
            .arg(dir.path().join("client.log"))
            .args(extra)
            .env("XDG_DATA_HOME", dir.path())
            .env_remove("ASSISTANT_TOKEN")
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        if realtime {
            cmd.arg("--realtime");
        }
        let mut child = cmd.spawn().unwrap();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let (err, l) = (child.stderr.take().unwrap(), lines.clone());
        std::thread::spawn(move || {
            for line in BufReader::new(err).lines() {
                let Ok(line) = line else { break };
                l.lock().unwrap().push(line);
            }
        });
        Self {
            child,
            lines,
            _dir: dir,
        }
    }

    fn stderr(&self) -> String {
        self.lines.lock().unwrap().join("\n")
    }

    /// Wait for the run to end by itself: its exit code and stderr.
    fn finish(mut self, within: Duration) -> (Option<i32>, String) {
        let t = Instant::now();
        let status = loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                break s;
            }
            if t.elapsed() > within {
                let _ = self.child.kill();
                panic!("still running after {within:?}; stderr:\n{}", self.stderr());
            }
            sleep(Duration::from_millis(20));
        };
        sleep(Duration::from_millis(50));
        (status.code(), self.stderr())
    }

    fn wait_for(&self, what: &str, within: Duration) {
        let deadline = Instant::now() + within;
        while !self.stderr().contains(what) {
            assert!(
                Instant::now() < deadline,
                "waited {within:?} for {what:?}; stderr:\n{}",
                self.stderr()
            );
            sleep(Duration::from_millis(10));
        }
    }

    /// Ctrl-C, then the time until the process has ended, and its exit code.
    fn interrupt(mut self) -> (Duration, Option<i32>, String) {
        let t = Instant::now();
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGINT) };
        let status = loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                break s;
            }
            if t.elapsed() > Duration::from_secs(30) {
                let _ = self.child.kill();
                panic!(
                    "still running 30 s after Ctrl-C; stderr:\n{}",
                    self.stderr()
                );
            }
            sleep(Duration::from_millis(5));
        };
        let took = t.elapsed();
        sleep(Duration::from_millis(50)); // the reader thread's last lines
        (took, status.code(), self.stderr())
    }
}

/// The first session goes silent after its handshake; every reconnection hangs.
fn first_stops_reading_then_silent(n: usize) -> Stall {
    if n == 0 {
        Stall::StopsReading
    } else {
        Stall::Silent
    }
}

#[test]
fn ctrl_c_ends_a_connect_session_quickly_in_every_state() {
    let mut figures = Vec::new();
    let mut check = |state: &str, (took, code, err): (Duration, Option<i32>, String)| {
        eprintln!("quit latency, {state}: {:.0} ms", took.as_secs_f64() * 1e3);
        assert!(took < QUIT_BOUND, "{state}: {took:?}\n{err}");
        assert_eq!(code, Some(0), "{state}: a quit is a clean end\n{err}");
        figures.push((state.to_string(), took));
    };

    // Loading: TCP accepted, nothing said (the WebSocket upgrade waits).
    let srv = Stalling::start(|_| Stall::Silent);
    let c = Client::start(&srv.url(), true, &[]);
    c.wait_for("/api/chat (connecting)", Duration::from_secs(60));
    sleep(Duration::from_millis(500));
    check("loading, no upgrade", c.interrupt());

    // Loading: the WebSocket is up, the handshake never comes.
    let srv = Stalling::start(|_| Stall::NoHandshake);
    let c = Client::start(&srv.url(), true, &[]);
    c.wait_for("waiting for its handshake", Duration::from_secs(60));
    sleep(Duration::from_millis(500));
    check("loading, no handshake", c.interrupt());

    // Connected, real time: the server took the session and went silent.
    let srv = Stalling::start(first_stops_reading_then_silent);
    let c = Client::start(&srv.url(), true, &[]);
    c.wait_for("connected: ", Duration::from_secs(60));
    sleep(Duration::from_millis(1000));
    check("connected, server stopped reading", c.interrupt());

    // Reconnecting: that silence counted as a drop; the next connect hangs.
    let srv = Stalling::start(first_stops_reading_then_silent);
    let c = Client::start(&srv.url(), true, &[]);
    c.wait_for("connection lost", Duration::from_secs(60));
    sleep(Duration::from_millis(1000));
    check("reconnecting", c.interrupt());
    assert!(srv.accepted.load(Ordering::SeqCst) >= 2, "it did reconnect");

    // Lock step (a file read as fast as possible): the step waits for an answer.
    let srv = Stalling::start(|_| Stall::StopsReading);
    let c = Client::start(&srv.url(), false, &[]);
    c.wait_for("connected: ", Duration::from_secs(60));
    sleep(Duration::from_millis(1000));
    check("lock step, no answer", c.interrupt());

    let worst = figures.iter().map(|f| f.1).max().unwrap();
    eprintln!("quit latency, worst: {:.0} ms", worst.as_secs_f64() * 1e3);
}

#[test]
fn q_ends_the_tui_quickly_while_connecting_and_while_reconnecting() {
    for (state, plan, shows) in [
        (
            "connecting",
            (|_| Stall::Silent) as fn(usize) -> Stall,
            "(connecting)",
        ),
        (
            "reconnecting",
            first_stops_reading_then_silent,
            "reconnecting",
        ),
    ] {
        let srv = Stalling::start(plan);
        let url = srv.url();
        let Some(t) = tmux_support::Tmux::start(&["--connect", &url, "--no-journal"]) else {
            return;
        };
        t.wait_for(state, |s| s.contains(shows));
        sleep(Duration::from_millis(500));
        let pressed = Instant::now();
        t.keys("q");
        while t.exit_code().is_none() {
            assert!(
                pressed.elapsed() < Duration::from_secs(30),
                "{state}: still running 30 s after q; screen:\n{}\nlog:\n{}",
                t.screen(),
                t.log()
            );
            sleep(Duration::from_millis(5));
        }
        let took = pressed.elapsed();
        eprintln!(
            "quit latency, TUI {state}: {:.0} ms",
            took.as_secs_f64() * 1e3
        );
        assert!(took < QUIT_BOUND, "{state}: {took:?}");
        assert_eq!(t.exit_code(), Some(0), "{state}");
    }
}

/// A TCP relay in front of a server. `stall` makes the connections open now stop
/// forwarding, in both directions, without closing them: what a dead Wi-Fi or an
/// expired NAT entry looks like. Later connections are forwarded normally.
struct Relay {
    addr: SocketAddr,
    stalls: Arc<Mutex<Vec<Arc<AtomicBool>>>>,
}

impl Relay {
    fn start(to: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let stalls: Arc<Mutex<Vec<Arc<AtomicBool>>>> = Arc::default();
        let s = stalls.clone();
        std::thread::spawn(move || {
            for down in listener.incoming() {
                let Ok(down) = down else { break };
                let Ok(up) = TcpStream::connect(to) else {
                    continue;
                };
                let stalled = Arc::new(AtomicBool::new(false));
                s.lock().unwrap().push(stalled.clone());
                for (from, to) in [
                    (down.try_clone().unwrap(), up.try_clone().unwrap()),
                    (up, down),
                ] {
                    let stalled = stalled.clone();
                    std::thread::spawn(move || forward(from, to, stalled));
                }
            }
        });
        Self { addr, stalls }
    }

    fn stall(&self) {
        for s in self.stalls.lock().unwrap().iter() {
            s.store(true, Ordering::SeqCst);
        }
    }
}

fn forward(mut from: TcpStream, mut to: TcpStream, stalled: Arc<AtomicBool>) {
    from.set_read_timeout(Some(Duration::from_millis(20)))
        .unwrap();
    let mut buf = [0u8; 16 * 1024];
    loop {
        if stalled.load(Ordering::SeqCst) {
            // Neither read nor write nor close: the sockets just stay.
            sleep(Duration::from_secs(600));
            return;
        }
        match from.read(&mut buf) {
            Ok(0) => return,
            Ok(n) => {
                if stalled.load(Ordering::SeqCst) || to.write_all(&buf[..n]).is_err() {
                    continue;
                }
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => return,
        }
    }
}

fn loopback_server(opts: ServeOptions) -> Server {
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

fn tone(at: usize) -> Vec<f32> {
    (0..1920)
        .map(|i| 0.3 * (((i + at) as f32) * 440.0 * std::f32::consts::TAU / 24_000.0).sin())
        .collect()
}

fn rms(v: &[f32]) -> f32 {
    (v.iter().map(|x| x * x).sum::<f32>() / v.len().max(1) as f32).sqrt()
}

/// Steps a remote model in real time and watches what happens to its link.
struct Talker {
    model: assistant::net::client::RemoteModel,
    at: usize,
    news: Vec<(Instant, Happening)>,
}

impl Talker {
    /// Step for `frames` 80 ms frames; the loudest frame heard.
    fn talk(&mut self, frames: usize) -> f32 {
        let mut out = StepOutput::default();
        let mut loudest = 0f32;
        for _ in 0..frames {
            let t = Instant::now();
            out.clear(1920);
            self.model
                .step(&tone(self.at), &mut out)
                .expect("steps through a drop");
            self.at += 1920;
            while let Some(h) = self.model.take_happening() {
                self.news.push((Instant::now(), h));
            }
            loudest = loudest.max(rms(&out.pcm));
            sleep(Duration::from_millis(80).saturating_sub(t.elapsed()));
        }
        loudest
    }

    /// Step until `pred` matches a happening; when it did.
    fn until(&mut self, within: Duration, pred: impl Fn(&Happening) -> bool) -> Instant {
        let start = Instant::now();
        loop {
            if let Some((at, _)) = self.news.iter().find(|(_, h)| pred(h)) {
                return *at;
            }
            assert!(
                start.elapsed() < within,
                "nothing after {within:?}; happenings: {:?}",
                self.news
            );
            self.talk(1);
        }
    }
}

/// Talk, stall the relay, and measure: the time to notice, the time until a new
/// session is up, and that audio flows again.
fn silent_drop(server: ServeOptions, back_within: Duration) -> (Duration, Duration) {
    let srv = loopback_server(server);
    let relay = Relay::start(srv.local_addr());
    let opts = ConnectOptions::new(format!("ws://{}", relay.addr));
    let mut t = Talker {
        model: connect(&opts).unwrap(),
        at: 0,
        news: Vec::new(),
    };
    assert!(
        t.talk(25) > 0.1,
        "the server's audio comes back before the stall"
    );
    let stalled = Instant::now();
    relay.stall();
    let lost = t.until(Duration::from_secs(30), |h| {
        matches!(h, Happening::LinkLost { attempt: 1, .. })
    });
    let why = t
        .news
        .iter()
        .find_map(|(_, h)| match h {
            Happening::LinkLost { why, .. } => Some(why.clone()),
            _ => None,
        })
        .unwrap();
    assert!(why.contains("nothing from the server for 3 s"), "{why}");
    let back = t.until(back_within, |h| matches!(h, Happening::LinkBack { .. }));
    assert!(
        t.talk(25) > 0.1,
        "the server's audio comes back after the reconnect"
    );
    assert!(t.model.link().unwrap().connected);
    (lost - stalled, back - stalled)
}

#[test]
fn a_silent_drop_is_noticed_in_about_3_s_and_the_client_reconnects() {
    // A server that frees a silent session's slot after a few seconds.
    let (noticed, back) = silent_drop(
        ServeOptions {
            idle: Duration::from_secs(3),
            ..ServeOptions::default()
        },
        Duration::from_secs(30),
    );
    eprintln!(
        "silent drop (server idle 3 s): noticed after {:.2} s, a new session after {:.2} s",
        noticed.as_secs_f64(),
        back.as_secs_f64()
    );
    assert!(
        noticed >= Duration::from_millis(2500) && noticed < Duration::from_secs(8),
        "noticed after {noticed:?}"
    );
}

#[test]
fn the_binary_rides_out_a_silent_drop_and_says_so() {
    let srv = loopback_server(ServeOptions {
        idle: Duration::from_secs(3),
        ..ServeOptions::default()
    });
    let relay = Relay::start(srv.local_addr());
    let c = Client::start_for(12, &format!("ws://{}", relay.addr), true, &[]);
    c.wait_for("connected: ", Duration::from_secs(60));
    sleep(Duration::from_secs(2));
    let stalled = Instant::now();
    relay.stall();
    c.wait_for(
        "connection lost: nothing from the server for 3 s",
        Duration::from_secs(20),
    );
    let noticed = stalled.elapsed();
    c.wait_for("reconnected after", Duration::from_secs(30));
    let back = stalled.elapsed();
    eprintln!(
        "the binary, silent drop: said lost after {:.2} s, reconnected after {:.2} s",
        noticed.as_secs_f64(),
        back.as_secs_f64()
    );
    let (code, err) = c.finish(Duration::from_secs(60));
    assert_eq!(code, Some(0), "{err}");
    assert!(err.contains("1 connections lost, 1 reconnected"), "{err}");
    assert!(noticed < Duration::from_secs(8), "{noticed:?}");
}

#[test]
fn with_both_sides_defaults_a_silently_dropped_client_gets_back_in() {
    // The server (one session, no queue) holds the dead session until its idle timeout;
    // the client's reconnect window outlasts it.
    let window: Duration = {
        let r = ConnectOptions::new("ws://x").reconnect;
        (1..=r.attempts).map(|n| r.delay(n)).sum()
    };
    let (noticed, back) = silent_drop(ServeOptions::default(), window + Duration::from_secs(15));
    eprintln!(
        "silent drop (both defaults, server idle {:.0} s, client window {:.0} s): noticed after {:.2} s, a new session after {:.2} s",
        ServeOptions::default().idle.as_secs_f64(),
        window.as_secs_f64(),
        noticed.as_secs_f64(),
        back.as_secs_f64()
    );
    assert!(
        window > ServeOptions::default().idle,
        "the client retries for longer than the server takes to free the slot"
    );
}

/// Runs the client against a server that refuses every upgrade, and returns whether
/// the request carried a `kyutai-api-key` header.
fn sends_a_token(args: &[&str], env: Option<&str>) -> bool {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let server = std::thread::spawn(move || {
        let (mut tcp, _) = listener.accept().unwrap();
        let mut request = Vec::new();
        let mut buf = [0u8; 4096];
        while !request.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = tcp.read(&mut buf).unwrap();
            assert!(n > 0, "the client hung up mid-request");
            request.extend_from_slice(&buf[..n]);
        }
        let _ = tcp.write_all(b"HTTP/1.1 401 Unauthorized\r\nContent-Length: 2\r\n\r\nno");
        String::from_utf8_lossy(&request)
            .to_ascii_lowercase()
            .contains("\r\nkyutai-api-key:")
    });
    let dir = tempfile::tempdir().unwrap();
    let input = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/audio/tone_440hz_3s_24k_mono.wav");
    let mut cmd = Command::new(BIN);
    cmd.args(["--headless", "--no-journal", "--connect"])
        .arg(format!("ws://{addr}"))
        .arg("--input")
        .arg(input)
        .arg("--output")
        .arg(dir.path().join("out.wav"))
        .arg("--log-file")
        .arg(dir.path().join("c.log"))
        .args(args)
        .env("XDG_DATA_HOME", dir.path())
        .env_remove("ASSISTANT_TOKEN");
    if let Some(v) = env {
        cmd.env("ASSISTANT_TOKEN", v);
    }
    let o = cmd.output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains("HTTP 401"), "{err}");
    server.join().unwrap()
}

#[test]
fn an_empty_token_is_not_sent() {
    assert!(sends_a_token(&["--token", "s3cret-s3cret-s3cret"], None));
    assert!(!sends_a_token(&["--token="], None));
    assert!(!sends_a_token(&[], Some("")));
}

#[test]
fn a_connect_ends_on_a_quit_and_dropping_a_stalled_session_does_not_wait_on_it() {
    // A connect stuck in the WebSocket upgrade ends as soon as the quit flag is set.
    let srv = Stalling::start(|_| Stall::Silent);
    let opts = ConnectOptions::new(srv.url());
    let quit = opts.cancel.clone();
    std::thread::spawn(move || {
        sleep(Duration::from_millis(200));
        quit.cancel();
    });
    let t = Instant::now();
    let mut phases = Vec::new();
    let e = assistant::net::client::connect_with(&opts, &mut |p, _| phases.push(p))
        .err()
        .expect("cancelled");
    let took = t.elapsed();
    eprintln!("connect cancelled after {:.0} ms", took.as_secs_f64() * 1e3);
    assert!(e.to_string().contains("cancelled"), "{e}");
    assert!(took < QUIT_BOUND, "{took:?}");
    assert!(phases.contains(&assistant::net::client::ConnectPhase::Connecting));

    // A session whose server stopped reading: dropping the model returns at once.
    let srv = Stalling::start(|_| Stall::StopsReading);
    let mut m = connect(&ConnectOptions::new(srv.url())).unwrap();
    let mut out = StepOutput::default();
    for i in 0..10 {
        out.clear(1920);
        m.step(&tone(i * 1920), &mut out).unwrap();
    }
    let t = Instant::now();
    drop(m);
    let took = t.elapsed();
    eprintln!(
        "drop of a stalled session: {:.0} ms",
        took.as_secs_f64() * 1e3
    );
    assert!(took < Duration::from_secs(2), "{took:?}");
}

#[test]
fn audio_the_engine_does_not_take_is_bounded_and_counted() {
    // A server that streams 10 s of audio at once, to a model that is not stepped.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let server = std::thread::spawn(move || {
        let (tcp, _) = listener.accept().unwrap();
        let mut ws = tungstenite::accept(tcp).unwrap();
        let bin =
            |m: assistant::net::protocol::Message| tungstenite::Message::Binary(m.encode().into());
        ws.send(tungstenite::Message::Binary(vec![0u8; 9].into()))
            .unwrap();
        let mut w = assistant::net::opus_ogg::OggOpusWriter::new().unwrap();
        for i in 0..125 {
            w.push(&tone(i * 1920)).unwrap();
            ws.send(bin(assistant::net::protocol::Message::Audio(w.take())))
                .unwrap();
        }
        ws
    });
    let mut m = connect(&ConnectOptions::new(format!("ws://{addr}"))).unwrap();
    let _ws = server.join().unwrap();
    sleep(Duration::from_millis(1500)); // the network thread decodes it all meanwhile
    let mut out = StepOutput::default();
    out.clear(1920);
    m.step(&tone(0), &mut out).unwrap();
    let net = m.stats();
    let dropped = net.receive_dropped.load(Ordering::Relaxed);
    let received = net.frames_received.load(Ordering::Relaxed);
    eprintln!("10 s sent to a model not stepped: {received} frames kept, {dropped} dropped");
    // The queue holds 2 s (25 frames); the rest, about 8 s, is dropped and counted.
    assert!((90..=110).contains(&dropped), "{dropped} dropped");
    assert!(received <= 26, "{received} frames kept");
    assert!(!m.link().unwrap().keeping_pace, "shown as a server behind");
}
