//! Below the minimum size: say so, and what size is needed.

use crate::ui::feed::wrap_text;
use crate::ui::layout::{MIN_HEIGHT, MIN_WIDTH};
use crate::ui::theme::Theme;
use ratatui::buffer::Buffer;
use ratatui::layout::Rect;
use ratatui::text::Line;
use ratatui::widgets::Widget;

pub fn render(theme: &Theme, area: Rect, buf: &mut Buffer) {
    let w = area.width as usize;
    let mut lines: Vec<Line> = wrap_text(
        &format!("terminal too small: need {MIN_WIDTH}x{MIN_HEIGHT}"),
        w,
    )
    .into_iter()
    .map(|l| Line::styled(l, theme.title()).centered())
    .collect();
    lines.extend(
        wrap_text(&format!("now {}x{}", area.width, area.height), w)
            .into_iter()
            .map(|l| Line::styled(l, theme.dim()).centered()),
    );
    let h = (lines.len() as u16).min(area.height);
    let top = area.y + (area.height - h) / 2;
    for (i, line) in lines.into_iter().take(h as usize).enumerate() {
        line.render(Rect::new(area.x, top + i as u16, area.width, 1), buf);
    }
}
