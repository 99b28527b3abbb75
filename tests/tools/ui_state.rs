//! Tool calls on screen (cascade mode): the header says `acting` while a tool runs and
//! `asking y/n` while one waits for consent; the feed shows each call with its result
//! folded to one line, `o` unfolds it; `y`/`n` answer only a waiting question; the `t`
//! overlay lists the tools, or says that Moshi and PersonaPlex cannot call any.

use crate::ui_support;

use assistant::bus::{EngineEvent, Talk, TalkPhase, ToolActivity};
use assistant::tools::config::Access;
use assistant::tools::consent::Desk;
use assistant::tools::{SharedTools, ToolBox, ToolsOptions};
use assistant::ui::context::ToolsContext;
use assistant::ui::event::AppEvent;
use assistant::ui::state::{ConvState, Effect};
use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use ui_support::*;

fn key(c: char) -> AppEvent {
    AppEvent::Key(KeyEvent::new(KeyCode::Char(c), KeyModifiers::NONE))
}

/// A real tool box with the built-ins only (`--tools-access ask`, no MCP server);
/// `every_persona`: tools for every persona, not only those that list some.
fn toolbox(every_persona: bool) -> (SharedTools, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("mcp.json");
    std::fs::write(&cfg, r#"{"mcpServers": {}}"#).unwrap();
    let started = ToolBox::start(
        &ToolsOptions {
            config: Some(cfg),
            access: Some(Access::Ask),
            persona_tools: None,
            every_persona,
            workdir: dir.path().to_path_buf(),
            llm_url: None,
        },
        Desk::interactive(),
        Box::new(|_| {}),
    )
    .unwrap();
    (SharedTools(Some(std::sync::Arc::new(started.tools))), dir)
}

fn tools_context(toolbox: SharedTools) -> ToolsContext {
    ToolsContext {
        desk: toolbox.0.as_ref().unwrap().desk().clone(),
        toolbox,
    }
}

fn with_tools() -> Scene {
    let (mut ctx, clock) = context(false, ratatui::style::Color::Cyan);
    ctx.tools = Some(tools_context(toolbox(true).0));
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
    let mut s = with_tools();
    running(&mut s);
    assert_eq!(s.state.conv_state(), ConvState::Acting);
    snap("tool_running", &mut s);
}

#[test]
fn snapshot_consent_asked() {
    let mut s = with_tools();
    running(&mut s);
    done(&mut s);
    asking(&mut s);
    assert_eq!(s.state.conv_state(), ConvState::Asking);
    snap("tool_consent_asked", &mut s);
}

#[test]
fn a_result_is_folded_to_one_line_and_o_unfolds_it() {
    let mut s = with_tools();
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
    let mut s = with_tools();
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
    let (mut ctx, clock) = context(false, ratatui::style::Color::Cyan);
    ctx.tools = Some(tools_context(toolbox(true).0));
    let mut s = Scene::from_context(ctx, clock);
    s.app(key('t'));
    let t = draw(&mut s.state, 100, 30);
    let screen = format!("{:?}", t.backend());
    for line in [
        "4 of 4 tools offered",
        "date_time (built-in): offered",
        "run_shell (built-in, asks first): offered",
    ] {
        assert!(screen.contains(line), "{line}: {screen}");
    }
    // The cascade with no tool box at all: what would turn them on.
    let (mut ctx, clock) = context(false, ratatui::style::Color::Cyan);
    ctx.tools = Some(ToolsContext {
        desk: Desk::nobody(),
        toolbox: SharedTools::default(),
    });
    let mut n = Scene::from_context(ctx, clock);
    n.app(key('t'));
    let screen = format!("{:?}", draw(&mut n.state, 120, 30).backend());
    assert!(
        screen.contains("No tools: configure MCP servers"),
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

/// A session whose start persona lists no tools (and no mcp.json or --tools-access):
/// the tool box is there for the persona that lists some, and the overlay follows the
/// active persona, before and after a switch (F2) and back (F1).
#[test]
fn snapshot_the_tools_overlay_follows_a_persona_switch() {
    let (mut ctx, clock) = context(false, ratatui::style::Color::Cyan);
    let mut personas = (*ctx.personas).clone();
    personas[1].tools = Some(vec!["date_time".into(), "look_*".into()]);
    ctx.personas = std::sync::Arc::new(personas);
    let (tb, _dir) = toolbox(false);
    ctx.tools = Some(tools_context(tb));
    let mut s = Scene::from_context(ctx, clock);
    s.app(key('t'));
    let before = format!("{:?}", draw(&mut s.state, 120, 30).backend());
    assert!(before.contains("0 of 4 tools offered"), "{before}");
    assert!(
        before.contains("date_time (built-in): not offered: this persona lists no tools"),
        "{before}"
    );
    s.app(AppEvent::Key(KeyEvent::new(
        KeyCode::F(2),
        KeyModifiers::NONE,
    )));
    assert!(
        s.state.tools.overlay,
        "the overlay stays open across a switch"
    );
    let after = format!("{:?}", draw(&mut s.state, 120, 30).backend());
    for line in [
        "2 of 4 tools offered",
        "date_time (built-in): offered",
        "look_at_screen (built-in, asks first): offered",
        "run_shell (built-in, asks first): not offered: not in the persona's tools",
    ] {
        assert!(after.contains(line), "{line}: {after}");
    }
    snap("tools_overlay_after_a_switch", &mut s);
    s.app(AppEvent::Key(KeyEvent::new(
        KeyCode::F(1),
        KeyModifiers::NONE,
    )));
    let back = format!("{:?}", draw(&mut s.state, 120, 30).backend());
    assert!(back.contains("0 of 4 tools offered"), "{back}");
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
