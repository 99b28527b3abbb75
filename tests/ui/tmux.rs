//! End to end in a real terminal: the `assistant` binary in tmux at 100x30.
//! Reads the screen with capture-pane, presses keys, resizes, quits, and checks
//! the exit code and that the terminal was given back.

use crate::tmux_support;
use std::path::Path;
use std::thread::sleep;
use std::time::{Duration, Instant};
use tmux_support::Tmux;

use tmux_support::WAV;

fn widest_line(screen: &str) -> usize {
    screen.lines().map(|l| l.chars().count()).max().unwrap_or(0)
}

/// The whole session a user would have: look, ask for help, resize, quit.
fn session(args: &[&str], ready_line: &str) {
    assert!(
        Path::new(env!("CARGO_MANIFEST_DIR")).join(WAV).exists(),
        "{WAV} missing"
    );
    let Some(t) = Tmux::start(args) else { return };

    // Header, feed and status line.
    let s = t.wait_for("the full screen", |s| {
        s.contains("Moshi")
            && s.contains("┌ activity")
            && s.contains(ready_line)
            && s.contains("latency")
            && s.contains("log ")
    });
    assert!(s.contains("journal: "), "journal path in the feed:\n{s}");
    let first = s.lines().next().unwrap_or_default();
    assert!(first.contains("Moshi"), "header first:\n{s}");
    assert!(
        s.lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap()
            .contains("q quit"),
        "status line last:\n{s}"
    );
    assert!(
        s.lines()
            .any(|l| l.contains(" log ") && l.contains("assistant.log")),
        "log path in the status line:\n{s}"
    );
    assert_eq!(
        t.format("#{alternate_on}"),
        "1",
        "the TUI uses the alternate screen"
    );
    assert_eq!(
        t.format("#{cursor_flag}"),
        "0",
        "cursor hidden while the TUI runs"
    );

    // Help, then Esc closes it.
    t.keys("?");
    t.wait_for("help", |s| {
        s.contains("reset / restart engine") && s.contains("Esc closes")
    });
    t.keys("Escape");
    t.wait_for("help closed", |s| !s.contains("Esc closes"));

    // Resize mid-run: compact, too small, wide, back.
    t.resize(60, 15);
    t.wait_for("compact 60x15", |s| {
        widest_line(s) <= 60 && s.contains("? help") && !s.contains("┌ activity")
    });
    t.resize(30, 8);
    t.wait_for("too small", |s| {
        s.contains("terminal too small: need 40x12")
    });
    t.resize(160, 45);
    t.wait_for("160x45", |s| {
        s.contains("┌ activity") && widest_line(s) > 100
    });
    t.resize(100, 30);
    t.wait_for("back at 100x30", |s| {
        s.contains("┌ activity") && widest_line(s) <= 100
    });

    // Quit.
    t.keys("q");
    let deadline = Instant::now() + Duration::from_secs(20);
    let code = loop {
        if let Some(c) = t.exit_code() {
            break c;
        }
        assert!(
            Instant::now() < deadline,
            "no exit after q; screen:\n{}",
            t.screen()
        );
        sleep(Duration::from_millis(50));
    };
    assert_eq!(code, 0, "exit code after q; log:\n{}", t.log());
    assert_eq!(
        t.format("#{alternate_on}"),
        "0",
        "left the alternate screen"
    );
    assert_eq!(t.format("#{cursor_flag}"), "1", "cursor visible again");
    let after = t.screen();
    assert!(
        !after.contains("┌ activity") && !after.contains("latency"),
        "TUI left on the main screen:\n{after}"
    );
    assert!(!t.log().contains("panic"), "log:\n{}", t.log());
    // The transcript was flushed: the journal is closed with its end record.
    let records = t.journal();
    assert_eq!(records.first().unwrap()["kind"], "start");
    assert_eq!(records.last().unwrap()["kind"], "end", "{records:?}");
}

#[test]
fn tmux_loopback_session_shows_the_screen_takes_keys_survives_resizes_and_restores_the_terminal() {
    session(
        &["--engine", "loopback", "--input", WAV],
        "model ready: loopback",
    );
}

#[test]
fn tmux_demo_session_as_the_issue_describes() {
    session(&["--demo", "--input", WAV], "model ready: demo");
}

/// The header row as tmux holds it, colours included.
fn header_row(t: &Tmux) -> String {
    t.screen_with_colours()
        .lines()
        .next()
        .unwrap_or_default()
        .to_string()
}

#[test]
fn tmux_f2_switches_persona_and_colours_and_tab_cycles() {
    let Some(t) = Tmux::start(&["--engine", "loopback", "--input", WAV]) else {
        return;
    };
    let s = t.wait_for("ready as Moshi", |s| {
        s.lines().next().is_some_and(|l| l.contains("Moshi")) && s.contains("model ready: loopback")
    });
    assert!(!s.contains("persona:"), "no switch yet:\n{s}");
    let before = header_row(&t);
    // Cyan name, the terminal's own background.
    assert!(
        before.contains("\u{1b}[38;5;6mMoshi"),
        "cyan Moshi (tmux writes cyan as 38;5;6): {before:?}"
    );
    assert!(
        !before.contains("48;2;"),
        "no persona background yet: {before:?}"
    );

    t.keys("F2");
    // A capture can land while a frame is half written: wait for the whole frame,
    // JARVIS in the header and the switch in the feed (or fail after 20 s).
    let s = t.wait_for("JARVIS in the header and the switch in the feed", |s| {
        s.lines().next().is_some_and(|l| l.contains("JARVIS")) && s.contains("persona: JARVIS (F2)")
    });
    assert!(s.contains("╭ activity"), "JARVIS's rounded border:\n{s}");
    let jarvis = header_row(&t);
    assert!(
        jarvis.contains("38;2;79;195;247"),
        "JARVIS's #4fc3f7 on the header: {jarvis:?}"
    );
    assert!(
        jarvis.contains("48;2;10;25;41"),
        "JARVIS's #0a1929 background: {jarvis:?}"
    );

    t.keys("Tab");
    let s = t.wait_for("GLaDOS after Tab", |s| {
        s.lines().next().is_some_and(|l| l.contains("GLaDOS"))
    });
    assert!(s.contains("┏ activity"), "GLaDOS's thick border:\n{s}");
    assert!(
        header_row(&t).contains("38;2;255;159;28"),
        "GLaDOS's #ff9f1c: {:?}",
        header_row(&t)
    );

    t.keys("BTab");
    t.wait_for("back to JARVIS with Shift-Tab", |s| {
        s.lines().next().is_some_and(|l| l.contains("JARVIS"))
    });
    t.keys("F1");
    t.wait_for("Moshi again", |s| {
        s.lines().next().is_some_and(|l| l.contains("Moshi")) && s.contains("┌ activity")
    });

    t.keys("q");
    let deadline = Instant::now() + Duration::from_secs(20);
    while t.exit_code().is_none() {
        assert!(
            Instant::now() < deadline,
            "no exit after q:\n{}",
            t.screen()
        );
        sleep(Duration::from_millis(50));
    }
    assert_eq!(t.exit_code(), Some(0), "log:\n{}", t.log());
    // The journal starts as Moshi and records every switch.
    let records = t.journal();
    assert_eq!(records[0]["persona"], "Moshi");
    let switches: Vec<String> = records
        .iter()
        .filter(|r| {
            r["kind"] == "event"
                && r["message"]
                    .as_str()
                    .is_some_and(|m| m.starts_with("persona: "))
        })
        .map(|r| r["message"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        switches,
        [
            "persona: JARVIS",
            "persona: GLaDOS",
            "persona: JARVIS",
            "persona: Moshi"
        ],
        "{records:?}"
    );
}
