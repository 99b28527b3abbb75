//! Snapshots of whole UI states at every supported size, stored in the top-level
//! `snapshots/`. Text only: colours are checked in `ui_colours.rs`.

mod ui_support;

use ui_support::*;

fn snap(name: &str, mut scene: Scene) {
    for (w, h) in SIZES {
        let t = draw(&mut scene.state, w, h);
        insta::with_settings!({ snapshot_path => "../snapshots", prepend_module_to_snapshot => false, omit_expression => true }, {
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
    insta::with_settings!({ snapshot_path => "../snapshots", prepend_module_to_snapshot => false, omit_expression => true }, {
        insta::assert_snapshot!("too_small_30x8", t.backend());
    });
}

#[test]
fn snapshot_cascade_conversation() {
    snap("cascade_thinking", cascade_thinking(false));
}
