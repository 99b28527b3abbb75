//! The UI side of personas and degraded modes, event by event: hotkeys and Tab
//! switch the look within the same update; background voices swap or fail
//! back; device loss and engine restarts show plainly; memory jumps and the
//! resumed transcript reach the feed.

use crate::ui_support;

use assistant::bus::{
    DeviceSide, DeviceStatus, Endpoint, EngineEvent, LoadProgress, LossReason, ProgressUnit,
};
use assistant::engine::load::LoadFailure;
use assistant::engine::voice::VoiceLoader;
use assistant::engine::Command;
use assistant::engine::{DuplexModel, ModelInfo, Sampling, StepOutput};
use assistant::persona::{Catalog, Weights, MOSHIKA, MOSHIKO};
use assistant::ui::context::Resume;
use assistant::ui::feed::EntryKind;
use assistant::ui::state::{ConvState, Effect, Update};
use assistant::ui::{AppEvent, UiState};
use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use ratatui::style::Color;
use std::sync::Arc;
use std::time::Duration;
use ui_support::*;

fn key(s: &mut Scene, code: KeyCode) -> Update {
    let mods = if code == KeyCode::BackTab {
        KeyModifiers::SHIFT
    } else {
        KeyModifiers::NONE
    };
    s.state.apply(AppEvent::Key(KeyEvent::new(code, mods)))
}

fn last_text(st: &UiState) -> String {
    st.feed
        .entries()
        .last()
        .map(|e| e.text.clone())
        .unwrap_or_default()
}

fn header_colour(s: &mut Scene) -> Color {
    let name = s.state.persona.clone();
    let t = draw(&mut s.state, 80, 24);
    let buf = t.backend().buffer();
    let (x, y) = find(buf, &format!(" {name}  ")).expect("name in the header");
    buf[(x + 1, y)].fg
}

fn switch_of(u: Update) -> assistant::ui::state::Switch {
    match u.effect {
        Some(Effect::Persona(s)) => s,
        other => panic!("expected a persona switch, got {other:?}"),
    }
}

#[test]
fn f_keys_jump_tab_and_shift_tab_cycle_and_each_switch_is_in_the_feed() {
    let personas = Catalog::builtin().personas;
    let mut s = Scene::as_persona(0);
    s.at(0.2).wav_and_speaker();
    s.at(1.0).ready();
    assert_eq!(header_colour(&mut s), Color::Cyan);

    let u = key(&mut s, KeyCode::F(2));
    assert!(u.redraw, "the new look is drawn on the next frame");
    let sw = switch_of(u);
    assert_eq!(
        (sw.name.as_str(), sw.reset, sw.load.is_none()),
        ("JARVIS", false, true)
    );
    assert_eq!(
        sw.sampling,
        personas[1].voice.sampling(Sampling::default().seed)
    );
    assert_eq!(s.state.persona, "JARVIS");
    assert_eq!(header_colour(&mut s), personas[1].theme.primary);
    let note = s.state.feed.entries().last().unwrap().clone();
    assert_eq!(note.kind, EntryKind::Persona);
    assert!(
        note.text.contains("persona: JARVIS (F2)")
            && note.text.contains("temperature 0.6 / text 0.5 · top-k 120"),
        "{}",
        note.text
    );

    // Tab goes on to the next; GLaDOS greets, so the conversation starts fresh.
    let sw = switch_of(key(&mut s, KeyCode::Tab));
    assert_eq!((sw.name.as_str(), sw.reset), ("GLaDOS", true));
    assert!(last_text(&s.state).contains("fresh conversation"));
    assert_eq!(header_colour(&mut s), personas[2].theme.primary);
    // Shift-Tab back, and from the first, Shift-Tab wraps to the last.
    assert_eq!(switch_of(key(&mut s, KeyCode::BackTab)).name, "JARVIS");
    assert_eq!(switch_of(key(&mut s, KeyCode::F(1))).name, "Moshi");
    assert_eq!(
        switch_of(key(&mut s, KeyCode::BackTab)).name,
        personas.last().unwrap().name
    );
    assert_eq!(switch_of(key(&mut s, KeyCode::Tab)).name, "Moshi");
    // The active persona's key again does nothing; a free key says so.
    assert!(key(&mut s, KeyCode::F(1)).effect.is_none());
    let u = key(&mut s, KeyCode::F(12));
    assert!(u.effect.is_none());
    assert!(last_text(&s.state).contains("no persona on F12"));
    let switches = s
        .state
        .feed
        .entries()
        .iter()
        .filter(|e| e.kind == EntryKind::Persona)
        .count();
    assert_eq!(switches, 6);
}

/// A model the fake loader hands back.
struct Dummy(&'static str);
impl DuplexModel for Dummy {
    fn info(&self) -> ModelInfo {
        ModelInfo {
            name: self.0.into(),
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
    fn step(&mut self, _: &[f32], _: &mut StepOutput) -> anyhow::Result<()> {
        Ok(())
    }
    fn reset(&mut self) {}
}

/// Loads moshika after a little progress; anything else fails as a missing download would.
fn fake_loader() -> VoiceLoader {
    VoiceLoader::new(
        Weights::Repo(MOSHIKO.into()),
        Arc::new(
            |w: &Weights,
             s: &Sampling,
             progress: &mut dyn FnMut(LoadProgress),
             _cancel: &assistant::bus::Cancel| {
                for done in [1u64, 2, 3] {
                    progress(LoadProgress {
                        stage: "model.q8.gguf".into(),
                        done,
                        total: 3,
                        unit: ProgressUnit::Bytes,
                        elapsed_s: 0.1 * done as f64,
                    });
                    std::thread::sleep(Duration::from_millis(20));
                }
                match w {
                    Weights::Repo(r) if r == MOSHIKA => {
                        assert_eq!(s.temperature, 1.0, "built with the persona's sampling");
                        Ok(Box::new(Dummy("moshika-q8")) as Box<dyn DuplexModel>)
                    }
                    other => Err(LoadFailure {
                        message: format!("{} is not downloaded", other.describe()),
                        remedy: "download it".into(),
                    }),
                }
            },
        ),
    )
}

fn with_voices() -> Scene {
    let (mut ctx, clock) = context(false, Color::Cyan);
    ctx.voices = Some(fake_loader());
    let mut s = Scene::from_context(ctx, clock);
    s.at(0.2).wav_and_speaker();
    s.at(1.0).ready();
    s
}

#[test]
fn a_persona_with_other_weights_loads_them_in_the_background_then_swaps() {
    let mut s = with_voices();
    // JARVIS uses moshiko, which is already talking: no load.
    assert!(switch_of(key(&mut s, KeyCode::F(2))).load.is_none());
    // GLaDOS uses moshika: load it while the current voice talks on.
    let sw = switch_of(key(&mut s, KeyCode::F(3)));
    assert_eq!(sw.load, Some(Weights::Repo(MOSHIKA.into())));
    assert!(last_text(&s.state)
        .contains("loading its voice (kyutai/moshika-candle-q8) while this one keeps talking"));
    assert_eq!(s.state.persona, "GLaDOS", "the look changes at once");
    let (ev_tx, ev_rx) = crossbeam_channel::unbounded();
    let (cmd_tx, cmd_rx) = crossbeam_channel::unbounded();
    s.state.clone_voices().unwrap().start(
        sw.id,
        sw.name,
        sw.load.unwrap(),
        sw.sampling,
        ev_tx,
        cmd_tx,
    );
    // Progress comes through the engine's event path, named for the persona.
    let mut saw_progress = 0;
    while let Ok(ev) = ev_rx.recv_timeout(Duration::from_secs(2)) {
        if let EngineEvent::Loading(p) = &ev {
            assert_eq!(p.stage, "GLaDOS's voice: model.q8.gguf");
            saw_progress += 1;
            s.send(ev.clone());
            if p.done < p.total {
                assert!(s.state.shows_progress(), "progress panel while it loads");
            }
        }
        if saw_progress == 3 {
            break;
        }
    }
    assert_eq!(saw_progress, 3);
    assert_eq!(
        s.state.conv_state(),
        ConvState::Listening,
        "the conversation goes on meanwhile"
    );
    let Ok(Command::SwapModel { model: m, .. }) = cmd_rx.recv_timeout(Duration::from_secs(2))
    else {
        panic!("no swap")
    };
    // The engine swaps at a frame boundary and says so.
    s.send(EngineEvent::ModelReady {
        info: m.info(),
        load_ms: 0.0,
    });
    assert!(last_text(&s.state).contains("GLaDOS's voice is speaking now"));
    assert!(s.state.pending_voice.is_none());
    // Back to Moshi (moshiko) now needs a load again.
    assert_eq!(
        switch_of(key(&mut s, KeyCode::F(1))).load,
        Some(Weights::Repo(MOSHIKO.into()))
    );
}

#[test]
fn a_voice_that_fails_to_load_leaves_the_old_persona_and_says_why() {
    let personas = Catalog::builtin().personas;
    let (ev_tx, ev_rx) = crossbeam_channel::unbounded();
    let (cmd_tx, cmd_rx) = crossbeam_channel::unbounded();
    // HAL points at moshiko: same as the running voice. Make a persona that needs a missing one.
    let mut personas_v = personas.clone();
    personas_v[4].voice.weights = Weights::Dir("/nonexistent/hal".into());
    let (mut ctx, clock) = context(false, Color::Cyan);
    ctx.personas = Arc::new(personas_v);
    ctx.voices = Some(fake_loader());
    let mut s = Scene::from_context(ctx, clock);
    s.at(1.0).ready();
    let sw = switch_of(key(&mut s, KeyCode::F(5)));
    assert_eq!(s.state.persona, "HAL");
    s.state.clone_voices().unwrap().start(
        sw.id,
        sw.name,
        sw.load.unwrap(),
        sw.sampling,
        ev_tx,
        cmd_tx,
    );
    let failed = loop {
        let ev = ev_rx
            .recv_timeout(Duration::from_secs(2))
            .expect("an outcome");
        if let EngineEvent::VoiceFailed { .. } = ev {
            break ev;
        }
    };
    let u = s.state.apply(AppEvent::Engine(failed));
    assert_eq!(s.state.persona, "Moshi", "the old persona stays");
    assert_eq!(header_colour(&mut s), Color::Cyan);
    match u.effect {
        Some(Effect::Send(Command::SetSampling(smp))) => {
            assert_eq!(smp, personas[0].voice.sampling(Sampling::default().seed))
        }
        other => panic!("expected the old sampling back, got {other:?}"),
    }
    let e = s.state.feed.entries().last().unwrap();
    assert!(
        e.text.contains(
            "HAL's voice did not load: /nonexistent/hal is not downloaded; staying with Moshi"
        ),
        "{}",
        e.text
    );
    assert_eq!(e.remedy.as_deref(), Some("download it"));
    assert!(cmd_rx.try_recv().is_err(), "nothing swapped");
}

#[test]
fn a_load_overtaken_by_another_switch_is_dropped() {
    let mut s = with_voices();
    let sw = switch_of(key(&mut s, KeyCode::F(3)));
    let voices = s.state.clone_voices().unwrap();
    let (ev_tx, _ev_rx) = crossbeam_channel::unbounded();
    let (cmd_tx, cmd_rx) = crossbeam_channel::unbounded();
    voices.start(sw.id, sw.name, sw.load.unwrap(), sw.sampling, ev_tx, cmd_tx);
    // Back to Moshi before it finishes: nothing to load, and the old load is cancelled.
    let back = switch_of(key(&mut s, KeyCode::F(1)));
    assert!(back.load.is_none());
    voices.cancel(back.id);
    assert!(
        cmd_rx.recv_timeout(Duration::from_millis(500)).is_err(),
        "a stale voice must not swap in"
    );
}

#[test]
fn r_restarts_a_failed_engine_and_model_ready_leaves_the_error_state() {
    let mut s = Scene::new();
    s.at(0.2).wav_and_speaker();
    s.at(1.0).ready();
    s.send(EngineEvent::ModelFailed {
        error: "the model crashed: boom".into(),
        remedy: "press r to restart the engine; the transcript is kept".into(),
    });
    assert_eq!(s.state.conv_state(), ConvState::Error);
    let u = key(&mut s, KeyCode::Char('r'));
    assert!(matches!(u.effect, Some(Effect::Send(Command::Reset))));
    s.send(EngineEvent::info("restarting the engine"));
    assert_eq!(
        s.state.conv_state(),
        ConvState::Error,
        "still failed until the model is back"
    );
    let u = s.state.apply(AppEvent::Engine(EngineEvent::ModelReady {
        info: ModelInfo {
            name: "demo".into(),
            device: "cpu".into(),
            dtype: "f32".into(),
        },
        load_ms: 20.0,
    }));
    assert_eq!(s.state.conv_state(), ConvState::Listening);
    // The restarted model gets the active persona's sampling.
    assert!(matches!(
        u.effect,
        Some(Effect::Send(Command::SetSampling(_)))
    ));
    let t = draw(&mut s.state, 80, 24);
    assert!(
        find(t.backend().buffer(), "○ listening").is_some(),
        "{}",
        screen(t.backend().buffer())
    );
}

#[test]
fn device_loss_degrades_the_header_and_recovery_clears_it() {
    let mut s = Scene::new();
    s.at(0.2).endpoints(
        Endpoint::Device("USB Mic".into()),
        Endpoint::Device("Speakers".into()),
    );
    s.at(1.0).ready();
    assert_eq!(s.state.conv_state(), ConvState::Listening);
    s.send(EngineEvent::Device(DeviceStatus::Lost {
        side: DeviceSide::Microphone,
        reason: LossReason::Gone("the stream reported an error (device unplugged or busy?)".into()),
        retry_every_s: 3,
    }));
    assert_eq!(s.state.conv_state(), ConvState::Degraded);
    assert_eq!(s.state.degraded_reason().as_deref(), Some("no microphone"));
    assert_eq!(
        s.state.input,
        Some(Endpoint::Missing(
            "the stream reported an error (device unplugged or busy?)".into()
        ))
    );
    s.send(EngineEvent::Device(DeviceStatus::Lost {
        side: DeviceSide::Speaker,
        reason: LossReason::Stalled(2),
        retry_every_s: 3,
    }));
    assert_eq!(
        s.state.degraded_reason().as_deref(),
        Some("no microphone, no speaker")
    );
    let t = draw(&mut s.state, 80, 24);
    let text = screen(t.backend().buffer());
    assert!(
        text.contains("! degraded: no microphone, no speaker"),
        "{text}"
    );
    s.send(EngineEvent::Device(DeviceStatus::Ready {
        side: DeviceSide::Microphone,
        name: "USB Mic (hw:2,0)".into(),
    }));
    assert_eq!(s.state.degraded_reason().as_deref(), Some("no speaker"));
    s.send(EngineEvent::Device(DeviceStatus::Ready {
        side: DeviceSide::Speaker,
        name: "Speakers".into(),
    }));
    assert_eq!(s.state.conv_state(), ConvState::Listening);
    assert_eq!(
        s.state.input,
        Some(Endpoint::Device("USB Mic (hw:2,0)".into()))
    );
}

#[test]
fn memory_changes_over_100_mb_are_reported_in_the_feed() {
    let mut s = Scene::new();
    let notes = |s: &Scene| {
        s.state
            .feed
            .entries()
            .iter()
            .filter(|e| e.text.starts_with("memory:"))
            .map(|e| e.text.clone())
            .collect::<Vec<_>>()
    };
    s.app(AppEvent::Memory(200 * MB));
    s.app(AppEvent::Memory(290 * MB));
    assert!(
        notes(&s).is_empty(),
        "the first sample is the baseline; +90 MB is under the step"
    );
    s.app(AppEvent::Memory(330 * MB));
    assert_eq!(notes(&s).len(), 1);
    assert!(
        notes(&s)[0].contains("(+130.0 MiB since the last report)"),
        "{:?}",
        notes(&s)
    );
    s.app(AppEvent::Memory(250 * MB));
    assert_eq!(notes(&s).len(), 1, "80 MB down from the last report: quiet");
    s.app(AppEvent::Memory(200 * MB));
    assert_eq!(notes(&s).len(), 2);
    assert!(notes(&s)[1].contains("−130.0 MiB"), "{:?}", notes(&s));
}

#[test]
fn resume_shows_the_last_sessions_turns_dimmed() {
    // A real journal, read back as `--resume` does.
    let dir = tempfile::tempdir().unwrap();
    let mut j = assistant::session::Journal::create(dir.path(), "JARVIS", "mic").unwrap();
    j.record(&EngineEvent::Text(" Good".into())).unwrap();
    j.record(&EngineEvent::Text(" evening.".into())).unwrap();
    j.finish().unwrap();
    let (summary, turns) = assistant::session::last_transcript(dir.path()).unwrap();
    let (mut ctx, clock) = context(false, Color::Cyan);
    ctx.resume = Some(Resume {
        started: summary.started.clone(),
        persona: summary.persona.clone(),
        turns,
    });
    let mut s = Scene::from_context(ctx, clock);
    let e = s.state.feed.entries();
    assert_eq!(e.len(), 2);
    assert!(
        e[0].text.starts_with("previous session") && e[0].text.contains("(JARVIS): 1 turn(s)"),
        "{}",
        e[0].text
    );
    assert_eq!(
        (e[1].kind.clone(), e[1].text.as_str()),
        (EntryKind::Previous, "Good evening.")
    );
    let t = draw(&mut s.state, 80, 24);
    let buf = t.backend().buffer();
    let (x, y) = find(buf, "Good evening.").unwrap();
    assert_eq!(buf[(x, y)].fg, Color::DarkGray, "previous turns are dim");
}

#[test]
fn a_cpu_fallback_shows_degraded_with_its_reason_until_a_normal_load() {
    use assistant::engine::residency::Residency;
    let mut s = Scene::new();
    s.at(0.2).endpoints(
        Endpoint::Device("mic".into()),
        Endpoint::Device("spk".into()),
    );
    s.at(1.0).ready();
    s.send(EngineEvent::Residency(Residency::Ready {
        device: "cpu".into(),
        degraded: Some("running on CPU (CUDA out of memory)".into()),
    }));
    assert_eq!(s.state.conv_state(), ConvState::Degraded);
    let t = draw(&mut s.state, 100, 24);
    let text = screen(t.backend().buffer());
    assert!(
        text.contains("! degraded: running on CPU (CUDA out of memory)"),
        "{text}"
    );
    s.send(EngineEvent::Residency(Residency::Unloaded));
    s.send(EngineEvent::Residency(Residency::Ready {
        device: "cuda:0".into(),
        degraded: None,
    }));
    assert_eq!(s.state.conv_state(), ConvState::Listening);
}

#[test]
fn priming_shows_in_the_header_and_the_feed_reports_its_time() {
    use assistant::bus::Happening;
    let mut s = Scene::new();
    s.at(0.2).wav_and_speaker();
    s.at(1.0).ready();
    s.send(EngineEvent::Happened(Happening::Priming));
    assert_eq!(s.state.conv_state(), ConvState::Priming);
    let text = screen(draw(&mut s.state, 80, 24).backend().buffer());
    assert!(text.contains("◌ priming"), "{text}");
    s.send(EngineEvent::Happened(Happening::Primed {
        steps: 83,
        ms: 176.0,
    }));
    assert_eq!(s.state.conv_state(), ConvState::Listening);
    let text = screen(draw(&mut s.state, 80, 24).backend().buffer());
    assert!(
        text.contains("primed in 0.18 s (83 prefill steps)"),
        "{text}"
    );
}
