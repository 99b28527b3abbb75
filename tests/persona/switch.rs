//! Switching persona in the middle of a running conversation, through the real
//! engine runner: F2 in the UI state gives JARVIS's sampling, which the model
//! sees from the next step on; a voice swap lands at a frame boundary; and not
//! one audio frame is lost or duplicated, in or out.

use assistant::audio::meters::Meters;
use assistant::audio::port::InputPort;
use assistant::audio::wav::{read_wav, WavAudio, WavSink};
use assistant::engine::runner::{self, EngineSetup, Loaded};
use assistant::engine::{Command, DuplexModel, EngineEvent, ModelInfo, Sampling, StepOutput};
use assistant::persona::Catalog;
use assistant::ui::state::Effect;
use assistant::ui::{AppEvent, UiContext, UiState};
use ratatui::crossterm::event::{KeyCode, KeyEvent};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const FRAME: usize = 1920;
const FRAMES: usize = 240;

/// What one step saw: which model, the first input sample (the ramp's index),
/// and the sampling in force.
#[derive(Debug, Clone, PartialEq)]
struct Seen {
    model: &'static str,
    first: f32,
    sampling: Sampling,
}

/// Says back what it hears, logging every step with the sampling it used.
struct Observer {
    name: &'static str,
    sampling: Sampling,
    log: Arc<Mutex<Vec<Seen>>>,
}

impl DuplexModel for Observer {
    fn info(&self) -> ModelInfo {
        ModelInfo {
            name: self.name.into(),
            device: "cpu".into(),
            dtype: "f32".into(),
        }
    }
    fn sample_rate(&self) -> u32 {
        24_000
    }
    fn frame_len(&self) -> usize {
        FRAME
    }
    fn step(&mut self, pcm_in: &[f32], out: &mut StepOutput) -> anyhow::Result<()> {
        // Slow enough that commands arrive mid-run.
        std::thread::sleep(Duration::from_millis(2));
        self.log.lock().unwrap().push(Seen {
            model: self.name,
            first: pcm_in[0],
            sampling: self.sampling.clone(),
        });
        out.pcm.copy_from_slice(pcm_in);
        Ok(())
    }
    fn reset(&mut self) {}
    fn set_sampling(&mut self, s: &Sampling) {
        self.sampling = s.clone();
    }
}

#[test]
fn switching_persona_mid_conversation_changes_sampling_from_the_next_step_and_loses_no_frame() {
    let personas = Catalog::builtin().personas;
    let (moshi, jarvis, hal) = (&personas[0], &personas[1], &personas[4]);
    let seed = Sampling::default().seed;
    let log = Arc::new(Mutex::new(Vec::new()));

    // A ramp: sample i has value i, exactly representable, so any lost or
    // repeated sample shows.
    let samples: Vec<f32> = (0..FRAME * FRAMES).map(|i| i as f32).collect();
    let input = InputPort::Memory {
        audio: WavAudio {
            samples: samples.clone(),
            sample_rate: 24_000,
            channels: 1,
        },
        pos: 0,
    };
    let dir = tempfile::tempdir().unwrap();
    let out_path = dir.path().join("out.wav");
    let (ev_tx, ev_rx) = crossbeam_channel::unbounded();
    let (cmd_tx, cmd_rx) = crossbeam_channel::unbounded();
    let first_log = log.clone();
    let first_sampling = moshi.voice.sampling(seed);
    let setup = EngineSetup {
        wav_out: Some(WavSink::create(&out_path, 24_000).unwrap()),
        ..EngineSetup::new(
            runner::loader(move |_| {
                Ok(Loaded {
                    model: Box::new(Observer {
                        name: "first",
                        sampling: first_sampling.clone(),
                        log: first_log.clone(),
                    }),
                    notices: vec![],
                    degraded: None,
                })
            }),
            input,
            Arc::new(Meters::default()),
            ev_tx,
            cmd_rx,
        )
    };
    let engine = runner::spawn(setup);

    // The UI, as the user sees it, with the built-ins.
    let mut ui = UiState::new(&UiContext::new(Arc::new(Meters::default()), None));
    let mut switched_at = None;
    let mut swapped_at = None;
    for ev in ev_rx.iter() {
        match &ev {
            EngineEvent::Step(s) if s.step_index == 60 && switched_at.is_none() => {
                // F2 mid-conversation: the UI says JARVIS, and its effect carries JARVIS's sampling.
                let update = ui.apply(AppEvent::Key(KeyEvent::from(KeyCode::F(2))));
                assert_eq!(ui.persona, "JARVIS");
                let Some(Effect::Persona(switch)) = update.effect else {
                    panic!("F2 gave {:?}", update.effect)
                };
                assert_eq!(switch.sampling, jarvis.voice.sampling(seed));
                assert!(switch.load.is_none(), "no voice loader here: weights stay");
                cmd_tx.send(Command::SetSampling(switch.sampling)).unwrap();
                switched_at = Some(s.step_index);
            }
            EngineEvent::Step(s) if s.step_index == 150 && swapped_at.is_none() => {
                // Another voice swapped in at a frame boundary (what a background load ends with).
                let second = Observer {
                    name: "second",
                    sampling: hal.voice.sampling(seed),
                    log: log.clone(),
                };
                cmd_tx
                    .send(Command::SwapModel {
                        model: Box::new(second),
                        weights: assistant::bus::Weights::Demo,
                    })
                    .unwrap();
                swapped_at = Some(s.step_index);
            }
            EngineEvent::Stopped => break,
            _ => {}
        }
        ui.apply(AppEvent::Engine(ev));
    }
    let stats = engine.join().unwrap();
    assert!(stats.error.is_none(), "{stats:?}");
    let seen = log.lock().unwrap().clone();

    // Every input frame reached a model exactly once, in order, across both switches.
    assert_eq!(seen.len(), FRAMES);
    for (k, s) in seen.iter().enumerate() {
        assert_eq!(
            s.first,
            (k * FRAME) as f32,
            "step {k} got the wrong frame: {s:?}"
        );
    }
    // Sampling: Moshi's, then JARVIS's from one step on (never back), then the
    // swapped voice with HAL's.
    let first_jarvis = seen
        .iter()
        .position(|s| s.sampling == jarvis.voice.sampling(seed))
        .expect("JARVIS's sampling reached the model");
    let first_second = seen
        .iter()
        .position(|s| s.model == "second")
        .expect("the swapped voice stepped");
    assert!(
        first_jarvis > switched_at.unwrap() as usize,
        "applies after the switch, not before"
    );
    assert!(
        first_jarvis <= switched_at.unwrap() as usize + 20,
        "applies promptly: step {first_jarvis}"
    );
    assert!(seen[..first_jarvis]
        .iter()
        .all(|s| s.sampling == moshi.voice.sampling(seed) && s.model == "first"));
    assert!(seen[first_jarvis..first_second]
        .iter()
        .all(|s| s.sampling == jarvis.voice.sampling(seed) && s.model == "first"));
    assert!(seen[first_second..]
        .iter()
        .all(|s| s.sampling == hal.voice.sampling(seed) && s.model == "second"));
    assert!(first_second > swapped_at.unwrap() as usize && first_second < FRAMES - 10);
    // The UI heard about the swapped-in model and is still fine.
    assert_eq!(ui.model.as_ref().unwrap().name, "second");

    // And what the models said reached the output whole: the same ramp, sample for sample.
    let out = read_wav(&out_path).unwrap();
    assert_eq!(
        out.samples.len(),
        samples.len(),
        "no output frame lost or duplicated"
    );
    assert!(
        out.samples.iter().zip(&samples).all(|(a, b)| a == b),
        "output is the input, in order"
    );
}
