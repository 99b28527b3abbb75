//! `serve --batch`: the sessions' LM steps in one batched forward pass. Each session's
//! tokens must be exactly those of its own unbatched run, teacher-forced (the same input
//! codes), whatever the others do: join at other frames, come late (masked), leave and
//! have their slot taken by a new session. Through the binary, two real clients on one
//! `serve --batch` both get audio back while a third says nothing, and `/metrics`
//! counts the batched steps, their sizes and the silent session masked as late.

use crate::personaplex_common::{complete_checkpoint, fixtures};
use assistant::bus::Cancel;
use assistant::models::duplex::{DuplexModel, StepOutput};
use assistant::models::moshi::batch_check::{
    greedy, random_maker, realtime_capacity, teacher_forced_equality,
};
use assistant::models::moshi::config;
use assistant::models::moshi::demo::{demo_model, demo_model_batched, DEMO_WEIGHT_SEED};
use assistant::models::moshi::{load_model_with, DeviceChoice, Discovery, ModelOptions};
use assistant::net::client::{connect, ConnectOptions};
use moshi::candle::Device;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_assistant");

#[test]
fn each_batched_session_gives_the_tokens_of_its_own_run_for_1_to_8_sessions() {
    let cfg = config::demo();
    let dev = Device::Cpu;
    let mut make = random_maker(&cfg, DEMO_WEIGHT_SEED, &dev);
    for n in 1..=8 {
        let eq = teacher_forced_equality(&mut make, &cfg.gen, n, 24).unwrap();
        eprintln!(
            "demo, {n} session(s) + 1 rejoining: {} steps, tokens equal: {}, largest logit difference {:.2e}",
            eq.steps,
            eq.tokens_equal(),
            eq.max_logit_diff
        );
        assert_eq!(eq.first_difference, None, "{n} sessions");
        // Every session stepped all its frames: n sessions of 24, and 13 rejoining.
        assert_eq!(eq.steps, n * 24 + 13);
        assert!(eq.max_logit_diff < 1e-3, "{n}: {}", eq.max_logit_diff);
    }
}

/// `frames` frames of a voice: a tone with `pitch`, a little noise.
fn voice(frames: usize, frame_len: usize, pitch: f32) -> Vec<Vec<f32>> {
    let mut seed = 0x2545_f491_u32 ^ pitch.to_bits();
    (0..frames)
        .map(|f| {
            (0..frame_len)
                .map(|i| {
                    seed ^= seed << 13;
                    seed ^= seed >> 17;
                    seed ^= seed << 5;
                    let t = (f * frame_len + i) as f32 / 24_000.0;
                    0.3 * (t * pitch * std::f32::consts::TAU).sin()
                        + 0.02 * (seed as f32 / u32::MAX as f32 - 0.5)
                })
                .collect()
        })
        .collect()
}

type Steps = Vec<(Option<u32>, Option<Vec<u32>>, Vec<f32>)>;

fn run(m: &mut dyn DuplexModel, frames: &[Vec<f32>]) -> Steps {
    let mut out = StepOutput::default();
    frames
        .iter()
        .map(|f| {
            out.clear(f.len());
            m.step(f, &mut out).unwrap();
            (out.text_token, out.audio_codes.clone(), out.pcm.clone())
        })
        .collect()
}

#[test]
fn sessions_forked_from_a_batched_model_step_together_on_their_threads_and_match_alone() {
    let dev = Device::Cpu;
    let n = 3;
    let batched = demo_model_batched(&greedy(), &dev, "cpu", n).unwrap();
    let alone = demo_model(&greedy(), &dev, "cpu").unwrap();
    let mut slots: Vec<Box<dyn DuplexModel>> = (0..n)
        .map(|_| batched.fork().expect("a free slot"))
        .collect();
    // All slots taken: no fourth session (it waits ~2 s for one, then gives up).
    assert!(
        batched.fork().is_none(),
        "a fourth slot in a batch of three"
    );
    let frame_len = alone.frame_len();
    let voices: Vec<_> = (0..n)
        .map(|i| voice(30, frame_len, 180.0 + 70.0 * i as f32))
        .collect();
    // Each session on its own thread, joining 0, 3 and 6 frames in.
    let got: Vec<Steps> = std::thread::scope(|s| {
        let handles: Vec<_> = slots
            .iter_mut()
            .zip(&voices)
            .enumerate()
            .map(|(i, (m, v))| {
                s.spawn(move || {
                    std::thread::sleep(Duration::from_millis(240 * i as u64));
                    m.reset();
                    run(m.as_mut(), v)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for (i, v) in voices.iter().enumerate() {
        let mut own = alone.fork().unwrap();
        own.reset();
        let want = run(own.as_mut(), v);
        for (f, (g, w)) in got[i].iter().zip(&want).enumerate() {
            assert_eq!(g.0, w.0, "session {i} frame {f}: text token");
            assert_eq!(g.1, w.1, "session {i} frame {f}: audio codes");
            let d =
                g.2.iter()
                    .zip(&w.2)
                    .map(|(a, b)| (a - b).abs())
                    .fold(0f32, f32::max);
            assert!(d < 1e-3, "session {i} frame {f}: pcm differs by {d}");
        }
    }
    assert!(
        got[0].iter().any(|s| s.1.is_some()),
        "the demo never spoke: nothing was compared"
    );
    // A session that leaves frees its slot for the next.
    drop(slots.pop());
    assert!(batched.fork().is_some(), "the freed slot was not reusable");
}

#[test]
fn batch_refuses_personaplex_at_load_and_says_why() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(
        fixtures().join("personaplex/model.safetensors"),
        dir.path().join("model.safetensors"),
    )
    .unwrap();
    complete_checkpoint(dir.path());
    let opts = ModelOptions {
        model_dir: Some(dir.path().to_path_buf()),
        device: DeviceChoice::Cpu,
        sampling: greedy(),
        sessions: 2,
        batch: true,
        ..Default::default()
    };
    let err = match load_model_with(&opts, &Discovery::default(), &mut |_| {}, &Cancel::new()) {
        Ok(_) => panic!("PersonaPlex loaded batched"),
        Err(e) => e,
    };
    assert!(
        err.message.contains("--batch does not serve PersonaPlex"),
        "{}",
        err.message
    );
    assert!(err.remedy.contains("without --batch"), "{}", err.remedy);
}

#[test]
fn the_capacity_measurement_of_gpu_check_runs_on_the_demo() {
    let cfg = config::demo();
    let dev = Device::Cpu;
    let mut make = random_maker(&cfg, DEMO_WEIGHT_SEED, &dev);
    // A frame long enough for anything: both ways hold every N measured.
    let cap = realtime_capacity(&mut make, &cfg.gen, &[1, 2], 3, 1e9).unwrap();
    assert_eq!(cap.costs.len(), 2);
    assert_eq!((cap.alone, cap.batched, cap.stopped), (2, 2, None));
    assert!(cap
        .costs
        .iter()
        .all(|c| c.batch_wall_ms > 0.0 && c.alone_wall_ms > 0.0));
    // A frame too short for anything: it stops at the first N.
    let cap = realtime_capacity(&mut make, &cfg.gen, &[1, 2], 3, 0.0).unwrap();
    assert_eq!((cap.costs.len(), cap.alone, cap.batched), (1, 0, 0));
}

/// `GET /metrics` of the server on `port`: its body.
fn scrape(port: u16) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: test\r\n\r\n")
        .unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    text.split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_string()
}

/// A sample's value in a `/metrics` body (name with its labels).
fn metric(body: &str, name: &str) -> f64 {
    body.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in:\n{body}"))
}

#[test]
fn two_clients_on_one_serve_batch_get_audio_back_and_metrics_count_the_batch() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut child = Command::new(BIN)
        .args([
            "serve",
            "--demo",
            "--device",
            "cpu",
            "--no-journal",
            "--batch",
        ])
        .args(["--max-sessions", "3", "--idle-timeout", "30"])
        .args([
            "--bind",
            &format!("127.0.0.1:{port}"),
            "--log-file",
            "/dev/null",
        ])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let mut said = Vec::new();
    let t = Instant::now();
    while !said.iter().any(|l: &String| l.starts_with("ready:")) {
        assert!(t.elapsed() < Duration::from_secs(60), "not ready: {said:?}");
        if let Ok(l) = rx.recv_timeout(Duration::from_millis(200)) {
            said.push(l);
        }
        assert!(
            child.try_wait().unwrap().is_none(),
            "serve exited: {said:?}"
        );
    }
    assert!(
        said.iter()
            .any(|l| l.contains("stepped together in one batch")),
        "{said:?}"
    );
    let url = format!("ws://127.0.0.1:{port}");
    // Joined first and never sends a frame: a client that stalled.
    let silent = connect(&ConnectOptions {
        lockstep: true,
        ..ConnectOptions::new(&url)
    })
    .unwrap();
    let clients: Vec<_> = (0..2)
        .map(|i| {
            let url = url.clone();
            std::thread::spawn(move || {
                let mut m = connect(&ConnectOptions {
                    lockstep: true,
                    ..ConnectOptions::new(&url)
                })
                .unwrap_or_else(|e| panic!("client {i}: {e}"));
                let frames = voice(40, m.frame_len(), 200.0 + 90.0 * i as f32);
                let mut out = StepOutput::default();
                let mut loud = 0;
                for f in &frames {
                    out.clear(f.len());
                    m.step(f, &mut out).unwrap();
                    loud += usize::from(out.pcm.iter().any(|&s| s.abs() > 1e-4));
                }
                loud
            })
        })
        .collect();
    let loud: Vec<usize> = clients.into_iter().map(|c| c.join().unwrap()).collect();
    let m = scrape(port);
    drop(silent);
    let _ = child.kill();
    let _ = child.wait();
    assert!(loud.iter().all(|&l| l > 0), "frames with audio: {loud:?}");
    eprintln!(
        "{}",
        m.lines()
            .filter(|l| l.starts_with("assistant_batch"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert_eq!(metric(&m, "assistant_batch_slots"), 3.0);
    // 40 frames from each talking client, each stepped once: alone or together.
    let steps = metric(&m, "assistant_batch_steps_total");
    assert!((40.0..=80.0).contains(&steps), "{steps} steps");
    assert_eq!(metric(&m, "assistant_batch_size_sum"), 80.0);
    assert_eq!(metric(&m, "assistant_batch_size_count"), steps);
    assert_eq!(metric(&m, "assistant_batch_size_bucket{le=\"0\"}"), 0.0);
    assert_eq!(metric(&m, "assistant_batch_size_bucket{le=\"3\"}"), steps);
    // The silent session never stepped, so no step held all three.
    assert_eq!(metric(&m, "assistant_batch_size_bucket{le=\"2\"}"), steps);
    assert_eq!(metric(&m, "assistant_batch_step_seconds_count"), steps);
    assert!(metric(&m, "assistant_batch_step_seconds_sum") > 0.0);
    // The silent session is masked in every step (a talking one when its frame came
    // after the gather window); it is waited for once, at the first.
    let late = metric(&m, "assistant_batch_late_total");
    assert!(
        (steps..=2.0 * steps).contains(&late),
        "{late} late in {steps} steps"
    );
    assert!(metric(&m, "assistant_batch_waited_out_total") >= 1.0);
}

#[test]
fn a_stalled_session_costs_the_others_one_gather_window_once() {
    let dev = Device::Cpu;
    let batched = demo_model_batched(&greedy(), &dev, "cpu", 3).unwrap();
    let mut talking = batched.fork().unwrap();
    // Joined, never steps: a client that stopped sending.
    let _stalled = batched.fork().unwrap();
    let frames = voice(12, talking.frame_len(), 240.0);
    talking.reset();
    let steps = run(talking.as_mut(), &frames);
    assert_eq!(steps.len(), 12, "the talking session was held");
    let (slots, stats) = batched.batch().unwrap();
    assert_eq!(slots, 3);
    assert_eq!(stats.slot_steps, 12, "{stats:?}");
    // Masked in every step, and waited for only in the first.
    assert_eq!(stats.late, 12, "{stats:?}");
    assert_eq!(stats.waited_out, 1, "{stats:?}");
}
