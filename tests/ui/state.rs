//! What the feed, header and status say as events arrive, checked on the
//! rendered screen; and no size or state makes rendering panic.

use crate::ui_support;

use assistant::bus::{EngineEvent, LoadProgress, ProgressUnit, Severity};
use assistant::ui::feed::EntryKind;
use assistant::ui::state::ConvState;
use assistant::ui::AppEvent;
use ratatui::crossterm::event::{KeyCode, KeyEvent};
use ratatui::style::Color;
use ui_support::*;

fn feed_kinds(s: &Scene) -> Vec<EntryKind> {
    s.state
        .feed
        .entries()
        .iter()
        .map(|e| e.kind.clone())
        .collect()
}

#[test]
fn assistant_words_stream_into_one_line_per_turn() {
    let mut s = listening(false);
    let before = s.state.feed.len();
    s.talk(6, 0.0, 0.1, &[" Hello", " there,", " how", " are", " you?"]);
    assert_eq!(s.state.feed.len(), before + 1, "one turn, one entry");
    assert_eq!(
        s.state.feed.entries().last().unwrap().body(),
        "Hello there, how are you?"
    );
    assert_eq!(s.state.conv_state(), ConvState::Speaking);
    let screen = screen(draw(&mut s.state, 80, 24).backend().buffer());
    assert!(screen.contains("◆ Hello there, how are you?"), "{screen}");
    assert!(screen.contains("◆ speaking"), "{screen}");

    // The assistant falls quiet, the user answers, the assistant replies: a new line.
    s.talk(10, 0.0, 0.0, &[]);
    assert_eq!(s.state.conv_state(), ConvState::Listening);
    s.talk(10, 0.1, 0.0, &[]);
    s.talk(10, 0.0, 0.0, &[]);
    s.talk(3, 0.0, 0.1, &[" Fine", " thanks."]);
    let kinds = feed_kinds(&s);
    assert_eq!(kinds[kinds.len() - 3..].len(), 3);
    assert!(matches!(kinds[kinds.len() - 3], EntryKind::Assistant));
    assert!(matches!(
        kinds[kinds.len() - 2],
        EntryKind::User { ended: Some(_) }
    ));
    assert!(matches!(kinds[kinds.len() - 1], EntryKind::Assistant));
    assert_eq!(
        s.state.feed.entries().last().unwrap().body(),
        "Fine thanks."
    );
}

#[test]
fn user_speech_markers_follow_the_voice_activity_rule() {
    let mut s = listening(false);
    let before = s.state.feed.len();
    // A one-frame click is not speech.
    s.talk(1, 0.3, 0.0, &[]);
    s.talk(5, 0.0, 0.0, &[]);
    assert_eq!(s.state.feed.len(), before);
    // Speech: a marker while speaking, then how long it lasted.
    s.talk(25, 0.08, 0.0, &[]);
    assert!(s.state.user_speaking());
    let screen_now = screen(draw(&mut s.state, 80, 24).backend().buffer());
    assert!(screen_now.contains("● you are speaking…"), "{screen_now}");
    assert!(
        screen_now.contains("● listening"),
        "header shows the user is heard: {screen_now}"
    );
    s.talk(10, 0.0, 0.0, &[]);
    assert!(!s.state.user_speaking());
    let screen_after = screen(draw(&mut s.state, 80, 24).backend().buffer());
    assert!(
        screen_after.contains("● you spoke for 2.0 s"),
        "{screen_after}"
    );
}

#[test]
fn both_talking_and_muted_show_in_the_header() {
    let mut s = both_talking(false);
    assert_eq!(s.state.conv_state(), ConvState::Both);
    s.app(AppEvent::Key(KeyEvent::from(KeyCode::Char('m'))));
    assert_eq!(s.state.conv_state(), ConvState::Muted);
    let screen = screen(draw(&mut s.state, 80, 24).backend().buffer());
    assert!(screen.contains("✕ muted"), "{screen}");
    assert!(
        screen.contains("you✕"),
        "visualizer marks the muted mic: {screen}"
    );
}

#[test]
fn load_progress_shows_done_total_rate_and_eta_from_the_events() {
    let mut s = Scene::new();
    let mut at = |done: u64, elapsed_s: f64| {
        s.send(EngineEvent::Loading(LoadProgress {
            stage: "model.safetensors".into(),
            done,
            total: 400,
            unit: ProgressUnit::Tensors,
            elapsed_s,
        }));
        screen(draw(&mut s.state, 80, 24).backend().buffer())
    };
    let first = at(100, 2.0);
    assert!(
        first.contains("100 / 400 tensors · 50 tensors/s · ETA 6.0 s"),
        "{first}"
    );
    assert!(first.contains("25%"), "{first}");
    let later = at(300, 3.0);
    assert!(
        later.contains("300 / 400 tensors · 100 tensors/s · ETA 1.0 s"),
        "{later}"
    );
    assert!(later.contains("75%"));
    let done = at(400, 3.5);
    assert!(
        done.contains("✓ loaded model.safetensors: 400 tensors in 3.5 s"),
        "{done}"
    );
    let again = at(400, 3.6);
    assert_eq!(
        again.matches("✓ loaded model.safetensors").count(),
        1,
        "one line per finished stage"
    );
    assert_eq!(s.state.conv_state(), ConvState::Loading);
    s.ready();
    let ready = screen(draw(&mut s.state, 80, 24).backend().buffer());
    assert!(
        !ready.contains("┌ loading"),
        "progress panel gone once ready: {ready}"
    );
    assert!(
        ready.contains("✓ model ready: moshiko-q8 on cpu (q8) in 8.4 s"),
        "{ready}"
    );
}

#[test]
fn a_failed_load_shows_the_error_and_its_remedy() {
    let mut s = error(false);
    assert_eq!(s.state.conv_state(), ConvState::Error);
    let screen = screen(draw(&mut s.state, 120, 40).backend().buffer());
    assert!(screen.contains("✗ error"));
    assert!(screen.contains("✗ weights failed to load: model.q8.gguf"));
    assert!(screen.contains("↳ delete ~/.cache/huggingface"));
    assert!(!screen.contains("┌ loading"));
}

#[test]
fn falling_behind_real_time_degrades_and_shows_in_the_status_line() {
    let mut s = listening(false);
    for i in 0..120u64 {
        s.send(EngineEvent::Step(assistant::bus::StepStats {
            step_index: 100 + i,
            step_ms: 120.0,
            rtf: 1.5,
            dropped_frames: i / 10,
            latency_ms: 240.0,
            ..Default::default()
        }));
    }
    assert_eq!(s.state.conv_state(), ConvState::Degraded);
    let t = draw(&mut s.state, 120, 40);
    let buf = t.backend().buffer();
    let screen = screen(buf);
    assert!(
        screen.contains("! degraded: slower than real time"),
        "{screen}"
    );
    assert!(
        screen.contains("latency 240 ms │ step 120 ms │ RTF 1.50 │ dropped 11"),
        "{screen}"
    );
    let (x, y) = find(buf, "RTF 1.50").unwrap();
    assert_eq!(
        buf[(x, y)].fg,
        Color::Yellow,
        "a figure that is off is highlighted"
    );
}

#[test]
fn notices_show_with_severity_and_remedy_and_engine_stop_is_reported() {
    let mut s = listening(false);
    s.send(EngineEvent::Notice {
        severity: Severity::Warning,
        message: "output underruns: 12 in the last second".into(),
        remedy: Some("close other audio programs or raise --max-backlog".into()),
    });
    s.send(EngineEvent::InputEnded);
    s.send(EngineEvent::Stopped);
    let screen = screen(draw(&mut s.state, 80, 24).backend().buffer());
    assert!(
        screen.contains("! output underruns: 12 in the last second"),
        "{screen}"
    );
    assert!(
        screen.contains("↳ close other audio programs or raise --max-backlog"),
        "{screen}"
    );
    assert!(screen.contains("• input file ended"));
    assert!(screen.contains("■ stopped"));
}

#[test]
fn status_line_shows_memory_and_log_path() {
    let mut s = listening(false);
    let screen = screen(draw(&mut s.state, 80, 24).backend().buffer());
    assert!(screen.contains("mem 212.4 MiB"), "{screen}");
    assert!(screen.contains(&format!("log {LOG}")), "{screen}");
    let compact = screen_of(&mut s, 40, 12);
    assert!(compact.contains("160ms 43ms ×0.54"), "{compact}");
}

fn screen_of(s: &mut Scene, w: u16, h: u16) -> String {
    screen(draw(&mut s.state, w, h).backend().buffer())
}

#[test]
fn every_state_renders_at_every_size_without_panicking() {
    let widths: Vec<u16> = (0..=130).chain([199, 200, 255, 300]).collect();
    let heights = [
        0u16, 1, 2, 7, 11, 12, 13, 15, 16, 19, 20, 21, 24, 27, 28, 40, 60, 100,
    ];
    for (k, scene) in ALL_SCENES.into_iter().enumerate() {
        let help_covers_header = k == 6;
        let mut s = scene(false);
        // Scroll up so the pinned path is exercised too.
        s.app(AppEvent::Key(KeyEvent::from(KeyCode::PageUp)));
        for &w in &widths {
            for &h in &heights {
                let t = draw(&mut s.state, w, h);
                if w >= 40 && h >= 12 && !help_covers_header {
                    let rows = rows(t.backend().buffer());
                    assert!(rows[0].contains("Moshi"), "{w}x{h}: header missing");
                }
            }
        }
    }
}

#[test]
fn push_to_talk_starts_closed_and_space_opens_and_closes_the_mic() {
    use assistant::engine::Command;
    use assistant::ui::state::Effect;
    let space = || AppEvent::Key(KeyEvent::from(KeyCode::Char(' ')));
    // Without --push-to-talk, Space does nothing.
    let mut plain = listening(false);
    assert!(plain.state.apply(space()).effect.is_none());
    assert!(!plain.state.muted);

    let (mut ctx, clock) = ui_support::context(false, Color::Cyan);
    ctx.push_to_talk = true;
    let mut s = listening_from(Scene::from_context(ctx, clock));
    assert!(s.state.muted, "the microphone starts closed");
    assert_eq!(s.state.conv_state(), ConvState::Muted);
    let u = s.state.apply(space());
    assert!(
        matches!(u.effect, Some(Effect::Send(Command::SetMuted(false)))),
        "{u:?}"
    );
    s.send(EngineEvent::Muted(false));
    let shown = screen(draw(&mut s.state, 80, 24).backend().buffer());
    assert!(
        shown.contains("push-to-talk: microphone open (Space to close)"),
        "{shown}"
    );
    let u = s.state.apply(space());
    assert!(
        matches!(u.effect, Some(Effect::Send(Command::SetMuted(true)))),
        "{u:?}"
    );
    s.send(EngineEvent::Muted(true));
    let shown = screen(draw(&mut s.state, 80, 24).backend().buffer());
    assert!(
        shown.contains("push-to-talk: microphone closed (Space to talk)"),
        "{shown}"
    );
}

#[test]
fn the_header_follows_the_cascade_through_its_turns_and_an_idle_unload() {
    use assistant::bus::{Residency, Talk, TalkPhase};
    let mut s = cascade(false);
    assert_eq!(s.state.conv_state(), ConvState::Listening);
    // The recogniser's words replace the loudness marks: no "you are speaking…" line.
    assert!(!feed_kinds(&s)
        .iter()
        .any(|k| matches!(k, EntryKind::User { .. })));
    let said: Vec<_> = s
        .state
        .feed
        .entries()
        .iter()
        .filter(|e| e.kind == EntryKind::Said)
        .map(|e| e.body().into_owned())
        .collect();
    assert_eq!(said, ["What's the capital of France?", "And Spain?"]);
    s.send(EngineEvent::Talk(Talk::Phase(TalkPhase::Thinking)));
    assert_eq!(s.state.conv_state(), ConvState::Thinking);
    assert!(draw(&mut s.state, 80, 24)
        .backend()
        .to_string()
        .contains("◔ thinking"));
    s.send(EngineEvent::Talk(Talk::Phase(TalkPhase::Speaking)));
    assert_eq!(s.state.conv_state(), ConvState::Speaking);
    s.send(EngineEvent::Talk(Talk::Phase(TalkPhase::Listening)));
    s.send(EngineEvent::Residency(Residency::Unloaded));
    assert_eq!(s.state.conv_state(), ConvState::Idle);
    assert!(draw(&mut s.state, 80, 24)
        .backend()
        .to_string()
        .contains("idle"));
    s.send(EngineEvent::Residency(Residency::Loading));
    s.send(EngineEvent::Residency(Residency::Ready {
        device: "cpu".into(),
        degraded: None,
    }));
    assert_eq!(s.state.conv_state(), ConvState::Listening);
}
