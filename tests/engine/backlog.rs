//! When the model is slower than real time, the oldest input frames are dropped
//! and counted, and latency stays bounded instead of growing.

use crate::common;
use assistant::audio::meters::Meters;
use assistant::audio::port::FilePacer;
use assistant::audio::wav::read_wav;
use assistant::bus::ModelInfo;
use assistant::engine::runner::{self, EngineSetup, Loaded};
use assistant::models::duplex::{DuplexModel, StepOutput};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A model that needs 1.5x real time per frame and remembers what it heard.
struct Slow {
    heard_rms: Vec<f32>,
    log: Arc<std::sync::Mutex<Vec<Instant>>>,
}

impl DuplexModel for Slow {
    fn info(&self) -> ModelInfo {
        ModelInfo {
            name: "slow".into(),
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
    fn step(&mut self, pcm_in: &[f32], _out: &mut StepOutput) -> anyhow::Result<()> {
        std::thread::sleep(Duration::from_millis(120));
        self.heard_rms.push(assistant::audio::meters::rms(pcm_in));
        self.log.lock().unwrap().push(Instant::now());
        Ok(())
    }
    fn reset(&mut self) {}
}

#[test]
fn a_slow_model_drops_the_oldest_frames_and_latency_stays_bounded() {
    let audio = read_wav(&common::shared_audio("hello_24k_mono.wav")).unwrap();
    let input_s = audio.seconds();
    let meters = Arc::new(Meters::default());
    let (pacer, port) = FilePacer::start(audio, meters.clone());
    let (ev_tx, ev_rx) = crossbeam_channel::unbounded();
    let (_cmd_tx, cmd_rx) = crossbeam_channel::unbounded();
    let log = Arc::new(std::sync::Mutex::new(Vec::new()));
    let log2 = log.clone();
    let started = Instant::now();
    let setup = EngineSetup {
        max_backlog: 2,
        ..EngineSetup::new(
            runner::loader(move |_| {
                Ok(Loaded {
                    model: Box::new(Slow {
                        heard_rms: Vec::new(),
                        log: log2.clone(),
                    }),
                    notices: vec![],
                    degraded: None,
                })
            }),
            port,
            meters,
            ev_tx,
            cmd_rx,
        )
    };
    let stats = runner::run(setup);
    let wall = started.elapsed().as_secs_f64();
    drop(pacer);
    let total_frames = (input_s * 24_000.0 / 1920.0).ceil() as u64;
    assert!(
        stats.dropped_frames > 0,
        "a model at 1.5x real time must drop frames: {stats:?}"
    );
    assert_eq!(stats.frames_in, stats.frames_out + stats.dropped_frames);
    assert!(
        stats.frames_in + 1 >= total_frames && stats.frames_in <= total_frames + 1,
        "every input frame was stepped or dropped: {} of {total_frames}",
        stats.frames_in
    );
    // Without dropping, the run would take 1.5x the input (about 9 s); with a
    // backlog of 2 frames it ends at most a few frames after the input does.
    assert!(
        wall < input_s + 1.5,
        "ran {wall:.2} s for {input_s:.2} s of input"
    );
    // The UI heard about the drops.
    let last = ev_rx.try_iter().filter_map(|e| match e {
        assistant::engine::EngineEvent::Step(s) => Some(s),
        _ => None,
    });
    assert_eq!(last.last().unwrap().dropped_frames, stats.dropped_frames);
}
