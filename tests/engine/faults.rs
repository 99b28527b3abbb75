//! Crash containment: a model that panics mid-conversation leaves the engine
//! thread alive, the transcript intact, and `r` (Command::Reset) restarts it.

use crate::common;
use assistant::audio::meters::Meters;
use assistant::audio::port::FilePacer;
use assistant::audio::wav::read_wav;
use assistant::bus::ModelInfo;
use assistant::engine::load::LoadFailure;
use assistant::engine::runner::{self, EngineSetup, Loaded};
use assistant::engine::{Command, EngineEvent};
use assistant::models::duplex::{DuplexModel, StepOutput};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Says "w<step>" every step and panics at step `panic_at` of its first life.
struct Fragile {
    step: usize,
    panic_at: Option<usize>,
}

impl DuplexModel for Fragile {
    fn info(&self) -> ModelInfo {
        ModelInfo {
            name: "fragile".into(),
            device: "cpu".into(),
            dtype: "f32".into(),
        }
    }
    fn sample_rate(&self) -> u32 {
        24_000
    }
    fn frame_len(&self) -> usize {
        1920
    }
    fn step(&mut self, _pcm: &[f32], out: &mut StepOutput) -> anyhow::Result<()> {
        if Some(self.step) == self.panic_at {
            panic!("injected fault at step {}", self.step);
        }
        out.text = Some(format!(" w{}", self.step));
        self.step += 1;
        Ok(())
    }
    fn reset(&mut self) {}
}

#[test]
fn an_engine_panic_is_contained_and_r_restarts_it() {
    let audio = read_wav(&common::shared_audio("hello_24k_mono.wav")).unwrap();
    let meters = Arc::new(Meters::default());
    let (pacer, port) = FilePacer::start(audio, meters.clone());
    let (ev_tx, ev_rx) = crossbeam_channel::unbounded();
    let (cmd_tx, cmd_rx) = crossbeam_channel::unbounded();
    let loads = Arc::new(AtomicUsize::new(0));
    let loads2 = loads.clone();
    let loader = runner::loader(move |_| {
        let n = loads2.fetch_add(1, Ordering::SeqCst);
        if n == 1 {
            // The first restart attempt fails to load: that is shown too.
            return Err(LoadFailure {
                message: "weights vanished".into(),
                remedy: "put them back".into(),
            });
        }
        Ok(Loaded {
            model: Box::new(Fragile {
                step: 0,
                panic_at: (n == 0).then_some(10),
            }),
            notices: vec![],
            degraded: None,
        })
    });
    let setup = EngineSetup::new(loader, port, meters, ev_tx, cmd_rx);
    let engine = runner::spawn(setup);
    let mut transcript = String::new();
    let mut failures = Vec::new();
    let mut ready = 0;
    loop {
        let ev = ev_rx
            .recv_timeout(Duration::from_secs(10))
            .expect("the engine keeps talking to the UI");
        match ev {
            EngineEvent::Text(t) => {
                transcript.push_str(&t);
                if ready == 2 && transcript.matches(" w").count() >= 15 {
                    cmd_tx.send(Command::Shutdown).unwrap();
                }
            }
            EngineEvent::ModelFailed { error, remedy } => {
                failures.push((error, remedy));
                cmd_tx.send(Command::Reset).unwrap();
            }
            EngineEvent::ModelReady { .. } => ready += 1,
            EngineEvent::Stopped => break,
            _ => {}
        }
    }
    let stats = engine
        .join()
        .expect("the engine thread itself never panics");
    drop(pacer);
    assert_eq!(failures.len(), 2, "{failures:?}");
    assert!(
        failures[0]
            .0
            .contains("the model crashed: injected fault at step 10"),
        "{failures:?}"
    );
    assert!(failures[0].1.contains("press r"), "{failures:?}");
    assert_eq!(failures[1].0, "weights vanished");
    assert_eq!(loads.load(Ordering::SeqCst), 3);
    assert!(
        transcript.starts_with(" w0 w1 w2 w3 w4 w5 w6 w7 w8 w9 w0 w1"),
        "the transcript before the crash is intact: {transcript}"
    );
    assert!(stats.frames_out >= 15);
}

#[test]
fn a_panic_while_reading_a_file_headless_ends_the_run_with_the_error() {
    let tmp = tempfile::tempdir().unwrap();
    let audio = read_wav(&common::shared_audio("hello_24k_mono.wav")).unwrap();
    let (ev_tx, ev_rx) = crossbeam_channel::unbounded();
    let (_cmd_tx, cmd_rx) = crossbeam_channel::unbounded();
    let out = tmp.path().join("out.wav");
    let setup = EngineSetup {
        wav_out: Some(assistant::audio::wav::WavSink::create(&out, 24_000).unwrap()),
        ..EngineSetup::new(
            runner::loader(|_| {
                Ok(Loaded {
                    model: Box::new(Fragile {
                        step: 0,
                        panic_at: Some(5),
                    }),
                    notices: vec![],
                    degraded: None,
                })
            }),
            assistant::audio::port::InputPort::Memory { audio, pos: 0 },
            Arc::new(Meters::default()),
            ev_tx,
            cmd_rx,
        )
    };
    let stats = runner::run(setup);
    assert!(
        stats
            .error
            .as_deref()
            .unwrap_or("")
            .contains("injected fault"),
        "{stats:?}"
    );
    assert_eq!(stats.frames_out, 5);
    let texts: String = ev_rx
        .try_iter()
        .filter_map(|e| {
            if let EngineEvent::Text(t) = e {
                Some(t)
            } else {
                None
            }
        })
        .collect();
    assert_eq!(texts, " w0 w1 w2 w3 w4");
    // What was said before the crash is kept.
    let kept = read_wav(&out).unwrap();
    assert_eq!(kept.samples.len(), 5 * 1920);
}
