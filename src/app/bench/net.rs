//! `assistant bench net`: what the network path costs. Prints figures:
//! - Ogg/Opus encode and decode per 80 ms frame (speech-like audio);
//! - the latency the remote path adds: the loopback engine stepped locally against the
//!   same engine behind `assistant serve` on 127.0.0.1, frame by frame (the round trip),
//!   plus the codec's look-ahead on each way;
//! - the server's CPU per session with N real-time loopback sessions at once: the
//!   server runs as a child process (this binary, `serve`), so its CPU is its own.

use crate::engine::loopback::Loopback;
use crate::engine::stats::percentiles;
use crate::models::duplex::{DuplexModel, StepOutput};
use crate::net::client::{connect, ConnectOptions, RemoteModel};
use crate::net::opus_ogg::{OggOpusReader, OggOpusWriter, ReaderLimits};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

const FRAME: usize = 1920;

/// Speech-like 24 kHz mono: the audio bench's built-in voice, left channel, decimated.
fn voice(seconds: f64) -> Vec<f32> {
    let v = crate::app::bench::audio::builtin_input();
    let mono: Vec<f32> = v
        .samples
        .chunks(2 * v.channels as usize)
        .map(|c| c[0])
        .collect();
    mono.iter()
        .copied()
        .cycle()
        .take((seconds * 24_000.0) as usize)
        .collect()
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Per-frame encode and decode times, in ms, and the bitrate with Ogg framing.
fn codec_cost(audio: &[f32]) -> anyhow::Result<(Vec<f64>, Vec<f64>, f64)> {
    let mut w = OggOpusWriter::new()?;
    let mut r = OggOpusReader::new(ReaderLimits::default())?;
    let (mut enc, mut dec, mut bytes) = (Vec::new(), Vec::new(), 0usize);
    let mut out = Vec::new();
    for chunk in audio.chunks_exact(FRAME) {
        let t = Instant::now();
        w.push(chunk)?;
        let pages = w.take();
        enc.push(ms(t.elapsed()));
        bytes += pages.len();
        out.clear();
        let t = Instant::now();
        r.feed(&pages, &mut out)?;
        dec.push(ms(t.elapsed()));
    }
    let kbps = bytes as f64 * 8.0 / (enc.len() as f64 * 0.08) / 1000.0;
    Ok((enc, dec, kbps))
}

/// `assistant serve --engine loopback` as a child on a free port, ready for clients.
struct ChildServer {
    child: Child,
    url: String,
}

impl ChildServer {
    fn start(sessions: usize) -> anyhow::Result<Self> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let exe = std::env::current_exe()?;
        let child = Command::new(exe)
            .args(["serve", "--engine", "loopback", "--no-journal"])
            .args(["--bind", &format!("127.0.0.1:{port}")])
            .args(["--max-sessions", &sessions.to_string()])
            .args(["--log-file", "/dev/null"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        let t = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            anyhow::ensure!(
                t.elapsed() < Duration::from_secs(10),
                "the server did not listen within 10 s"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(Self {
            child,
            url: format!("ws://127.0.0.1:{port}"),
        })
    }

    /// User plus system CPU seconds so far (Linux /proc).
    fn cpu_s(&self) -> Option<f64> {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.child.id())).ok()?;
        let rest = &stat[stat.rfind(')')? + 2..];
        let f: Vec<&str> = rest.split_whitespace().collect();
        let ticks: f64 = f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?;
        // SAFETY: sysconf reads a constant.
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
        Some(ticks / hz)
    }
}

impl Drop for ChildServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Step `m` over `audio` as fast as the answers come (lock step): per-frame times, ms.
fn step_times(m: &mut dyn DuplexModel, audio: &[f32]) -> anyhow::Result<Vec<f64>> {
    let mut out = StepOutput::default();
    let mut times = Vec::new();
    for chunk in audio.chunks_exact(FRAME) {
        out.clear(FRAME);
        let t = Instant::now();
        m.step(chunk, &mut out)?;
        times.push(ms(t.elapsed()));
    }
    Ok(times)
}

/// One real-time client: `seconds` of audio paced at 80 ms a frame. Returns frames
/// sent, frames received, underruns and frames dropped after the first second.
fn realtime_client(mut m: RemoteModel, audio: Vec<f32>) -> anyhow::Result<[u64; 4]> {
    let stats = m.stats();
    let mut out = StepOutput::default();
    let start = Instant::now();
    let mut warm = [0u64; 2];
    for (i, chunk) in audio.chunks_exact(FRAME).enumerate() {
        if i == 12 {
            warm = [
                stats.underruns.load(Ordering::Relaxed),
                stats.dropped_frames.load(Ordering::Relaxed),
            ];
        }
        let due = start + Duration::from_millis(80 * i as u64);
        std::thread::sleep(due.saturating_duration_since(Instant::now()));
        out.clear(FRAME);
        m.step(chunk, &mut out)?;
    }
    Ok([
        stats.frames_sent.load(Ordering::Relaxed),
        stats.frames_received.load(Ordering::Relaxed),
        stats.underruns.load(Ordering::Relaxed) - warm[0],
        stats.dropped_frames.load(Ordering::Relaxed) - warm[1],
    ])
}

/// N sessions at once for `seconds`: the server's CPU per session (fraction of a core)
/// and whether every session kept real time.
fn load(n: usize, seconds: f64) -> anyhow::Result<(f64, [u64; 4])> {
    let srv = ChildServer::start(n)?;
    let mut models = Vec::new();
    for _ in 0..n {
        models.push(connect(&ConnectOptions::new(&srv.url)).map_err(|e| anyhow::anyhow!("{e}"))?);
    }
    let cpu0 = srv.cpu_s().unwrap_or(0.0);
    let t = Instant::now();
    let threads: Vec<_> = models
        .into_iter()
        .map(|m| {
            let audio = voice(seconds);
            std::thread::spawn(move || realtime_client(m, audio))
        })
        .collect();
    let mut total = [0u64; 4];
    for th in threads {
        let r = th
            .join()
            .map_err(|_| anyhow::anyhow!("a client panicked"))??;
        for (t, v) in total.iter_mut().zip(r) {
            *t += v;
        }
    }
    let cpu = srv.cpu_s().unwrap_or(0.0) - cpu0;
    Ok((cpu / t.elapsed().as_secs_f64() / n as f64, total))
}

pub fn bench_net() -> anyhow::Result<()> {
    let build = if cfg!(debug_assertions) {
        "debug build (dependencies optimised)"
    } else {
        "release build"
    };
    println!("network path ({build}):");
    let audio = voice(20.0);
    let (enc, dec, kbps) = codec_cost(&audio)?;
    let (e, d) = (percentiles(&enc), percentiles(&dec));
    println!(
        "  Ogg/Opus per 80 ms frame: encode p50 {:.3} ms, p99 {:.3} ms; decode p50 {:.3} ms, p99 {:.3} ms; {kbps:.1} kb/s with Ogg framing",
        e.p50, e.p99, d.p50, d.p99
    );

    let look = OggOpusWriter::new()?.lookahead();
    let local = percentiles(&step_times(
        &mut Loopback::new(24_000, FRAME),
        &audio[..FRAME * 250],
    )?);
    let srv = ChildServer::start(1)?;
    let mut remote = connect(&ConnectOptions {
        lockstep: true,
        ..ConnectOptions::new(&srv.url)
    })
    .map_err(|e| anyhow::anyhow!("{e}"))?;
    let rt = percentiles(&step_times(&mut remote, &audio[..FRAME * 250])?);
    drop(remote);
    drop(srv);
    let codec_ms = 2.0 * look as f64 / 24.0;
    println!(
        "  loopback step, local: p50 {:.3} ms, p99 {:.3} ms; over 127.0.0.1 (round trip: encode, send, server decode + step + encode, receive, decode): p50 {:.2} ms, p99 {:.2} ms",
        local.p50, local.p99, rt.p50, rt.p99
    );
    println!(
        "  added latency: round trip p50 {:.1} ms + Opus look-ahead {look} samples each way ({codec_ms:.1} ms) = {:.1} ms",
        rt.p50,
        rt.p50 + codec_ms
    );

    let seconds = 10.0;
    println!("  server CPU per real-time loopback session ({seconds:.0} s each; sent/received frames, late answers and dropped frames after the first second, all sessions):");
    for n in [1usize, 2, 4, 8, 16, 32] {
        let (cpu, [sent, got, late, dropped]) = load(n, seconds)?;
        println!(
            "    N={n}: {:.1}% of a core per session ({:.1}% for all); {sent} sent, {got} received, {late} late, {dropped} dropped",
            cpu * 100.0,
            cpu * 100.0 * n as f64
        );
    }
    Ok(())
}
