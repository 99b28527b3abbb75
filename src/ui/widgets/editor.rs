//! The typed-turn editor, in place of the status line while it is open: the line
//! with its cursor (scrolled to keep the cursor in view), and on a second row the
//! keys, or why this engine takes no typed turns.

use crate::ui::state::UiState;
use crate::ui::words::TYPE_WITH_CASCADE;
use ratatui::buffer::Buffer;
use ratatui::layout::Rect;
use ratatui::style::Modifier;
use ratatui::text::{Line, Span};
use ratatui::widgets::Widget;

const PROMPT: &str = "you › ";

pub fn render(state: &UiState, area: Rect, buf: &mut Buffer) {
    let Some((text, cursor)) = state.typing.line() else {
        return;
    };
    let t = &state.theme;
    buf.set_style(area, t.text());
    for y in area.top()..area.bottom() {
        for x in area.left()..area.right() {
            buf[(x, y)].set_symbol(" ");
        }
    }
    let refusal = state.typing_refusal();
    let refusal = refusal.as_deref();
    let row = Rect::new(area.x, area.y, area.width, 1);
    let room = (area.width as usize).saturating_sub(PROMPT.chars().count() + 1);
    // Characters, not columns: the cursor is tui-input's visual column.
    let start = cursor.saturating_sub(room);
    let shown: String = text.chars().skip(start).take(room).collect();
    let at = cursor - start;
    let before: String = shown.chars().take(at).collect();
    let under: String = shown.chars().nth(at).map_or(" ".into(), String::from);
    let after: String = shown.chars().skip(at + 1).collect();
    Line::from(vec![
        Span::styled(PROMPT, t.key()),
        Span::styled(before, t.text()),
        Span::styled(under, t.text().add_modifier(Modifier::REVERSED)),
        Span::styled(after, t.text()),
    ])
    .render(row, buf);
    let hint = match refusal {
        // With a settings file to save to, the editor offers the switch itself.
        Some(why) if state.settings.is_some() => Line::from(vec![
            Span::styled(format!("{why}: "), t.alarm()),
            Span::styled("Tab", t.key()),
            Span::styled(
                " the cascade from the next start (it takes typed turns)",
                t.remedy(),
            ),
        ]),
        Some(why) => Line::from(vec![
            Span::styled(format!("{why}: "), t.alarm()),
            Span::styled(TYPE_WITH_CASCADE, t.remedy()),
        ]),
        None => Line::from(vec![
            Span::styled("Enter", t.key()),
            Span::styled(" send  ", t.dim()),
            Span::styled("Esc", t.key()),
            Span::styled(" cancel  ", t.dim()),
            Span::styled("↑↓", t.key()),
            Span::styled(" history  ", t.dim()),
            Span::styled("Ctrl-W/U", t.key()),
            Span::styled(" delete word/line", t.dim()),
        ]),
    };
    if area.height >= 2 {
        hint.render(Rect::new(area.x, area.y + 1, area.width, 1), buf);
    } else if let Some(why) = refusal {
        // One row (compact): the refusal replaces the line.
        Line::from(Span::styled(
            format!("{why} — --engine cascade types"),
            t.alarm(),
        ))
        .render(row, buf);
    }
}
