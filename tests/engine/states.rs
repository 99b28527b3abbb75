//! The engine's state machine as a user meets it: a persona's voice survives an idle
//! unload and reload and an `r` restart; a voice that arrives while the engine has
//! failed or unloaded is held, not claimed ready; quitting during a slow load returns
//! at once; and the journal splits turns exactly where the feed does.

use assistant::audio::meters::Meters;
use assistant::audio::port::InputPort;
use assistant::bus::{Happening, ModelInfo, Residency, Weights};
use assistant::engine::load::LoadFailure;
use assistant::engine::runner::{self, EngineSetup, Loaded};
use assistant::engine::{Command, EngineEvent};
use assistant::models::duplex::{DuplexModel, StepOutput};
use crossbeam_channel::{Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A silent voice (so an idle watch can fire) that panics at step `panic_at` if set.
struct Voice {
    name: String,
    step: usize,
    panic_at: Option<usize>,
}

impl Voice {
    fn new(name: &str) -> Self {
        Self {
            name: name.into(),
            step: 0,
            panic_at: None,
        }
    }
}

impl DuplexModel for Voice {
    fn info(&self) -> ModelInfo {
        ModelInfo {
            name: self.name.clone(),
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
    fn step(&mut self, _pcm: &[f32], _out: &mut StepOutput) -> anyhow::Result<()> {
        if Some(self.step) == self.panic_at {
            panic!("injected fault");
        }
        self.step += 1;
        Ok(())
    }
    fn reset(&mut self) {}
}

fn weights(name: &str) -> Weights {
    Weights::Repo(format!("test/{name}"))
}

struct Run {
    events: Receiver<EngineEvent>,
    commands: Sender<Command>,
    engine: std::thread::JoinHandle<assistant::engine::stats::RunStats>,
    loads: Arc<Mutex<Vec<Weights>>>,
}

/// An engine on a real-time silent input, loading a `Voice` named after the weights
/// asked for; the first model of "cli" panics at `panic_first_at`.
fn start(idle_unload: Option<Duration>, panic_first_at: Option<usize>) -> Run {
    let loads = Arc::new(Mutex::new(Vec::new()));
    let seen = loads.clone();
    let loader = runner::loader(move |req| {
        let mut l = seen.lock().unwrap();
        l.push(req.weights.clone());
        let name = match req.weights {
            Weights::Repo(r) => r.trim_start_matches("test/").to_string(),
            _ => "cli".to_string(),
        };
        let mut v = Voice::new(&name);
        if l.len() == 1 {
            v.panic_at = panic_first_at;
        }
        Ok(Loaded::plain(Box::new(v)))
    });
    let (ev_tx, events) = crossbeam_channel::unbounded();
    let (commands, cmd_rx) = crossbeam_channel::unbounded();
    let setup = EngineSetup {
        voice: weights("cli"),
        idle_unload,
        ..EngineSetup::new(
            loader,
            InputPort::silence(24_000),
            Arc::new(Meters::default()),
            ev_tx,
            cmd_rx,
        )
    };
    Run {
        events,
        commands,
        engine: runner::spawn(setup),
        loads,
    }
}

impl Run {
    /// Events until `until` matches (that one included), within `secs`.
    fn until(&self, secs: u64, mut until: impl FnMut(&EngineEvent) -> bool) -> Vec<EngineEvent> {
        let deadline = Instant::now() + Duration::from_secs(secs);
        let mut got = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let ev = self
                .events
                .recv_timeout(left)
                .unwrap_or_else(|_| panic!("timed out; saw {:?}", brief(&got)));
            let done = until(&ev);
            got.push(ev);
            if done {
                return got;
            }
        }
    }

    fn stop(self) -> Vec<Weights> {
        self.commands.send(Command::Shutdown).unwrap();
        self.engine.join().unwrap();
        let l = self.loads.lock().unwrap().clone();
        l
    }
}

fn brief(evs: &[EngineEvent]) -> Vec<String> {
    evs.iter()
        .filter(|e| !matches!(e, EngineEvent::Step(_)))
        .map(|e| format!("{e:?}"))
        .collect()
}

fn ready_name(e: &EngineEvent) -> Option<&str> {
    match e {
        EngineEvent::ModelReady { info, .. } => Some(&info.name),
        _ => None,
    }
}

fn swap(name: &str) -> Command {
    Command::SwapModel {
        model: Box::new(Voice::new(name)),
        weights: weights(name),
    }
}

#[test]
fn a_personas_voice_survives_an_idle_unload_and_reload() {
    let run = start(Some(Duration::from_millis(400)), None);
    run.until(10, |e| ready_name(e) == Some("cli"));
    run.commands.send(swap("jarvis")).unwrap();
    run.until(10, |e| ready_name(e) == Some("jarvis"));
    run.until(10, |e| {
        matches!(e, EngineEvent::Residency(Residency::Unloaded))
    });
    // `r` while unloaded reloads at once (speech would too): the current voice, JARVIS.
    run.commands.send(Command::Reset).unwrap();
    let evs = run.until(10, |e| ready_name(e).is_some());
    assert_eq!(
        evs.iter().find_map(ready_name),
        Some("jarvis"),
        "{:?}",
        brief(&evs)
    );
    assert!(evs.contains(&EngineEvent::Voice(weights("jarvis"))));
    assert_eq!(
        run.stop(),
        vec![weights("cli"), weights("jarvis")],
        "the reload asked for JARVIS's weights"
    );
}

#[test]
fn a_personas_voice_survives_an_r_restart() {
    let run = start(None, None);
    run.until(10, |e| ready_name(e) == Some("cli"));
    // GLaDOS's voice arrives from the voice loader, then crashes a few steps later.
    run.commands
        .send(Command::SwapModel {
            model: Box::new(Voice {
                panic_at: Some(5),
                ..Voice::new("glados")
            }),
            weights: weights("glados"),
        })
        .unwrap();
    run.until(10, |e| matches!(e, EngineEvent::ModelFailed { .. }));
    run.commands.send(Command::Reset).unwrap();
    let evs = run.until(10, |e| ready_name(e).is_some());
    assert!(
        evs.contains(&EngineEvent::Happened(Happening::Restarting)),
        "{:?}",
        brief(&evs)
    );
    assert_eq!(evs.iter().find_map(ready_name), Some("glados"));
    assert_eq!(
        run.stop(),
        vec![weights("cli"), weights("glados")],
        "the restart loaded GLaDOS, not the command line's voice"
    );
}

#[test]
fn a_swap_while_failed_is_held_until_r_and_never_claims_ready_before() {
    let run = start(None, Some(5));
    run.until(10, |e| matches!(e, EngineEvent::ModelFailed { .. }));
    run.commands.send(swap("hal")).unwrap();
    let evs = run.until(10, |e| {
        matches!(e, EngineEvent::Happened(Happening::VoiceHeld { .. }))
    });
    assert!(
        evs.iter().all(|e| ready_name(e).is_none()),
        "no ready while failed: {:?}",
        brief(&evs)
    );
    assert!(evs.contains(&EngineEvent::Happened(Happening::VoiceHeld {
        name: "hal".into(),
        failed: true
    })));
    // Nothing steps and nothing claims ready for a while.
    let quiet: Vec<_> = run
        .events
        .recv_timeout(Duration::from_millis(500))
        .into_iter()
        .collect();
    assert!(
        quiet
            .iter()
            .all(|e| ready_name(e).is_none() && !matches!(e, EngineEvent::Step(_))),
        "{quiet:?}"
    );
    run.commands.send(Command::Reset).unwrap();
    let evs = run.until(10, |e| ready_name(e).is_some());
    assert_eq!(
        evs.iter().find_map(ready_name),
        Some("hal"),
        "r brings up the held voice"
    );
    run.until(10, |e| matches!(e, EngineEvent::Step(_)));
    assert_eq!(
        run.stop(),
        vec![weights("cli")],
        "no second load: the held voice was used"
    );
}

#[test]
fn a_swap_while_unloaded_is_held_and_speaks_on_wake() {
    let run = start(Some(Duration::from_millis(300)), None);
    run.until(10, |e| {
        matches!(e, EngineEvent::Residency(Residency::Unloaded))
    });
    run.commands.send(swap("friday")).unwrap();
    let evs = run.until(10, |e| {
        matches!(e, EngineEvent::Happened(Happening::VoiceHeld { .. }))
    });
    assert!(
        evs.iter().all(|e| ready_name(e).is_none()),
        "{:?}",
        brief(&evs)
    );
    assert!(evs.contains(&EngineEvent::Happened(Happening::VoiceHeld {
        name: "friday".into(),
        failed: false
    })));
    run.commands.send(Command::Reset).unwrap();
    let evs = run.until(10, |e| ready_name(e).is_some());
    assert_eq!(evs.iter().find_map(ready_name), Some("friday"));
    assert_eq!(
        run.stop(),
        vec![weights("cli")],
        "woke with the held voice, no load"
    );
}

#[test]
fn quitting_during_a_slow_load_returns_within_a_second() {
    let (ev_tx, events) = crossbeam_channel::unbounded();
    let (commands, cmd_rx) = crossbeam_channel::unbounded();
    // A 60 s load that reports progress and polls its cancel flag, as real loads do.
    let loader = runner::loader(|req| {
        for i in 0..600u64 {
            if req.cancel.is_cancelled() {
                return Err(LoadFailure::cancelled());
            }
            (req.progress)(assistant::bus::LoadProgress {
                stage: "slow".into(),
                done: i,
                total: 600,
                unit: assistant::bus::ProgressUnit::Bytes,
                elapsed_s: i as f64 / 10.0,
            });
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(Loaded::plain(Box::new(Voice::new("late"))))
    });
    let engine = runner::spawn(EngineSetup::new(
        loader,
        InputPort::silence(24_000),
        Arc::new(Meters::default()),
        ev_tx,
        cmd_rx,
    ));
    let first = events.recv_timeout(Duration::from_secs(5)).unwrap();
    assert_eq!(first, EngineEvent::Residency(Residency::Loading));
    std::thread::sleep(Duration::from_millis(300));
    let t = Instant::now();
    commands.send(Command::Shutdown).unwrap();
    let stats = engine.join().unwrap();
    let took = t.elapsed();
    assert!(took < Duration::from_secs(1), "quit took {took:?}");
    let rest: Vec<_> = events.try_iter().collect();
    assert!(
        rest.contains(&EngineEvent::Happened(Happening::LoadCancelled)),
        "{:?}",
        brief(&rest)
    );
    assert!(rest.iter().all(|e| ready_name(e).is_none()));
    assert_eq!(rest.last(), Some(&EngineEvent::Stopped));
    assert_eq!(stats.model.name, "", "nothing loaded");
}

#[test]
fn the_journal_splits_turns_exactly_where_the_feed_does() {
    use assistant::session::{to_markdown, Journal};
    use assistant::ui::{AppEvent, UiContext, UiState};
    // A voice that talks in bursts: words every 2 steps for a while, then quiet.
    struct Bursts(usize);
    impl DuplexModel for Bursts {
        fn info(&self) -> ModelInfo {
            ModelInfo {
                name: "bursts".into(),
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
        fn step(&mut self, _: &[f32], out: &mut StepOutput) -> anyhow::Result<()> {
            // Turns of 20 steps; gaps of 10 (under the 15-step rule) or 30 (over it).
            let phase = self.0 % 90;
            if (phase < 20 || (30..50).contains(&phase)) && phase.is_multiple_of(2) {
                out.text = Some(format!(" w{}", self.0));
            }
            self.0 += 1;
            Ok(())
        }
        fn reset(&mut self) {}
    }
    // 15 s of input: 187 steps, so three bursts.
    let audio = assistant::audio::wav::WavAudio {
        samples: vec![0.0; 15 * 24_000],
        sample_rate: 24_000,
        channels: 1,
    };
    let (ev_tx, events) = crossbeam_channel::unbounded();
    let (_commands, cmd_rx) = crossbeam_channel::unbounded();
    let setup = EngineSetup::new(
        runner::loader(|_| Ok(Loaded::plain(Box::new(Bursts(0))))),
        InputPort::Memory { audio, pos: 0 },
        Arc::new(Meters::default()),
        ev_tx,
        cmd_rx,
    );
    let engine = runner::spawn(setup);
    let dir = tempfile::tempdir().unwrap();
    let mut journal = Journal::create(dir.path(), "Moshi", "test").unwrap();
    let mut ui = UiState::new(&UiContext::new(Arc::new(Meters::default()), None));
    for ev in events.iter() {
        journal.record(&ev).unwrap();
        let stopped = ev == EngineEvent::Stopped;
        ui.apply(AppEvent::Engine(ev));
        if stopped {
            break;
        }
    }
    engine.join().unwrap();
    let feed: Vec<String> = ui
        .feed
        .entries()
        .iter()
        .filter(|e| e.kind == assistant::ui::feed::EntryKind::Assistant)
        .map(|e| e.text.trim().to_string())
        .collect();
    let md = to_markdown(journal.path()).unwrap();
    let journal_turns: Vec<String> = md
        .lines()
        .filter_map(|l| l.strip_prefix("**assistant** ("))
        .filter_map(|l| l.split_once("):"))
        .map(|(_, text)| text.trim().to_string())
        .collect();
    // Each 90-step cycle: words for 20 steps, a 10-step gap (the turn goes on), 20 more
    // steps of words, a 40-step gap (the turn ends). The third turn ends with the input.
    assert_eq!(feed.len(), 3, "{feed:?}");
    assert!(
        feed[0].starts_with("w0 ") && feed[0].ends_with(" w48"),
        "{feed:?}"
    );
    assert!(
        feed[1].starts_with("w90 ") && feed[1].ends_with(" w138"),
        "{feed:?}"
    );
    assert_eq!(feed, journal_turns, "markdown:\n{md}");
}

#[test]
fn priming_a_persona_mid_conversation_holds_the_input_and_loses_no_frame() {
    use assistant::audio::port::FilePacer;
    use assistant::audio::wav::WavAudio;
    use assistant::models::duplex::{Primed, Prompt};
    /// Records the first sample of every frame it hears; priming takes 300 ms.
    struct Primable {
        heard: Arc<Mutex<Vec<f32>>>,
        primed: Arc<Mutex<Vec<String>>>,
    }
    impl DuplexModel for Primable {
        fn info(&self) -> ModelInfo {
            ModelInfo {
                name: "primable".into(),
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
        fn step(&mut self, pcm: &[f32], _: &mut StepOutput) -> anyhow::Result<()> {
            self.heard.lock().unwrap().push(pcm[0]);
            Ok(())
        }
        fn reset(&mut self) {}
        fn takes_prompt(&self) -> bool {
            true
        }
        fn prime(&mut self, prompt: &Prompt) -> anyhow::Result<Primed> {
            std::thread::sleep(Duration::from_millis(300));
            self.primed.lock().unwrap().push(prompt.text.clone());
            Ok(Primed {
                steps: 42,
                elapsed: Duration::from_millis(300),
            })
        }
    }
    // 4 s of a ramp, one value per frame, paced at real time as a microphone is.
    const FRAMES: usize = 50;
    let samples: Vec<f32> = (0..FRAMES * 1920)
        .map(|i| (i / 1920) as f32 / 1000.0)
        .collect();
    let meters = Arc::new(Meters::default());
    let (pacer, port) = FilePacer::start(
        WavAudio {
            samples,
            sample_rate: 24_000,
            channels: 1,
        },
        meters.clone(),
    );
    let (heard, primed) = (
        Arc::new(Mutex::new(Vec::new())),
        Arc::new(Mutex::new(Vec::new())),
    );
    let (h, p) = (heard.clone(), primed.clone());
    let loader = runner::loader(move |_| {
        Ok(Loaded::plain(Box::new(Primable {
            heard: h.clone(),
            primed: p.clone(),
        })))
    });
    let (ev_tx, events) = crossbeam_channel::unbounded();
    let (commands, cmd_rx) = crossbeam_channel::unbounded();
    let setup = EngineSetup {
        max_backlog: 2,
        ..EngineSetup::new(loader, port, meters, ev_tx, cmd_rx)
    };
    let engine = runner::spawn(setup);
    let mut seen = Vec::new();
    let mut sent = false;
    for ev in events.iter() {
        if let EngineEvent::Step(s) = &ev {
            if s.step_index == 10 && !sent {
                commands
                    .send(Command::Prime {
                        prompt: Prompt {
                            text: "You are JARVIS.".into(),
                            voice: None,
                            ..Default::default()
                        },
                        fresh: true,
                    })
                    .unwrap();
                sent = true;
            }
        }
        let stop = ev == EngineEvent::Stopped;
        seen.push(ev);
        if stop {
            break;
        }
    }
    let stats = engine.join().unwrap();
    drop(pacer);
    assert_eq!(*primed.lock().unwrap(), vec!["You are JARVIS.".to_string()]);
    assert!(
        seen.contains(&EngineEvent::Happened(Happening::Priming)),
        "{:?}",
        brief(&seen)
    );
    assert!(
        seen.contains(&EngineEvent::Happened(Happening::Primed {
            steps: 42,
            ms: 300.0
        })),
        "{:?}",
        brief(&seen)
    );
    // Every frame after the model came up reached it once, in order, across the 300 ms
    // prime (about 4 frames heard meanwhile, held and replayed), and none was dropped.
    let heard = heard.lock().unwrap().clone();
    let first = heard[0];
    let expected: Vec<f32> = (0..heard.len())
        .map(|k| first + k as f32 / 1000.0)
        .collect();
    for (k, (got, want)) in heard.iter().zip(&expected).enumerate() {
        assert!(
            (got - want).abs() < 1e-6,
            "frame {k}: heard {got}, expected {want}; all: {heard:?}"
        );
    }
    assert_eq!(stats.dropped_frames, 0);
    assert!(heard.len() >= 40, "{} frames", heard.len());
}
