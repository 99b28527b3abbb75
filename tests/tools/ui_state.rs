//! Tool calls on screen (cascade mode): the header says `acting` while a tool runs and
//! `asking y/n` while one waits for consent; the feed shows each call with its result
//! folded to one line, `o` unfolds it; `y`/`n` answer only a waiting question; the `t`
//! overlay lists the tools, or says that Moshi and PersonaPlex cannot call any.

use crate::ui_support;

use assistant::bus::{EngineEvent, Talk, TalkPhase, ToolActivity};
use assistant::ui::context::ToolsContext;
use assistant::ui::event::AppEvent;
use assistant::ui::state::{ConvState, Effect};
use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use ui_support::*;

fn key(c: char) -> AppEvent {
    AppEvent::Key(KeyEvent::new(KeyCode::Char(c), KeyModifiers::NONE))
}

fn with_tools(lines: Vec<String>) -> Scene {
    let (mut ctx, clock) = context(false, ratatui::style::Color::Cyan);
    ctx.tools = Some(ToolsContext {
        lines,
        desk: assistant::tools::consent::Desk::interactive(),
        toolbox: Default::default(),
    });
    let mut s = Scene::from_context(ctx, clock);
    s.at(0.2).wav_and_speaker().memory();
    s.at(3.1).send(EngineEvent::ModelReady {
        info: assistant::bus::ModelInfo {
            name: "cascade: stt-1b-en_fr → qwen2.5:3b at http://127.0.0.1:11434 with 14 tools → pocket".into(),
            device: "cpu".into(),
            dtype: "".into(),
        },
        load_ms: 2_900.0,
    });
    s.send(EngineEvent::Talk(Talk::Phase(TalkPhase::Listening)));
    for w in ["What's", "in", "my", "notes?"] {
        s.talk(3, 0.09, 0.0, &[]);
        s.send(EngineEvent::Talk(Talk::UserWords(format!(" {w}"))));
    }
    s.talk(8, 0.002, 0.0, &[]);
    s.send(EngineEvent::Talk(Talk::UserTurnEnded));
    s.send(EngineEvent::Talk(Talk::Phase(TalkPhase::Thinking)));
    s.talk(2, 0.002, 0.0, &[]);
    s
}

fn running(s: &mut Scene) {
    s.send(EngineEvent::Talk(Talk::Tool(ToolActivity::Running {
        call: 1,
        tool: "list_directory".into(),
        args: r#"{"path": "/home/me/notes"}"#.into(),
    })));
    s.talk(2, 0.002, 0.0, &[]);
}

fn done(s: &mut Scene) {
    s.send(EngineEvent::Talk(Talk::Tool(ToolActivity::Done {
        call: 1,
        tool: "list_directory".into(),
        args: r#"{"path": "/home/me/notes"}"#.into(),
        consent: "not needed".into(),
        outcome: "ok".into(),
        result: "[FILE] groceries.md\n[FILE] ideas.md\n[DIR] old\n[FILE] todo.txt\n[FILE] trip-to-lisbon.md\n[FILE] reading-list.md".into(),
        ms: 84.0,
    })));
}

fn asking(s: &mut Scene) {
    s.send(EngineEvent::Talk(Talk::Tool(ToolActivity::Asking {
        call: 2,
        tool: "run_shell".into(),
        question: "Run `git log --since=midnight --oneline` in /home/me/src/assistant?".into(),
    })));
    s.talk(2, 0.002, 0.0, &[]);
}

fn snap(name: &str, scene: &mut Scene) {
    for (w, h) in SIZES {
        let t = draw(&mut scene.state, w, h);
        insta::with_settings!({ snapshot_path => "../../snapshots", prepend_module_to_snapshot => false, omit_expression => true }, {
            insta::assert_snapshot!(format!("{name}_{w}x{h}"), t.backend());
        });
    }
}

#[test]
fn snapshot_a_tool_running() {
    let mut s = with_tools(vec![]);
    running(&mut s);
    assert_eq!(s.state.conv_state(), ConvState::Acting);
    snap("tool_running", &mut s);
}

#[test]
fn snapshot_consent_asked() {
    let mut s = with_tools(vec![]);
    running(&mut s);
    done(&mut s);
    asking(&mut s);
    assert_eq!(s.state.conv_state(), ConvState::Asking);
    snap("tool_consent_asked", &mut s);
}

#[test]
fn a_result_is_folded_to_one_line_and_o_unfolds_it() {
    let mut s = with_tools(vec![]);
    running(&mut s);
    done(&mut s);
    assert_ne!(
        s.state.conv_state(),
        ConvState::Acting,
        "acting ends with the call"
    );
    let entry = s.state.feed.entries().last().unwrap().clone();
    assert!(entry.text.contains("list_directory") && entry.text.contains("ok"));
    let folded = entry.remedy.unwrap();
    assert!(!folded.contains('\n'), "one line: {folded}");
    s.app(key('o'));
    let whole = s
        .state
        .feed
        .entries()
        .last()
        .unwrap()
        .remedy
        .clone()
        .unwrap();
    assert!(whole.contains("\n[DIR] old\n"), "{whole}");
    s.app(key('o'));
    assert!(!s
        .state
        .feed
        .entries()
        .last()
        .unwrap()
        .remedy
        .clone()
        .unwrap()
        .contains('\n'));
}

#[test]
fn y_and_n_answer_only_a_waiting_question() {
    let mut s = with_tools(vec![]);
    let u = s.state.apply(key('y'));
    assert!(u.effect.is_none(), "no question: y does nothing");
    asking(&mut s);
    let u = s.state.apply(key('n'));
    assert!(matches!(u.effect, Some(Effect::Consent(false))));
    let u = s.state.apply(key('y'));
    assert!(matches!(u.effect, Some(Effect::Consent(true))));
}

#[test]
fn the_tools_overlay_lists_the_tools_or_says_why_there_are_none() {
    let mut s = with_tools(vec![
        "date_time (built-in): offered".into(),
        "run_shell (built-in, asks first): not offered: changes things (--tools-access ask)".into(),
        "read_text_file (mcp: filesystem): offered".into(),
    ]);
    s.app(key('t'));
    let t = draw(&mut s.state, 100, 30);
    let screen = format!("{:?}", t.backend());
    assert!(
        screen.contains("read_text_file (mcp: filesystem): offered"),
        "{screen}"
    );
    // Moshi: no tools context at all.
    let mut m = Scene::new();
    m.app(key('t'));
    let t = draw(&mut m.state, 100, 30);
    let screen = format!("{:?}", t.backend());
    assert!(
        screen.contains("Moshi and PersonaPlex cannot call tools"),
        "{screen}"
    );
}

/// A persona switched to mid-session carries its `tools = [...]`, which the main loop
/// hands to the session's tool box (the offers then change from the next reply).
#[test]
fn a_persona_switch_carries_its_tools() {
    let (mut ctx, clock) = context(false, ratatui::style::Color::Cyan);
    let mut personas = (*ctx.personas).clone();
    personas[1].tools = Some(vec!["date_time".into()]);
    ctx.personas = std::sync::Arc::new(personas);
    let mut s = Scene::from_context(ctx, clock);
    let u = s.state.apply(AppEvent::Key(KeyEvent::new(
        KeyCode::F(2),
        KeyModifiers::NONE,
    )));
    match u.effect {
        Some(Effect::Persona(sw)) => assert_eq!(sw.tools, Some(vec!["date_time".to_string()])),
        other => panic!("expected a persona switch, got {other:?}"),
    }
    let u = s.state.apply(AppEvent::Key(KeyEvent::new(
        KeyCode::F(1),
        KeyModifiers::NONE,
    )));
    match u.effect {
        Some(Effect::Persona(sw)) => assert_eq!(sw.tools, None, "back to all tools"),
        other => panic!("expected a persona switch, got {other:?}"),
    }
}
