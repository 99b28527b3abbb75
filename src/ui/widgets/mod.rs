//! The parts of the screen. Each draws from `&UiState` into a buffer area and
//! changes nothing.

pub mod card;
pub mod chooser;
pub mod editor;
pub mod feed;
pub mod header;
pub mod help;
pub mod picker;
pub mod progress;
pub mod settings;
pub mod status;
pub mod too_small;
pub mod tools;
pub mod visualizer;

use ratatui::buffer::Buffer;
use ratatui::layout::Rect;
use ratatui::text::Line;
use ratatui::widgets::Widget;

/// Draws `left` at the start of a row and `right` at its end, dropping `right`
/// when both do not fit with a gap of two columns.
pub(crate) fn split_row(left: Line<'_>, right: Line<'_>, area: Rect, buf: &mut Buffer) {
    let lw = left.width() as u16;
    let rw = right.width() as u16;
    left.render(area, buf);
    if lw + 2 + rw <= area.width {
        let r = Rect::new(area.right() - rw, area.y, rw, 1);
        right.render(r, buf);
    }
}
