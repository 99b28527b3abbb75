//! The settings overlay: each setting with its value, the cursor's row highlighted,
//! the ones that wait for the next start marked, and the file they are saved to.

use crate::ui::context::SettingsContext;
use crate::ui::settings_view::{SettingsView, ROWS};
use crate::ui::state::UiState;
use ratatui::buffer::Buffer;
use ratatui::layout::Rect;
use ratatui::style::Modifier;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Clear, Widget};

pub fn render(
    state: &UiState,
    view: &SettingsView,
    s: &SettingsContext,
    area: Rect,
    buf: &mut Buffer,
) {
    let t = &state.theme;
    let w = area.width.min(64);
    let h = (ROWS.len() as u16 + 4).min(area.height);
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
        .title(Line::styled(" settings ", t.title()))
        .title_bottom(Line::styled(" ↑↓ pick · ←→ change · Esc close ", t.dim()).right_aligned());
    let inner = block.inner(popup);
    block.render(popup, buf);
    let mut lines: Vec<Line> = ROWS
        .iter()
        .enumerate()
        .map(|(i, row)| {
            let value = format!("{:<10}", row.value(&s.current));
            let value_style = if i == view.cursor {
                t.text().add_modifier(Modifier::REVERSED)
            } else {
                t.text()
            };
            let mut spans = vec![
                Span::styled(format!(" {:<19}", row.label()), t.key()),
                Span::styled(value, value_style),
            ];
            if !row.live() {
                spans.push(Span::styled("  from the next start", t.dim()));
            }
            Line::from(spans)
        })
        .collect();
    lines.push(Line::default());
    lines.push(Line::styled(
        format!(" saved to {}", s.path.display()),
        t.dim(),
    ));
    for (row, line) in lines.into_iter().take(inner.height as usize).enumerate() {
        line.render(
            Rect::new(inner.x, inner.y + row as u16, inner.width, 1),
            buf,
        );
    }
}
