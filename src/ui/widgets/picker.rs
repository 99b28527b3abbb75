//! The device picker overlay: the current microphone's level, then the inputs and
//! the outputs of every host, each with its default config; the devices in use are
//! marked ●, the cursor's row highlighted.

use crate::bus::{DeviceSide, Endpoint};
use crate::ui::picker::Picker;
use crate::ui::state::UiState;
use ratatui::buffer::Buffer;
use ratatui::layout::Rect;
use ratatui::style::Modifier;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Clear, Widget};

/// Columns of the microphone's level bar.
const METER: usize = 20;

pub fn render(state: &UiState, picker: &Picker, area: Rect, buf: &mut Buffer) {
    let t = &state.theme;
    let w = if area.width > 110 { 100 } else { area.width };
    // The level, a title per side and a row per device, in a box no taller than needed.
    let rows = picker.devices.as_ref().map_or(2, |d| {
        let sides = d
            .iter()
            .map(|e| e.side)
            .collect::<std::collections::BTreeSet<_>>();
        1 + sides.len() + d.len().max(1)
    });
    let h = (rows as u16 + 2).min(area.height.saturating_sub(2)).max(3);
    let popup = Rect::new(area.x + (area.width - w) / 2, area.y, w, h);
    Clear.render(popup, buf);
    let block = Block::new()
        .borders(Borders::ALL)
        .border_type(t.border_type)
        .border_style(t.key())
        .title(Line::styled(" devices ", t.title()))
        .title_bottom(
            Line::styled(" ↑↓ move · Enter switch · Esc close ", t.dim()).right_aligned(),
        );
    let inner = block.inner(popup);
    block.render(popup, buf);
    let mut lines: Vec<Line> = Vec::new();
    let level = state.levels.back().map_or(0.0, |s| s.mic);
    let filled = ((level.sqrt() * METER as f32).round() as usize).min(METER);
    lines.push(Line::from(vec![
        Span::styled(" mic level ", t.dim()),
        Span::styled("█".repeat(filled), t.gauge()),
        Span::styled("░".repeat(METER - filled), t.dim()),
    ]));
    let Some(devices) = &picker.devices else {
        lines.push(Line::styled(" asking the sound system…", t.dim()));
        return draw_lines(lines, 0, inner, buf);
    };
    let current = |side: DeviceSide| match (side, &state.input, &state.output) {
        (DeviceSide::Microphone, Some(Endpoint::Device(n)), _) => Some(n.as_str()),
        (DeviceSide::Speaker, _, Some(Endpoint::Device(n))) => Some(n.as_str()),
        _ => None,
    };
    let mut cursor_line = 0;
    let mut side = None;
    for (i, d) in devices.iter().enumerate() {
        if side != Some(d.side) {
            side = Some(d.side);
            let title = match d.side {
                DeviceSide::Microphone => " inputs",
                DeviceSide::Speaker => " outputs",
            };
            lines.push(Line::styled(title, t.title()));
        }
        let used = current(d.side) == Some(d.name.as_str());
        let style = if i == picker.cursor {
            t.text().add_modifier(Modifier::REVERSED)
        } else {
            t.text()
        };
        if i == picker.cursor {
            cursor_line = lines.len();
        }
        let level = if used && d.side == DeviceSide::Microphone {
            Some(level)
        } else {
            picker.levels.iter().find(|(j, _)| *j == i).map(|(_, l)| *l)
        };
        let meter = match (d.side, level) {
            (DeviceSide::Microphone, Some(l)) => {
                let n = ((l.sqrt() * 6.0).round() as usize).min(6);
                format!("{}{} ", "▮".repeat(n), "·".repeat(6 - n))
            }
            // An input that could not be opened beside the one in use.
            (DeviceSide::Microphone, None) => "       ".into(),
            (DeviceSide::Speaker, _) => String::new(),
        };
        lines.push(Line::from(vec![
            Span::styled(if used { " ● " } else { "   " }, t.ok()),
            Span::styled(meter, t.gauge()),
            Span::styled(d.name.clone(), style),
            Span::styled(format!("  {}  ", d.selector), t.key()),
            Span::styled(d.config.clone(), t.dim()),
        ]));
    }
    if devices.is_empty() {
        lines.push(Line::styled(
            " no devices: no sound system answers",
            t.dim(),
        ));
    }
    draw_lines(lines, cursor_line, inner, buf);
}

/// The lines from a start that keeps the cursor's line in view.
fn draw_lines(lines: Vec<Line>, cursor_line: usize, inner: Rect, buf: &mut Buffer) {
    let h = inner.height as usize;
    let start = (cursor_line + 1).saturating_sub(h);
    for (row, line) in lines.into_iter().skip(start).take(h).enumerate() {
        line.render(
            Rect::new(inner.x, inner.y + row as u16, inner.width, 1),
            buf,
        );
    }
}
