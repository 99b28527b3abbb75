//! One 80x24 snapshot per built-in persona (text, in `snapshots/`), and the
//! colours each persona's file asks for, checked on the header and around.

use crate::ui_support;

use assistant::persona::{BorderStyle, Catalog, VisualizerStyle};
use ratatui::style::{Color, Modifier};
use ui_support::*;

#[test]
fn each_builtin_persona_at_80x24_in_its_own_colours() {
    let personas = Catalog::builtin().personas;
    for (i, p) in personas.iter().enumerate() {
        let mut scene = speaking_as(i);
        let t = draw(&mut scene.state, 80, 24);
        let buf = t.backend().buffer();
        insta::with_settings!({ snapshot_path => "../../snapshots", prepend_module_to_snapshot => false, omit_expression => true }, {
            insta::assert_snapshot!(format!("persona_{}_80x24", p.name.to_lowercase()), t.backend());
        });
        let th = &p.theme;
        // Header: the persona's name in its primary colour, bold, on its background.
        let (x, y) = find(buf, &format!(" {}  ", p.name))
            .unwrap_or_else(|| panic!("{} not in the header:\n{}", p.name, screen(buf)));
        assert_eq!(y, 0, "{}: the name is on the header row", p.name);
        for dx in 0..p.name.chars().count() as u16 {
            let c = &buf[(x + 1 + dx, 0)];
            assert_eq!(c.fg, th.primary, "{}: header name colour", p.name);
            assert!(c.modifier.contains(Modifier::BOLD));
        }
        for col in 0..80 {
            assert_eq!(
                buf[(col, 0)].bg,
                th.background,
                "{}: header background at column {col}",
                p.name
            );
        }
        // The state badge (speaking) is the persona's colour too.
        let (sx, sy) = find(buf, "◆ speaking").unwrap();
        assert_eq!((sy, buf[(sx, sy)].fg), (0, th.primary), "{}", p.name);
        // The header's model part is dim.
        let (mx, my) = find(buf, "moshiko-q8 · cpu").unwrap();
        assert_eq!((my, buf[(mx, my)].fg), (0, th.dim), "{}", p.name);
        // Plain text takes the persona's text colour; the feed border its style.
        let (ax, ay) = find(buf, "audio in").unwrap();
        let want_text = if th.text == Color::Reset {
            Color::Reset
        } else {
            th.text
        };
        assert_eq!(buf[(ax, ay)].fg, want_text, "{}: body text", p.name);
        let corner = match th.border {
            BorderStyle::Plain => "┌",
            BorderStyle::Rounded => "╭",
            BorderStyle::Double => "╔",
            BorderStyle::Thick => "┏",
        };
        let (_, fy) = find(buf, &format!("{corner} activity"))
            .unwrap_or_else(|| panic!("{}: {corner} border:\n{}", p.name, screen(buf)));
        assert!(fy > 0);
        // The visualizer draws in the persona's style.
        let full = match p.visualizer {
            VisualizerStyle::Bars => '█',
            VisualizerStyle::Shade => '▓',
            VisualizerStyle::Dots => '⣿',
        };
        let drawn: String = rows(buf).concat();
        let foreign = ['▇', '▒', '⣶'].into_iter().filter(|c| {
            !matches!(
                (p.visualizer, c),
                (VisualizerStyle::Bars, '▇')
                    | (VisualizerStyle::Shade, '▒')
                    | (VisualizerStyle::Dots, '⣶')
            )
        });
        assert!(
            drawn.contains(full)
                || drawn.contains(match p.visualizer {
                    VisualizerStyle::Bars => '▇',
                    VisualizerStyle::Shade => '▒',
                    VisualizerStyle::Dots => '⣶',
                }),
            "{}: visualizer style:\n{drawn}",
            p.name
        );
        for c in foreign {
            assert!(
                !drawn.contains(c),
                "{}: {c} belongs to another visualizer style",
                p.name
            );
        }
    }
}

#[test]
fn the_default_persona_looks_exactly_as_before_personas() {
    // The default is cyan on the terminal's background: same cells as the
    // pre-persona speaking snapshot, colours included.
    let mut a = speaking_as(0);
    let mut b = speaking(false);
    let (ta, tb) = (draw(&mut a.state, 80, 24), draw(&mut b.state, 80, 24));
    assert_eq!(ta.backend().buffer(), tb.backend().buffer());
}

#[test]
fn p_opens_the_persona_card_with_its_prompt_and_every_key() {
    let mut s = listening_from(Scene::as_persona(1));
    s.app(assistant::ui::AppEvent::Key(
        ratatui::crossterm::event::KeyEvent::from(ratatui::crossterm::event::KeyCode::Char('p')),
    ));
    let t = draw(&mut s.state, 80, 24);
    insta::with_settings!({ snapshot_path => "../../snapshots", prepend_module_to_snapshot => false, omit_expression => true }, {
        insta::assert_snapshot!("persona_card_80x24", t.backend());
    });
    let text = screen(t.backend().buffer());
    assert!(
        text.contains("You are JARVIS") && text.contains("F6 Sage") && text.contains("top-k 120"),
        "{text}"
    );
    s.app(assistant::ui::AppEvent::Key(
        ratatui::crossterm::event::KeyEvent::from(ratatui::crossterm::event::KeyCode::Esc),
    ));
    assert!(!s.state.card, "Esc closes it");
}
