//! A dropped connection: a real server on 127.0.0.1 is stopped mid-session and
//! started again on the same port. The client shows the drop (status and events),
//! plays silence meanwhile, reconnects with backoff and plays the server's audio
//! again; the binary keeps running and journals both.

use assistant::bus::Happening;
use assistant::cli::Cli;
use assistant::models::duplex::{DuplexModel, StepOutput};
use assistant::net::client::{connect, ConnectOptions, Reconnect};
use assistant::net::server::{ServeOptions, Server};
use clap::Parser;
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_assistant");

fn loopback_server(addr: SocketAddr) -> Server {
    let cli = Cli::try_parse_from(["assistant", "--engine", "loopback"]).unwrap();
    // The port was just freed by the previous server: retry the bind briefly.
    let t = Instant::now();
    loop {
        let opts = ServeOptions {
            addr,
            ..ServeOptions::default()
        };
        match Server::start(opts, assistant::app::serve::factory(&cli.run)) {
            Ok(s) => return s,
            Err(e) if t.elapsed() < Duration::from_secs(5) => {
                eprintln!("rebinding {addr}: {e}");
                std::thread::sleep(Duration::from_millis(100));
            }
            Err(e) => panic!("{e}"),
        }
    }
}

fn tone(n: usize, offset: usize) -> Vec<f32> {
    (0..n)
        .map(|i| 0.3 * (((i + offset) as f32) * 440.0 * std::f32::consts::TAU / 24_000.0).sin())
        .collect()
}

fn rms(v: &[f32]) -> f32 {
    (v.iter().map(|x| x * x).sum::<f32>() / v.len().max(1) as f32).sqrt()
}

/// Step in real time for `frames` frames; the RMS of each output frame, and the
/// happenings seen.
fn run(
    m: &mut dyn DuplexModel,
    frames: usize,
    at: &mut usize,
    news: &mut Vec<Happening>,
) -> Vec<f32> {
    let mut out = StepOutput::default();
    let mut levels = Vec::new();
    for _ in 0..frames {
        let t = Instant::now();
        out.clear(1920);
        m.step(&tone(1920, *at), &mut out)
            .expect("steps while reconnecting");
        *at += 1920;
        while let Some(h) = m.take_happening() {
            news.push(h);
        }
        levels.push(rms(&out.pcm));
        std::thread::sleep(Duration::from_millis(80).saturating_sub(t.elapsed()));
    }
    levels
}

#[test]
fn a_stopped_server_is_a_visible_state_and_the_client_reconnects_when_it_is_back() {
    let srv = loopback_server("127.0.0.1:0".parse().unwrap());
    let addr = srv.local_addr();
    let opts = ConnectOptions {
        reconnect: Reconnect {
            attempts: 30,
            first: Duration::from_millis(100),
            max: Duration::from_millis(300),
        },
        ..ConnectOptions::new(format!("ws://{addr}"))
    };
    let mut m = connect(&opts).expect("connects");
    let (mut at, mut news) = (0, Vec::new());

    let before = run(&mut m, 20, &mut at, &mut news);
    // Most frames: on a busy machine a frame that comes late is one of silence (two in
    // ten at load 17).
    let toned = |v: &[f32]| v[10..].iter().filter(|&&l| l > 0.1).count();
    assert!(toned(&before) >= 7, "the tone comes back: {before:?}");
    let link = m.link().unwrap();
    // Round trips were measured: the longest, as the last one read 0 ms on a busy machine.
    let rtt_max = m
        .stats()
        .rtt_max_us
        .load(std::sync::atomic::Ordering::Relaxed);
    assert!(
        link.connected && rtt_max > 0,
        "{link:?}, longest round trip {rtt_max} µs"
    );

    srv.stop();
    let down = run(&mut m, 12, &mut at, &mut news);
    let link = m.link().unwrap();
    assert!(!link.connected && !link.keeping_pace, "{link:?}");
    assert!(
        down[down.len() - 5..].iter().all(|&l| l == 0.0),
        "silence while down: {down:?}"
    );
    match news.first() {
        Some(Happening::LinkLost {
            attempt: 1, of: 30, ..
        }) => {}
        other => panic!("expected the drop, got {other:?}"),
    }

    let srv = loopback_server(addr);
    let t = Instant::now();
    while m.link().is_some_and(|l| !l.connected) {
        assert!(t.elapsed() < Duration::from_secs(10), "no reconnection");
        run(&mut m, 1, &mut at, &mut news);
    }
    assert!(
        matches!(news.last(), Some(Happening::LinkBack { outage_s }) if *outage_s > 0.5),
        "{news:?}"
    );
    let after = run(&mut m, 20, &mut at, &mut news);
    assert!(
        toned(&after) >= 7,
        "the tone comes back after the reconnection: {after:?}"
    );
    assert!(m.link().unwrap().connected);
    let net = m.stats();
    assert_eq!(net.drops.load(std::sync::atomic::Ordering::Relaxed), 1);
    assert_eq!(net.reconnects.load(std::sync::atomic::Ordering::Relaxed), 1);
    assert_eq!(
        srv.stats
            .sessions
            .load(std::sync::atomic::Ordering::Relaxed),
        1
    );
}

#[test]
fn retries_are_bounded_and_then_the_session_ends_with_the_reason() {
    let srv = loopback_server("127.0.0.1:0".parse().unwrap());
    let opts = ConnectOptions {
        reconnect: Reconnect {
            attempts: 3,
            first: Duration::from_millis(50),
            max: Duration::from_millis(100),
        },
        ..ConnectOptions::new(format!("ws://{}", srv.local_addr()))
    };
    let mut m = connect(&opts).unwrap();
    let mut out = StepOutput::default();
    out.clear(1920);
    m.step(&[0.0; 1920], &mut out).unwrap();
    srv.stop();
    let t = Instant::now();
    let e = loop {
        out.clear(1920);
        if let Err(e) = m.step(&[0.0; 1920], &mut out) {
            break e.to_string();
        }
        assert!(t.elapsed() < Duration::from_secs(10), "retries never end");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(e.contains("gave up reconnecting after 3 attempts"), "{e}");
    assert!(e.contains("cannot connect"), "{e}");
}

#[test]
fn the_binary_keeps_running_through_a_server_restart_and_journals_it() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.wav");
    assistant::audio::wav::write_wav_mono(&input, 24_000, &tone(24_000 * 7, 0)).unwrap();
    let out = dir.path().join("out.wav");
    let srv = loopback_server("127.0.0.1:0".parse().unwrap());
    let addr = srv.local_addr();
    let child = Command::new(BIN)
        .args([
            "--connect",
            &format!("ws://{addr}"),
            "--headless",
            "--realtime",
        ])
        .arg("--input")
        .arg(&input)
        .arg("--output")
        .arg(&out)
        .arg("--log-file")
        .arg(dir.path().join("c.log"))
        .env("XDG_DATA_HOME", dir.path())
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(2000));
    srv.stop();
    std::thread::sleep(Duration::from_millis(1500));
    let srv = loopback_server(addr);
    let o = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert!(err.contains("connection lost:"), "{err}");
    assert!(err.contains("reconnecting in"), "{err}");
    assert!(err.contains("reconnected after"), "{err}");
    assert!(err.contains("1 connections lost, 1 reconnected"), "{err}");
    // Audio before the drop, silence during it, audio again after.
    let got = assistant::audio::wav::read_wav(&out).unwrap().samples;
    let level = |from: f64, to: f64| rms(&got[(from * 24e3) as usize..(to * 24e3) as usize]);
    assert!(level(0.5, 1.5) > 0.1, "before");
    assert!(level(2.6, 3.2) < 0.01, "during");
    assert!(level(5.0, 6.5) > 0.1, "after");
    assert_eq!(
        srv.stats
            .sessions
            .load(std::sync::atomic::Ordering::Relaxed),
        1
    );
    // The journal has both events.
    let sessions = dir.path().join("assistant/sessions");
    let journal = std::fs::read_dir(&sessions)
        .unwrap()
        .map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap())
        .collect::<String>();
    assert!(journal.contains("connection lost"), "{journal}");
    assert!(journal.contains("reconnected after"), "{journal}");
}
