//! The main loop driven through its channel, on a backend the test can resize
//! and read: keys reach the engine as commands, audio makes the visualizer move
//! fast enough, idle makes it stop drawing, resizes never crash.

use crate::ui_support;

use assistant::audio::meters::Meters;
use assistant::bus::{Endpoint, EngineEvent, StepStats};
use assistant::engine::Command;
use assistant::ui::{run_main_loop_report, AppEvent, ExitReason, LoopReport};
use crossbeam_channel::{unbounded, Receiver, Sender};
use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers, MouseEvent, MouseEventKind};
use ratatui::style::Color;
use ratatui::Terminal;
use std::sync::{Arc, Mutex};
use std::thread::{sleep, JoinHandle};
use std::time::{Duration, Instant};
use ui_support::live::{LiveBackend, Shared};
use ui_support::*;

struct Running {
    tx: Sender<AppEvent>,
    commands: Receiver<Command>,
    meters: Arc<Meters>,
    shared: Arc<Mutex<Shared>>,
    handle: JoinHandle<anyhow::Result<LoopReport>>,
}

fn start(w: u16, h: u16) -> Running {
    start_with(w, h, |_| {})
}

fn start_with(w: u16, h: u16, adjust: impl FnOnce(&mut assistant::ui::UiContext)) -> Running {
    let (backend, shared) = LiveBackend::new(w, h);
    let (tx, rx) = unbounded();
    let (ctx_tx, commands) = unbounded();
    let (mut ctx, _hand) = context(false, Color::Cyan);
    ctx.clock = assistant::ui::Clock::system();
    adjust(&mut ctx);
    let meters = ctx.meters.clone();
    let handle = std::thread::spawn(move || {
        let mut terminal = Terminal::new(backend)?;
        run_main_loop_report(&mut terminal, rx, ctx_tx, ctx)
    });
    Running {
        tx,
        commands,
        meters,
        shared,
        handle,
    }
}

impl Running {
    fn key(&self, code: KeyCode) {
        self.tx
            .send(AppEvent::Key(KeyEvent::new(code, KeyModifiers::NONE)))
            .unwrap();
    }
    fn engine(&self, e: EngineEvent) {
        self.tx.send(AppEvent::Engine(e)).unwrap();
    }
    /// Waits until the screen shows `text` (the loop redraws at most every 33 ms).
    fn wait_for(&self, text: &str) -> Vec<String> {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let screen = self.shared.lock().unwrap().screen.clone();
            if screen.iter().any(|r| r.contains(text)) {
                return screen;
            }
            assert!(
                Instant::now() < deadline,
                "{text:?} never shown; screen:\n{}",
                screen.join("\n")
            );
            sleep(Duration::from_millis(10));
        }
    }
    /// Resizes the terminal and waits until a frame of the new size is drawn.
    fn resize(&self, w: u16, h: u16) -> Vec<String> {
        self.shared.lock().unwrap().size = (w, h);
        self.tx.send(AppEvent::Resize(w, h)).unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let screen = self.shared.lock().unwrap().screen.clone();
            let drawn_w = screen.first().map_or(0, |r| r.chars().count());
            if (w == 0 || h == 0) || (screen.len() == h as usize && drawn_w == w as usize) {
                return screen;
            }
            assert!(Instant::now() < deadline, "no {w}x{h} frame");
            sleep(Duration::from_millis(5));
        }
    }
    fn command(&self) -> Command {
        self.commands
            .recv_timeout(Duration::from_secs(5))
            .expect("a command")
    }
    fn finish(self) -> LoopReport {
        drop(self.tx);
        self.handle
            .join()
            .expect("loop thread panicked")
            .expect("loop error")
    }
}

fn ready(r: &Running) {
    r.engine(EngineEvent::Endpoints {
        input: Endpoint::Device("mic".into()),
        output: Endpoint::Device("spk".into()),
    });
    r.engine(EngineEvent::ModelReady {
        info: assistant::models::duplex::ModelInfo {
            name: "demo".into(),
            device: "cpu".into(),
            dtype: "f32".into(),
        },
        load_ms: 10.0,
    });
    // A model from the engine's own loader gets the active persona's sampling.
    match r.command() {
        Command::SetSampling(s) => assert_eq!(
            (s.temperature, s.text_temperature, s.top_k),
            (0.8, 0.7, 250)
        ),
        other => panic!("expected SetSampling, got {other:?}"),
    }
}

fn step(i: u64, mic: f32, out: f32) -> EngineEvent {
    EngineEvent::Step(StepStats {
        step_index: i,
        step_ms: 20.0,
        rtf: 0.25,
        latency_ms: 160.0,
        mic_rms: mic,
        out_rms: out,
        ..Default::default()
    })
}

#[test]
fn q_sends_shutdown_and_ends_the_loop() {
    let r = start(80, 24);
    ready(&r);
    r.wait_for("listening");
    r.key(KeyCode::Char('q'));
    let cmd = r.command();
    assert!(matches!(cmd, Command::Shutdown), "{cmd:?}");
    let report = r.handle.join().unwrap().unwrap();
    assert_eq!(report.reason, ExitReason::Quit);
}

#[test]
fn ctrl_c_quits_like_q() {
    let r = start(80, 24);
    r.tx.send(AppEvent::Key(KeyEvent::new(
        KeyCode::Char('c'),
        KeyModifiers::CONTROL,
    )))
    .unwrap();
    assert!(matches!(r.command(), Command::Shutdown));
    assert_eq!(r.handle.join().unwrap().unwrap().reason, ExitReason::Quit);
}

#[test]
fn m_mutes_and_unmutes_r_resets_question_mark_shows_help_and_esc_closes_it() {
    let r = start(80, 24);
    ready(&r);
    r.key(KeyCode::Char('m'));
    assert!(matches!(r.command(), Command::SetMuted(true)));
    r.wait_for("✕ muted");
    r.engine(EngineEvent::Muted(true));
    r.wait_for("microphone muted");
    r.key(KeyCode::Char('m'));
    assert!(matches!(r.command(), Command::SetMuted(false)));
    r.wait_for("○ listening");
    r.key(KeyCode::Char('r'));
    assert!(matches!(r.command(), Command::Reset));
    r.key(KeyCode::Char('?'));
    r.wait_for("reset / restart engine");
    r.key(KeyCode::Esc);
    let deadline = Instant::now() + Duration::from_secs(5);
    while r
        .shared
        .lock()
        .unwrap()
        .screen
        .iter()
        .any(|l| l.contains("Esc closes"))
    {
        assert!(Instant::now() < deadline, "help never closed");
        sleep(Duration::from_millis(10));
    }
    // Persona keys are reserved: nothing is sent.
    r.key(KeyCode::F(2));
    r.key(KeyCode::Tab);
    assert_eq!(r.finish().reason, ExitReason::Disconnected);
}

#[test]
fn resizing_down_to_tiny_and_back_never_crashes() {
    let r = start(100, 30);
    ready(&r);
    for i in 0..40 {
        r.engine(EngineEvent::Text(format!(" word{i}")));
    }
    r.wait_for("word39");
    for (w, h) in [
        (30, 8),
        (1, 1),
        (40, 12),
        (300, 100),
        (39, 11),
        (0, 0),
        (41, 13),
        (100, 30),
    ] {
        let screen = r.resize(w, h).join("\n");
        if w >= 40 && h >= 12 {
            assert!(screen.contains("word39"), "{w}x{h}:\n{screen}");
        } else if w >= 30 && h >= 2 {
            assert!(screen.contains("terminal too small"), "{w}x{h}:\n{screen}");
        }
    }
    assert_eq!(r.finish().reason, ExitReason::Disconnected);
}

#[test]
fn scrolling_with_keys_and_wheel_pins_the_view_and_end_follows_again() {
    let r = start(80, 24);
    ready(&r);
    for i in 0..60 {
        r.engine(EngineEvent::info(format!("line {i:02}")));
    }
    r.wait_for("line 59");
    r.key(KeyCode::PageUp);
    let screen = r.wait_for("End follows");
    assert!(!screen.iter().any(|l| l.contains("line 59")));
    r.engine(EngineEvent::info("line 60"));
    sleep(Duration::from_millis(100));
    let screen = r.wait_for("End follows");
    assert!(
        !screen.iter().any(|l| l.contains("line 60")),
        "a pinned view stays put"
    );
    r.tx.send(AppEvent::Mouse(MouseEvent {
        kind: MouseEventKind::ScrollUp,
        column: 5,
        row: 5,
        modifiers: KeyModifiers::NONE,
    }))
    .unwrap();
    r.key(KeyCode::Home);
    r.wait_for("line 00");
    r.key(KeyCode::End);
    r.wait_for("line 60");
    assert_eq!(r.finish().reason, ExitReason::Disconnected);
}

#[test]
fn the_visualizer_keeps_redrawing_while_audio_flows_and_is_capped_near_30_hz() {
    let r = start(80, 24);
    ready(&r);
    r.wait_for("listening");
    let flushes_before = r.shared.lock().unwrap().flushes;
    // Audio callbacks raise the meters every 10 ms; the engine steps every 80 ms.
    let t0 = Instant::now();
    let mut i = 0;
    while t0.elapsed() < Duration::from_secs(1) {
        r.meters.raise_mic(0.2 + 0.1 * ((i % 7) as f32 / 7.0));
        r.meters.raise_out(0.3);
        if i % 8 == 0 {
            r.engine(step(i / 8, 0.05, 0.08));
        }
        i += 1;
        sleep(Duration::from_millis(10));
    }
    let elapsed = t0.elapsed().as_secs_f64();
    let flushes = r.shared.lock().unwrap().flushes - flushes_before;
    let report = r.finish();
    // The 15-a-second target is `assistant bench ui`'s figure; a test only asserts what
    // a 2-core machine at load 8 still does (14 a second was seen there): the
    // visualizer keeps moving while audio flows.
    assert!(
        flushes as f64 / elapsed >= 5.0,
        "{flushes} frames in {elapsed:.2} s"
    );
    assert!(
        flushes as f64 / elapsed <= 31.0,
        "redraws are capped near 30 Hz: {flushes} in {elapsed:.2} s"
    );
    assert!(report.level_samples as f64 / elapsed >= 5.0, "{report:?}");
}

#[test]
fn an_idle_ui_does_not_redraw() {
    let r = start(80, 24);
    ready(&r);
    r.wait_for("listening");
    sleep(Duration::from_millis(100));
    let before = r.shared.lock().unwrap().flushes;
    sleep(Duration::from_millis(1500));
    let after = r.shared.lock().unwrap().flushes;
    let report = r.finish();
    // Memory is sampled every 2 s and may change the figure once.
    assert!(after - before <= 1, "{} redraws while idle", after - before);
    assert!(
        report.level_samples <= 12,
        "idle ticks are slow: {report:?}"
    );
}

#[test]
fn a_persona_key_tells_the_engine_the_journal_and_the_voice_loader() {
    use assistant::bus::{LoadProgress, ProgressUnit};
    use assistant::engine::voice::VoiceLoader;
    use assistant::persona::{Weights, MOSHIKA, MOSHIKO};
    let (journal_tx, journal_rx) = unbounded();
    let loader = VoiceLoader::new(
        Weights::Repo(MOSHIKO.into()),
        Arc::new(
            |w: &Weights,
             _s: &assistant::engine::Sampling,
             progress: &mut dyn FnMut(LoadProgress),
             _cancel: &assistant::bus::Cancel| {
                progress(LoadProgress {
                    stage: "model.q8.gguf".into(),
                    done: 1,
                    total: 1,
                    unit: ProgressUnit::Bytes,
                    elapsed_s: 0.01,
                });
                assert_eq!(*w, Weights::Repo(MOSHIKA.into()));
                Ok(
                    Box::new(assistant::engine::loopback::Loopback::new(24_000, 1920))
                        as Box<dyn assistant::engine::DuplexModel>,
                )
            },
        ),
    );
    let r = start_with(80, 24, |ctx| {
        ctx.events = Some(journal_tx);
        ctx.voices = Some(loader);
    });
    ready(&r);
    // F3: GLaDOS, other weights, and it greets.
    r.key(KeyCode::F(3));
    r.wait_for("GLaDOS");
    match r.command() {
        Command::SetSampling(s) => assert_eq!(
            (s.temperature, s.text_temperature, s.top_k),
            (1.0, 0.9, 400)
        ),
        other => panic!("{other:?}"),
    }
    // Its name now wakes it; another persona's needs a higher score.
    match r.command() {
        Command::SetWakeActive(phrases) => assert_eq!(phrases, vec!["glados".to_string()]),
        other => panic!("{other:?}"),
    }
    match r.command() {
        Command::Prime { prompt, fresh } => {
            assert!(prompt.text.starts_with("You are GLaDOS"), "{prompt:?}");
            assert!(fresh, "a greeting persona starts a fresh conversation");
        }
        other => panic!("the persona's prompts go to the engine: {other:?}"),
    }
    // The loader thread hands the engine the new voice.
    match r.command() {
        Command::SwapModel { model: m, .. } => assert_eq!(m.info().name, "loopback"),
        other => panic!("{other:?}"),
    }
    // The journal (through the engine's event path) got the switch and the progress.
    let mut got = Vec::new();
    while let Ok(ev) = journal_rx.recv_timeout(Duration::from_millis(500)) {
        got.push(ev);
    }
    assert!(
        matches!(&got[0], EngineEvent::PersonaSwitched { name } if name == "GLaDOS"),
        "{got:?}"
    );
    assert!(
        got.iter().any(
            |e| matches!(e, EngineEvent::Loading(p) if p.stage == "GLaDOS's voice: model.q8.gguf")
        ),
        "{got:?}"
    );
    r.finish();
}
