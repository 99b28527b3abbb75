//! Snapshots of the typed-turn editor (`/`) at 80x24 and 200x60: a line being typed
//! in cascade mode after a typed turn was answered, and the editor telling a Moshi
//! user that it hears only audio. Stored in the top-level `snapshots/`.

use crate::ui_support;

use assistant::bus::{EngineEvent, Talk, TalkPhase};
use assistant::ui::AppEvent;
use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use ui_support::*;

fn snap(name: &str, mut scene: Scene) {
    for (w, h) in [(80, 24), (200, 60)] {
        let t = draw(&mut scene.state, w, h);
        insta::with_settings!({ snapshot_path => "../../snapshots", prepend_module_to_snapshot => false, omit_expression => true }, {
            insta::assert_snapshot!(format!("{name}_{w}x{h}"), t.backend());
        });
    }
}

fn key(s: &mut Scene, code: KeyCode) {
    s.app(AppEvent::Key(KeyEvent::new(code, KeyModifiers::NONE)));
}

fn type_text(s: &mut Scene, text: &str) {
    for c in text.chars() {
        key(s, KeyCode::Char(c));
    }
}

#[test]
fn snapshot_editor_in_cascade_mode() {
    let mut s = listening(false);
    s.send(EngineEvent::Talk(Talk::Phase(TalkPhase::Listening)));
    s.send(EngineEvent::Talk(Talk::Typed(
        "what is on my calendar tomorrow".into(),
    )));
    s.send(EngineEvent::Talk(Talk::Phase(TalkPhase::Speaking)));
    s.talk(3, 0.0, 0.05, &[" You", " have", " a dentist at nine."]);
    s.send(EngineEvent::Talk(Talk::Phase(TalkPhase::Listening)));
    key(&mut s, KeyCode::Char('/'));
    type_text(&mut s, "and the day after");
    key(&mut s, KeyCode::Left);
    key(&mut s, KeyCode::Left);
    snap("typing_cascade", s);
}

#[test]
fn snapshot_editor_with_a_model_that_hears_only_audio() {
    let mut s = listening(false);
    key(&mut s, KeyCode::Char('/'));
    type_text(&mut s, "hello");
    snap("typing_refused", s);
}
