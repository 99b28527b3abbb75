//! Text snapshots do not record colour: these check that the theme's colours land
//! on the cells a user looks at, and that NO_COLOR takes every colour away.

use crate::ui_support;

use ratatui::buffer::Buffer;
use ratatui::style::{Color, Modifier};
use ui_support::*;

fn fg_at(buf: &Buffer, text: &str) -> (Color, Modifier) {
    let (x, y) =
        find(buf, text).unwrap_or_else(|| panic!("{text:?} not on screen:\n{}", screen(buf)));
    let c = &buf[(x, y)];
    (c.fg, c.modifier)
}

/// Every visible cell of `text` has foreground `colour`.
fn all_fg(buf: &Buffer, text: &str, colour: Color) {
    let (x0, y) =
        find(buf, text).unwrap_or_else(|| panic!("{text:?} not on screen:\n{}", screen(buf)));
    for (x, ch) in (x0..).zip(text.chars()) {
        if ch != ' ' {
            assert_eq!(buf[(x, y)].fg, colour, "{ch:?} of {text:?} at ({x},{y})");
        }
    }
}

#[test]
fn persona_colour_lands_on_the_header_name_and_the_assistant_words() {
    let persona = Color::Rgb(255, 140, 0);
    let mut s = Scene::with(false, persona);
    s.at(0.2).wav_and_speaker().memory();
    s.at(8.6).ready();
    s.talk(8, 0.0, 0.12, &[" Hello", " there,", " friend."]);
    let t = draw(&mut s.state, 80, 24);
    let buf = t.backend().buffer();
    let (fg, m) = fg_at(buf, "Moshi  ");
    assert_eq!(fg, persona, "persona name in the header");
    assert!(m.contains(Modifier::BOLD));
    all_fg(buf, "Hello there, friend.", persona);
    all_fg(buf, "◆ speaking", persona);
    // The timestamp is dim, not the speaker's colour.
    let (x, y) = find(buf, "◆ Hello").unwrap();
    assert_eq!(buf[(x, y)].fg, persona);
    assert_eq!(buf[(x - 6, y)].fg, Color::DarkGray);
}

#[test]
fn user_markers_and_levels_take_the_user_colour_and_assistant_levels_the_persona_colour() {
    let mut s = both_talking(false);
    let t = draw(&mut s.state, 80, 24);
    let buf = t.backend().buffer();
    all_fg(buf, "● you are speaking…", Color::Green);
    all_fg(buf, "● you spoke for", Color::Green);

    // The visualizer: the two rows above the status lines, bars right of the labels.
    let (mic_row, out_row) = (buf.area.height - 4, buf.area.height - 3);
    assert!(
        rows(buf)[mic_row as usize].starts_with("you "),
        "{}",
        screen(buf)
    );
    assert!(
        rows(buf)[out_row as usize].starts_with("Moshi "),
        "{}",
        screen(buf)
    );
    assert_eq!(buf[(0, mic_row)].fg, Color::Green, "mic label");
    assert_eq!(buf[(0, out_row)].fg, Color::Cyan, "persona label");
    let newest = buf.area.width - 1;
    assert_eq!(
        buf[(newest, mic_row)].fg,
        Color::Green,
        "the user is talking now: newest mic bar is green"
    );
    assert_eq!(
        buf[(newest, out_row)].fg,
        Color::Cyan,
        "the assistant is talking now: newest bar in its colour"
    );
    // Earlier, while the assistant spoke alone, the quiet microphone's bars were dim.
    let dim_mic = (6..newest - 10)
        .filter(|&x| buf[(x, mic_row)].symbol() != " ")
        .all(|x| buf[(x, mic_row)].fg == Color::DarkGray);
    assert!(dim_mic, "mic noise bars are dim:\n{}", screen(buf));
}

#[test]
fn problems_take_severity_colours_and_remedies_stand_out() {
    let mut s = error(false);
    let t = draw(&mut s.state, 120, 40);
    let buf = t.backend().buffer();
    all_fg(buf, "✗ weights failed to load", Color::Red);
    all_fg(buf, "✗ error", Color::Red);
    let (fg, m) = fg_at(buf, "↳ delete");
    assert_eq!(fg, Color::Yellow);
    assert!(m.contains(Modifier::ITALIC));

    let mut d = degraded(false);
    let t = draw(&mut d.state, 80, 24);
    let buf = t.backend().buffer();
    all_fg(buf, "! degraded: no microphone", Color::Yellow);
}

#[test]
fn no_color_leaves_every_cell_uncoloured_but_keeps_the_words() {
    for scene in ALL_SCENES {
        for nc in [true, false] {
            let mut s = scene(nc);
            for (w, h) in SIZES.into_iter().chain([(30, 8)]) {
                let t = draw(&mut s.state, w, h);
                let buf = t.backend().buffer();
                let coloured = buf
                    .content()
                    .iter()
                    .filter(|c| c.fg != Color::Reset || c.bg != Color::Reset)
                    .count();
                if nc {
                    assert_eq!(coloured, 0, "NO_COLOR at {w}x{h}:\n{}", screen(buf));
                } else if w >= 40 {
                    assert!(coloured > 10, "colour expected at {w}x{h}");
                }
            }
            // Same words either way.
            let plain = screen(draw(&mut scene(true).state, 80, 24).backend().buffer());
            let coloured = screen(draw(&mut scene(false).state, 80, 24).backend().buffer());
            assert_eq!(plain, coloured);
        }
    }
}
