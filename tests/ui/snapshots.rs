//! Snapshots of whole UI states at every supported size, stored in the top-level
//! `snapshots/`. Text only: colours are checked in `ui_colours.rs`.

use crate::ui_support;

use ui_support::*;

fn snap(name: &str, mut scene: Scene) {
    for (w, h) in SIZES {
        let t = draw(&mut scene.state, w, h);
        insta::with_settings!({ snapshot_path => "../../snapshots", prepend_module_to_snapshot => false, omit_expression => true }, {
            insta::assert_snapshot!(format!("{name}_{w}x{h}"), t.backend());
        });
    }
}

#[test]
fn snapshot_loading_with_progress() {
    snap("loading", loading(false));
}

#[test]
fn snapshot_listening() {
    snap("listening", listening(false));
}

#[test]
fn snapshot_speaking_multi_line_transcript() {
    snap("speaking", speaking(false));
}

#[test]
fn snapshot_both_talking() {
    snap("both_talking", both_talking(false));
}

#[test]
fn snapshot_degraded_no_microphone() {
    snap("degraded_no_mic", degraded(false));
}

#[test]
fn snapshot_error_weights_failed() {
    snap("error_weights_failed", error(false));
}

#[test]
fn snapshot_help_overlay() {
    snap("help", help(false));
}

#[test]
fn snapshot_connected_to_a_server() {
    let link = assistant::bus::LinkStats {
        rtt_ms: 23.4,
        jitter_ms: 40,
        keeping_pace: true,
        connected: true,
    };
    snap("connected", connected(false, link));
}

#[test]
fn snapshot_reconnecting() {
    let link = assistant::bus::LinkStats {
        rtt_ms: 23.4,
        jitter_ms: 0,
        keeping_pace: false,
        connected: false,
    };
    let mut s = connected(false, link);
    s.send(assistant::bus::EngineEvent::Happened(
        assistant::bus::Happening::LinkLost {
            why: "the server closed the connection".into(),
            attempt: 1,
            of: 8,
            retry_in_s: 0.5,
        },
    ));
    snap("reconnecting", s);
}

#[test]
fn snapshot_too_small() {
    let mut s = listening(false);
    let t = draw(&mut s.state, 30, 8);
    insta::with_settings!({ snapshot_path => "../../snapshots", prepend_module_to_snapshot => false, omit_expression => true }, {
        insta::assert_snapshot!("too_small_30x8", t.backend());
    });
}

#[test]
fn snapshot_cascade_conversation() {
    snap("cascade_thinking", cascade_thinking(false));
}

/// The first start with nothing on disk, on a 2-core laptop with no GPU: the chooser,
/// worded from the engine choice's own figures.
fn first_start() -> Scene {
    use assistant::app::engine_choice::{choose, MachineProfile};
    let laptop = MachineProfile::two_core_laptop();
    let (mut ctx, clock) = context(false, ratatui::style::Color::Cyan);
    ctx.chooser = Some(assistant::app::first_start::chooser_setup(&choose(&laptop)));
    Scene::from_context(ctx, clock)
}

fn snap_at(name: &str, scene: &mut Scene, sizes: &[(u16, u16)]) {
    for &(w, h) in sizes {
        let t = draw(&mut scene.state, w, h);
        insta::with_settings!({ snapshot_path => "../../snapshots", prepend_module_to_snapshot => false, omit_expression => true }, {
            insta::assert_snapshot!(format!("{name}_{w}x{h}"), t.backend());
        });
    }
}

#[test]
fn snapshot_first_start_chooser() {
    let mut s = first_start();
    snap_at("chooser", &mut s, &[(80, 24), (20, 5), (40, 12), (120, 40)]);
    // Down to one cell: no panic, the selected engine first.
    for w in 1..=24 {
        for h in 1..=8 {
            draw(&mut s.state, w, h);
        }
    }
}

#[test]
fn snapshot_first_start_chooser_typing_a_server_address() {
    use assistant::ui::AppEvent;
    use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
    let mut s = first_start();
    let key = |c| AppEvent::Key(KeyEvent::new(c, KeyModifiers::NONE));
    s.app(key(KeyCode::Char('3')));
    s.app(key(KeyCode::Enter));
    for c in "192.168.1.20:8998".chars() {
        s.app(key(KeyCode::Char(c)));
    }
    snap_at("chooser_address", &mut s, &[(80, 24), (20, 5)]);
}

/// The header says which engine was picked for this machine, and why.
#[test]
fn snapshot_header_with_the_engine_choice() {
    let (mut ctx, clock) = context(false, ratatui::style::Color::Cyan);
    ctx.engine = Some("CPU cascade · no GPU: Moshi 7B q8 765 ms > 80 ms (measured) · recogniser 132 ms > 80 ms (estimate) · 2.5 GiB of 23.0 GiB".into());
    let mut s = listening_from(Scene::from_context(ctx, clock));
    snap_at(
        "engine_choice_header",
        &mut s,
        &[(80, 24), (120, 40), (200, 60)],
    );
}
