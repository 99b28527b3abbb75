//! The help overlay: every key, from the keymap's own table.

use crate::ui::keymap::KEYS;
use crate::ui::state::UiState;
use ratatui::buffer::Buffer;
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Clear, Widget};
use unicode_width::UnicodeWidthStr;

pub fn render(state: &UiState, area: Rect, buf: &mut Buffer) {
    let t = &state.theme;
    let key_w = KEYS.iter().map(|b| b.label.width()).max().unwrap_or(0);
    let desc_w = KEYS.iter().map(|b| b.help.width()).max().unwrap_or(0);
    let want_w = (key_w + 2 + desc_w + 4) as u16;
    // A popup that would leave slivers of the screen at its sides takes the whole width.
    let w = if want_w + 6 > area.width {
        area.width
    } else {
        want_w
    };
    let h = (KEYS.len() as u16 + 2).min(area.height);
    let popup = Rect::new(
        area.x + (area.width - w) / 2,
        area.y + (area.height - h) / 2,
        w,
        h,
    );
    Clear.render(popup, buf);
    let block = Block::new()
        .borders(Borders::ALL)
        .border_type(t.border_type)
        .border_style(t.key())
        .title(Line::styled(" keys ", t.title()))
        .title_bottom(Line::styled(" Esc closes ", t.dim()).right_aligned());
    let inner = block.inner(popup);
    block.render(popup, buf);
    for (i, (key, desc)) in KEYS
        .iter()
        .map(|b| (b.label, b.help))
        .enumerate()
        .take(inner.height as usize)
    {
        let line = Line::from(vec![
            Span::raw(" "),
            Span::styled(format!("{key:<key_w$}"), t.key()),
            Span::raw("  "),
            Span::styled(desc, t.text()),
        ]);
        line.render(Rect::new(inner.x, inner.y + i as u16, inner.width, 1), buf);
    }
}
