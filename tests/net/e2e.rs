//! Our client against our server on 127.0.0.1, through the real binary for the client
//! (exit codes, files, stdout) and an in-process server:
//! - loopback: the input comes back, with the latency figures;
//! - demo, greedy with a fixed seed: the same text as a local run on the audio the
//!   server hears;
//! - a client that cannot start exits with 2 and says what failed.

use assistant::audio::wav::{read_wav, WavSink};
use assistant::cli::Cli;
use assistant::net::opus_ogg::{OggOpusReader, OggOpusWriter, ReaderLimits};
use assistant::net::server::{ServeOptions, Server};
use clap::Parser;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Instant;

const BIN: &str = env!("CARGO_BIN_EXE_assistant");

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/audio")
        .join(name)
}

/// An in-process server on a free port, for `flags` (e.g. `--engine loopback`).
fn server(flags: &[&str], opts: ServeOptions) -> Server {
    let cli = Cli::try_parse_from(std::iter::once("assistant").chain(flags.iter().copied()))
        .expect("flags parse");
    let opts = ServeOptions {
        addr: "127.0.0.1:0".parse().unwrap(),
        ..opts
    };
    Server::start(opts, assistant::app::serve::factory(&cli.run)).expect("server starts")
}

fn client(url: &str, extra: &[&str], dir: &Path) -> Output {
    Command::new(BIN)
        .args(["--connect", url, "--headless", "--no-journal"])
        .arg("--log-file")
        .arg(dir.join("client.log"))
        .args(extra)
        .output()
        .expect("run the client")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The lag (in 0..max) that best aligns `got` with `want`, and the SNR there.
fn align(want: &[f32], got: &[f32], max: usize) -> (usize, f64) {
    let mut best = (0, f64::MIN);
    for lag in 0..max {
        let n = want.len().min(got.len().saturating_sub(lag));
        let (mut s, mut e) = (0f64, 0f64);
        for i in 0..n {
            let (w, g) = (want[i] as f64, got[i + lag] as f64);
            s += w * w;
            e += (w - g) * (w - g);
        }
        let snr = 10.0 * (s / e.max(1e-20)).log10();
        if snr > best.1 {
            best = (lag, snr);
        }
    }
    best
}

fn opus_lookahead() -> usize {
    OggOpusWriter::new().unwrap().lookahead()
}

#[test]
fn loopback_input_comes_back_with_latency_figures() {
    let dir = tempfile::tempdir().unwrap();
    let srv = server(&["--engine", "loopback"], ServeOptions::default());
    let url = format!("ws://{}", srv.local_addr());
    let input = fixture("hello_24k_mono.wav");
    let out = dir.path().join("out.wav");
    let stats = dir.path().join("stats.json");
    let t = Instant::now();
    let o = client(
        &url,
        &[
            "--input",
            input.to_str().unwrap(),
            "--output",
            out.to_str().unwrap(),
            "--stats-json",
            stats.to_str().unwrap(),
        ],
        dir.path(),
    );
    let wall = t.elapsed().as_secs_f64();
    assert!(o.status.success(), "client failed: {}", stderr(&o));
    let want = read_wav(&input).unwrap().samples;
    let got = read_wav(&out).unwrap().samples;
    assert!(got.len() >= want.len(), "{} < {}", got.len(), want.len());
    // Lock step: the server's loopback delays one 80 ms frame, and Opus adds its
    // encoder look-ahead on each way.
    let (lag, snr) = align(&want[..want.len() - 4000], &got, 4000);
    let look = opus_lookahead();
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&stats).unwrap()).unwrap();
    let rtt = json["net"]["rtt_mean_ms"].as_f64().unwrap();
    eprintln!(
        "loopback over 127.0.0.1 (lock step): audio delay {lag} samples = {:.1} ms \
         (80 ms loopback frame + Opus look-ahead {look} samples each way = {:.1} ms), \
         SNR {snr:.1} dB after two Opus passes; network round trip per frame {rtt:.1} ms \
         mean, {:.1} ms max; {:.1} s of audio in {wall:.1} s",
        lag as f64 / 24.0,
        2.0 * look as f64 / 24.0,
        json["net"]["rtt_max_ms"].as_f64().unwrap(),
        want.len() as f64 / 24_000.0
    );
    assert!(
        lag.abs_diff(1920 + 2 * look) <= 4,
        "lag {lag}, expected about {}",
        1920 + 2 * look
    );
    // Waveform SNR after two Opus passes (speech, VoIP mode); 5.8 dB with libopus 1.3.1.
    assert!(snr > 4.0, "SNR {snr:.1} dB");
    assert_eq!(json["net"]["frames_sent"], json["net"]["frames_received"]);
    assert!(rtt > 0.0 && rtt < 200.0, "round trip {rtt} ms");
    assert_eq!(
        srv.stats
            .sessions
            .load(std::sync::atomic::Ordering::Relaxed),
        1
    );
}

#[test]
fn loopback_in_real_time_through_the_jitter_buffer() {
    let dir = tempfile::tempdir().unwrap();
    let srv = server(&["--engine", "loopback"], ServeOptions::default());
    let url = format!("ws://{}", srv.local_addr());
    let input = fixture("tone_440hz_3s_24k_mono.wav");
    let out = dir.path().join("out.wav");
    let stats = dir.path().join("stats.json");
    let o = client(
        &url,
        &[
            "--realtime",
            "--input",
            input.to_str().unwrap(),
            "--output",
            out.to_str().unwrap(),
            "--stats-json",
            stats.to_str().unwrap(),
        ],
        dir.path(),
    );
    assert!(o.status.success(), "client failed: {}", stderr(&o));
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&stats).unwrap()).unwrap();
    let net = &json["net"];
    let got = read_wav(&out).unwrap().samples;
    // The tone comes back: find where it starts.
    let onset = got
        .iter()
        .position(|s| s.abs() > 0.1)
        .expect("the tone came back");
    eprintln!(
        "loopback over 127.0.0.1 (real time): the tone is heard after {:.0} ms of output \
         (80 ms loopback + Opus look-ahead + jitter buffer {} ms; in wall time each step also \
         waits the round trip for its answer); round trip {:.1} ms \
         mean, {:.1} ms max; {} underruns, {} frames dropped",
        onset as f64 / 24.0,
        net["jitter_ms"],
        net["rtt_mean_ms"].as_f64().unwrap(),
        net["rtt_max_ms"].as_f64().unwrap(),
        net["underruns"],
        net["dropped_frames"]
    );
    // 80 ms of loopback, 13 ms of Opus, and at most a few 40 ms frames of buffer.
    assert!(onset < 24 * 250, "onset at {} ms", onset / 24);
    assert!(net["jitter_ms"].as_u64().unwrap() <= 120, "{net}");
    assert!(net["underruns"].as_u64().unwrap() <= 2, "{net}");
}

/// The text of a headless run (stdout).
fn text(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

#[test]
fn demo_gives_the_same_text_as_a_local_run_on_what_the_server_hears() {
    let dir = tempfile::tempdir().unwrap();
    let greedy = [
        "--temperature",
        "0",
        "--text-temperature",
        "0",
        "--seed",
        "7",
    ];
    let srv = server(&["--demo"], ServeOptions::default());
    let url = format!("ws://{}", srv.local_addr());
    let input = fixture("hello_24k_mono.wav");
    let mut args = vec!["--input", input.to_str().unwrap()];
    args.extend(greedy);
    let remote = client(&url, &args, dir.path());
    assert!(remote.status.success(), "{}", stderr(&remote));

    // What the server heard: our client's Opus, decoded; frame for frame (the last
    // frame padded with zeros, as the engine pads it).
    let mut pcm = read_wav(&input).unwrap().samples;
    pcm.resize(pcm.len().div_ceil(1920) * 1920, 0.0);
    let mut w = OggOpusWriter::new().unwrap();
    let mut r = OggOpusReader::new(ReaderLimits::default()).unwrap();
    let mut heard = Vec::new();
    for frame in pcm.chunks(1920) {
        w.push(frame).unwrap();
        r.feed(&w.take(), &mut heard).unwrap();
    }
    let heard_wav = dir.path().join("heard.wav");
    let mut sink = WavSink::create(&heard_wav, 24_000).unwrap();
    sink.write(&heard).unwrap();
    sink.finish().unwrap();
    let local = |wav: &Path| {
        Command::new(BIN)
            .args(["--headless", "--no-journal", "--demo", "--input"])
            .arg(wav)
            .args(greedy)
            .arg("--log-file")
            .arg(dir.path().join("local.log"))
            .output()
            .unwrap()
    };
    let same_audio = local(&heard_wav);
    let original = local(&input);
    eprintln!("remote: {:?}", text(&remote));
    eprintln!("local on what the server heard: {:?}", text(&same_audio));
    eprintln!("local on the original WAV: {:?}", text(&original));
    assert!(!text(&remote).is_empty());
    assert_eq!(text(&remote), text(&same_audio));
}

#[test]
fn a_client_that_cannot_start_exits_2_and_says_why() {
    let dir = tempfile::tempdir().unwrap();
    let input = fixture("hello_24k_mono.wav");
    let file = ["--input", input.to_str().unwrap()];

    // Nothing listens there.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let o = client(&format!("ws://127.0.0.1:{port}"), &file, dir.path());
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("cannot connect"), "{}", stderr(&o));

    // Not a ws:// or wss:// URL (TLS itself: tests/net/tls.rs).
    for (url, says) in [
        ("http://h:1", "bad server URL"),
        ("ftp://h:1", "neither ws:// nor wss://"),
    ] {
        let o = client(url, &file, dir.path());
        assert_eq!(o.status.code(), Some(2));
        assert!(stderr(&o).contains(says), "{}", stderr(&o));
    }

    // The wrong path on our server.
    let srv = server(&["--engine", "loopback"], ServeOptions::default());
    let o = client(
        &format!("ws://{}/wrong", srv.local_addr()),
        &file,
        dir.path(),
    );
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("HTTP 404"), "{}", stderr(&o));
    assert!(stderr(&o).contains("/api/chat"), "{}", stderr(&o));

    // A server that answers with random bytes.
    let junk = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let junk_addr = junk.local_addr().unwrap();
    let t = std::thread::spawn(move || {
        use std::io::{Read, Write};
        if let Ok((mut s, _)) = junk.accept() {
            let mut buf = [0u8; 1024];
            let _ = s.read(&mut buf);
            let _ = s.write_all(&[0x9c, 0x00, 0xff, 0x13, 0x37, b'\n', b'\r', b'\n']);
        }
    });
    let o = client(&format!("ws://{junk_addr}"), &file, dir.path());
    t.join().unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("does not speak Kyutai"),
        "{}",
        stderr(&o)
    );

    // A token the server wants and the client does not send, then does.
    let srv = server(
        &["--engine", "loopback"],
        ServeOptions {
            token: Some("s3cret-s3cret-s3cret".into()),
            ..Default::default()
        },
    );
    let url = format!("ws://{}", srv.local_addr());
    let o = client(&url, &file, dir.path());
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("HTTP 401"), "{}", stderr(&o));
    let mut with = vec!["--token", "s3cret-s3cret-s3cret"];
    with.extend(file);
    let o = client(&url, &with, dir.path());
    assert!(o.status.success(), "{}", stderr(&o));

    // A server that is not there: `serve` refuses a public bind without a token.
    let o = Command::new(BIN)
        .args(["serve", "--engine", "loopback", "--bind", "0.0.0.0:0"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("--token"), "{}", stderr(&o));
}
