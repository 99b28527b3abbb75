//! `assistant bench serve`: what loading once and sharing the weights buys. For the
//! demo model and a ~300M Moshi-shaped checkpoint (random weights, q8, the real Mimi's
//! shape), `assistant serve` runs as a child on a free port, once as it runs now (one
//! load, shared) and once loading for each session (`--load-per-session`, the old
//! way): the time a client waits from connecting to the handshake, and the server's
//! resident memory with N = 1, 2 and 4 sessions open, each having stepped. Then
//! `serve --batch`: for N = 1..8 sessions, the LM's CPU time per session per frame and
//! wall time per frame, batched against each session stepping its own fork, with the
//! teacher-forced token-equality check run on the same weights (`bench serve-batch`
//! runs this part alone).

use crate::models::duplex::{DuplexModel, StepOutput};
use crate::models::moshi::batch_check::{
    alone_twice, batch_equality, checkpoint_maker, cost, random_maker, teacher_forced_equality,
    MakeLm, Reference,
};
use crate::models::moshi::config::{self, ModelConfig};
use crate::models::moshi::demo::DEMO_WEIGHT_SEED;
use crate::models::moshi::synthetic::{write_checkpoint, LmFile, Synthetic};
use crate::net::client::{connect, ConnectOptions};
use anyhow::{Context, Result};
use moshi::lm_generate_multistream::Config as GenConfig;
use std::io::{Read, Write};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// `assistant serve` as a child, killed when dropped.
struct ServeChild {
    child: Child,
    port: u16,
}

impl Drop for ServeChild {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn get(port: u16, path: &str) -> Option<String> {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(s, "GET {path} HTTP/1.1\r\nHost: bench\r\n\r\n").ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    Some(text)
}

impl ServeChild {
    fn start(model: &[String], per_session: bool) -> Result<Self> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let mut cmd = Command::new(std::env::current_exe()?);
        cmd.args(["serve", "--no-journal", "--device", "cpu"])
            .args(model)
            .args(["--max-sessions", "4", "--idle-timeout", "30"])
            .args(["--bind", &format!("127.0.0.1:{port}")])
            .args(["--log-file", "/dev/null"])
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if per_session {
            cmd.arg("--load-per-session");
        }
        let s = Self {
            child: cmd.spawn()?,
            port,
        };
        let t = Instant::now();
        // Ready: loaded, a slot free.
        while get(port, "/readyz").is_none_or(|r| !r.starts_with("HTTP/1.1 200")) {
            anyhow::ensure!(
                t.elapsed() < Duration::from_secs(600),
                "the server was not up within 600 s"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(s)
    }

    fn url(&self) -> String {
        format!("ws://127.0.0.1:{}", self.port)
    }

    fn rss_mb(&self) -> f64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
            .map_or(0.0, |kb| kb / 1024.0)
    }

    /// Wait until no session runs (a closed client's session has wound down).
    fn idle(&self) {
        let t = Instant::now();
        while t.elapsed() < Duration::from_secs(30) {
            let active = get(self.port, "/metrics").and_then(|m| {
                m.lines().find_map(|l| {
                    l.strip_prefix("assistant_sessions_active ")?
                        .parse::<u64>()
                        .ok()
                })
            });
            if active == Some(0) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// Step a remote session over `frames` frames of silence in lock step.
fn warm(m: &mut dyn DuplexModel, frames: usize) -> Result<()> {
    let mut out = StepOutput::default();
    let frame = vec![0f32; m.frame_len()];
    for _ in 0..frames {
        out.clear(frame.len());
        m.step(&frame, &mut out)?;
    }
    Ok(())
}

fn open(url: &str) -> Result<crate::net::client::RemoteModel> {
    connect(&ConnectOptions {
        lockstep: true,
        ..ConnectOptions::new(url)
    })
    .map_err(|e| anyhow::anyhow!("{e}"))
}

/// Connect times (s, three in a row, each closed before the next) and RSS (MB) at
/// rest and with N = 1, 2, 4 sessions that have each stepped 10 frames.
fn measure(model: &[String], per_session: bool) -> Result<(Vec<f64>, Vec<f64>)> {
    let srv = ServeChild::start(model, per_session)?;
    let mut connects = Vec::new();
    for _ in 0..3 {
        let t = Instant::now();
        let m = open(&srv.url())?;
        connects.push(t.elapsed().as_secs_f64());
        drop(m);
        srv.idle();
    }
    let mut rss = vec![srv.rss_mb()];
    for n in [1usize, 2, 4] {
        let mut sessions = Vec::new();
        for _ in 0..n {
            let mut m = open(&srv.url())?;
            warm(&mut m, 10)?;
            sessions.push(m);
        }
        std::thread::sleep(Duration::from_millis(500));
        rss.push(srv.rss_mb());
        drop(sessions);
        srv.idle();
    }
    Ok((connects, rss))
}

/// Removes the bench's checkpoint however the bench ends.
struct RemoveOnDrop(std::path::PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn build_kind() -> &'static str {
    if cfg!(debug_assertions) {
        "debug build (dependencies optimised)"
    } else {
        "release build"
    }
}

/// The ~300M Moshi-shaped checkpoint (random weights, q8, the real Mimi's shape).
fn write_300m(dir: &std::path::Path) -> Result<()> {
    let real = ModelConfig::moshiko();
    write_checkpoint(
        dir,
        &Synthetic {
            config: ModelConfig::from_parts(
                config::lm_config(1024, 16, 16, 3000, 256, 8, 1, 32000, 2048),
                real.mimi.clone(),
            ),
            mimi_toml: None,
            lm_toml: true,
        },
        LmFile::Q8,
        7,
        None,
    )
    .context("writing the ~300M checkpoint")?;
    Ok(())
}

/// The machine's load average over the last minute (the figures are distorted by it).
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().next().map(str::to_string))
        .unwrap_or_else(|| "unknown".into())
}

/// Sessions for the batch figures.
const BATCH_SESSIONS: std::ops::RangeInclusive<usize> = 1..=8;
/// Frames timed per measurement, and frames compared per session.
const BATCH_FRAMES: usize = 20;
/// The KV cache in the batch figures (8 s), both shapes. The batched attention reads
/// every slot's whole cache each step (masked) from the first step, where a fork reads
/// the steps it has had: with the models' 3000, the first frames of a bench would
/// compare a full cache against an almost empty one. In a long conversation both read
/// their whole cache.
const BATCH_CONTEXT: usize = 100;

/// One line per N: CPU and wall per frame, batched against alone, and the equality.
fn batch_lines(name: &str, make: &mut MakeLm, gen: &GenConfig) -> Result<()> {
    let (diff, differing) = alone_twice(make, gen, BATCH_FRAMES)?;
    println!(
        "  {name}: one session alone, run twice on fresh loads: largest logit difference {diff:.1e}, {differing} of {BATCH_FRAMES} steps' tokens differ"
    );
    for n in BATCH_SESSIONS {
        let eq = teacher_forced_equality(make, gen, n, BATCH_FRAMES)?;
        let one = batch_equality(make, gen, n, BATCH_FRAMES, Reference::BatchOfOne)?;
        let c = cost(make, gen, n, BATCH_FRAMES)?;
        println!(
            "  {name}, N={n}: LM CPU per session per frame {:.2} ms alone, {:.2} ms batched ({:.2}x); wall per frame {:.1} ms alone ({n} steps), {:.1} ms batched (one step); tokens equal in {} teacher-forced steps: {}, largest logit difference {:.1e} (largest logit {:.1}); against each session in a batch of one: {} of {} steps differ, largest logit difference {:.1e}",
            c.alone_cpu_ms,
            c.batch_cpu_ms,
            c.alone_cpu_ms / c.batch_cpu_ms.max(1e-9),
            c.alone_wall_ms,
            c.batch_wall_ms,
            eq.steps,
            if eq.tokens_equal() {
                "yes".to_string()
            } else {
                format!(
                    "NO, {} differ, the first: {}",
                    eq.differing_steps,
                    eq.first_difference.unwrap_or_default()
                )
            },
            eq.max_logit_diff,
            eq.max_logit,
            one.differing_steps,
            one.steps,
            one.max_logit_diff
        );
        std::io::stdout().flush()?;
    }
    Ok(())
}

/// `serve --batch`'s figures for N = 1..8 on the demo and the ~300M shape (its
/// checkpoint in `m300`, written if missing).
pub fn bench_serve_batch(m300: Option<&std::path::Path>) -> Result<()> {
    println!(
        "serve --batch: the LM of N sessions in one batched step against N forks stepped one by one ({}, CPU; CPU time from getrusage over all threads; load average {} at the start):",
        build_kind(),
        load_average()
    );
    let dev = moshi::candle::Device::Cpu;
    let mut demo = config::demo();
    demo.lm.transformer.context = BATCH_CONTEXT;
    batch_lines(
        &format!("demo, context {BATCH_CONTEXT}"),
        &mut random_maker(&demo, DEMO_WEIGHT_SEED, &dev),
        &demo.gen,
    )?;
    // The demo's weights in q8: q8 quantizes each activation row in blocks of 32, so a
    // last-bit difference between the batched and unbatched attention's sums can move a
    // value across a rounding step; f32 weights show the difference as it is.
    let q8 = RemoveOnDrop(
        std::env::temp_dir().join(format!("assistant-bench-batch-q8-{}", std::process::id())),
    );
    write_checkpoint(
        &q8.0,
        &Synthetic {
            config: config::demo(),
            mimi_toml: Some(config::demo_mimi()),
            lm_toml: true,
        },
        LmFile::Q8,
        7,
        None,
    )
    .context("writing the demo-shaped q8 checkpoint")?;
    let (mut make, gen) = checkpoint_maker(&q8.0, BATCH_CONTEXT, &dev)?;
    batch_lines(
        &format!("demo shape q8, context {BATCH_CONTEXT}"),
        &mut make,
        &gen,
    )?;
    drop(q8);
    let own;
    let dir = match m300 {
        Some(d) => d,
        None => {
            own = RemoveOnDrop(
                std::env::temp_dir().join(format!("assistant-bench-batch-{}", std::process::id())),
            );
            write_300m(&own.0)?;
            &own.0
        }
    };
    let (mut make, gen) = checkpoint_maker(dir, BATCH_CONTEXT, &dev)?;
    batch_lines(
        &format!("~300M q8, context {BATCH_CONTEXT}"),
        &mut make,
        &gen,
    )?;
    println!("  load average at the end: {}", load_average());
    Ok(())
}

pub fn bench_serve() -> Result<()> {
    let build = build_kind();
    println!("serve: connect time and memory, one shared load against a load per session ({build}, CPU):");
    let m300 = std::env::temp_dir().join(format!("assistant-bench-serve-{}", std::process::id()));
    let _cleanup = RemoveOnDrop(m300.clone());
    write_300m(&m300)?;
    let shapes: [(&str, Vec<String>); 2] = [
        ("demo", vec!["--demo".into()]),
        (
            "~300M q8 LM + real-shape Mimi",
            vec!["--model-dir".into(), m300.display().to_string()],
        ),
    ];
    for (name, flags) in shapes {
        for per_session in [true, false] {
            let (c, rss) = measure(&flags, per_session)?;
            let how = if per_session {
                "a load per session (before)"
            } else {
                "one shared load (now)"
            };
            let mut sorted = c.clone();
            sorted.sort_by(f64::total_cmp);
            println!(
                "  {name}, {how}: connect to handshake {} s (median {:.3} s); RSS at rest {:.0} MB, N=1 {:.0} MB, N=2 {:.0} MB, N=4 {:.0} MB",
                c.iter().map(|v| format!("{v:.3}")).collect::<Vec<_>>().join(" / "),
                sorted[1],
                rss[0],
                rss[1],
                rss[2],
                rss[3]
            );
            std::io::stdout().flush()?;
        }
    }
    bench_serve_batch(Some(&m300))
}
