//! Draws the whole screen from `&UiState`. Reads, never writes: the screen is a
//! function of the state and the frame's size.

use super::layout::{self, Areas};
use super::state::UiState;
use super::widgets;
use ratatui::buffer::Buffer;
use ratatui::layout::Rect;
use ratatui::Frame;

pub fn render(state: &UiState, frame: &mut Frame) {
    let area = frame.area();
    draw(state, area, frame.buffer_mut());
}

/// The same into any buffer (benchmarks, tests).
pub fn draw(state: &UiState, area: Rect, buf: &mut Buffer) {
    // The persona's background and text colour under everything (a no-op for
    // a persona that keeps the terminal's own).
    let base = state.theme.base();
    if base != ratatui::style::Style::new() {
        buf.set_style(area, base);
    }
    // The first-start chooser takes the whole screen, at any size.
    if let Some(c) = &state.chooser {
        widgets::chooser::render(&state.theme, c, area, buf);
        return;
    }
    let Some(a) = layout::areas(area, state.shows_progress()) else {
        widgets::too_small::render(&state.theme, area, buf);
        return;
    };
    let Areas {
        density,
        header,
        progress,
        feed_frame,
        feed,
        visualizer,
        status,
    } = a;
    widgets::header::render(state, density, header, buf);
    if let Some(p) = progress {
        widgets::progress::render(state, density, p, buf);
    }
    widgets::feed::render(state, density, feed_frame, feed, buf);
    if let Some(v) = visualizer {
        widgets::visualizer::render(state, v, buf);
    }
    if state.typing.is_open() {
        widgets::editor::render(state, status, buf);
    } else {
        widgets::status::render(state, density, status, buf);
    }
    if state.card {
        widgets::card::render(state, area, buf);
    }
    if state.tools.overlay {
        widgets::tools::render(state, area, buf);
    }
    if let (Some(v), Some(s)) = (&state.settings_view, &state.settings) {
        widgets::settings::render(state, v, s, area, buf);
    }
    if let Some(p) = &state.picker {
        widgets::picker::render(state, p, area, buf);
    }
    if state.help {
        widgets::help::render(state, area, buf);
    }
}
