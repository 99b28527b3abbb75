//! Snapshots of the settings overlay (`s`) at 80x24 and 200x60, the cursor on top-k.
//! Stored in the top-level `snapshots/`.

use crate::ui_support;

use assistant::ui::context::SettingsContext;
use assistant::ui::settings_view::Current;
use assistant::ui::AppEvent;
use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use ratatui::style::Color;
use ui_support::*;

#[test]
fn snapshot_settings() {
    let (mut ctx, clock) = context(false, Color::Cyan);
    ctx.settings = Some(SettingsContext {
        current: Current {
            echo_cancel: true,
            half_duplex: false,
            push_to_talk: false,
            wake: true,
            wake_threshold: 0.77,
            temperature: 0.8,
            text_temperature: 0.7,
            top_k: 250,
            engine: "cascade".into(),
        },
        saved: Default::default(),
        path: "/home/ada/.config/assistant/config.toml".into(),
    });
    let mut s = listening_from(Scene::from_context(ctx, clock));
    let key = |s: &mut Scene, c| {
        s.app(AppEvent::Key(KeyEvent::new(c, KeyModifiers::NONE)));
    };
    key(&mut s, KeyCode::Char('s'));
    for _ in 0..7 {
        key(&mut s, KeyCode::Down);
    }
    key(&mut s, KeyCode::Right);
    for (w, h) in [(80, 24), (200, 60)] {
        let t = draw(&mut s.state, w, h);
        insta::with_settings!({ snapshot_path => "../../snapshots", prepend_module_to_snapshot => false, omit_expression => true }, {
            insta::assert_snapshot!(format!("settings_{w}x{h}"), t.backend());
        });
    }
}
