//! Load progress: the stage, a bar, done out of total, rate and ETA, all from
//! the engine's `Loading` events.

use crate::bus::ProgressUnit;
use crate::ui::format;
use crate::ui::layout::Density;
use crate::ui::state::{LoadView, UiState};
use crate::ui::theme::Theme;
use ratatui::buffer::Buffer;
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Widget};

/// `done / total` in the stage's unit; just `done` when the total is unknown.
pub fn done_of_total(v: &LoadView) -> String {
    let p = &v.progress;
    match (p.unit, p.total) {
        (u, 0) => format::amount(p.done, u),
        (ProgressUnit::Bytes, t) => format!("{} / {}", format::bytes(p.done), format::bytes(t)),
        (ProgressUnit::Tensors, t) => format!("{} / {} tensors", p.done, t),
    }
}

/// Rate and ETA, as far as they are known yet.
pub fn speed(v: &LoadView) -> String {
    let mut parts = Vec::new();
    if let Some(r) = v.rate() {
        parts.push(format::rate(r, v.progress.unit));
    }
    match v.eta_s() {
        Some(eta) if v.fraction() < Some(1.0) => {
            parts.push(format!("ETA {}", format::duration(eta)))
        }
        _ => {}
    }
    parts.join(" · ")
}

fn bar<'a>(fraction: f64, width: usize, t: &Theme) -> Vec<Span<'a>> {
    const PARTIAL: [char; 8] = [' ', '▏', '▎', '▍', '▌', '▋', '▊', '▉'];
    let eighths = (fraction.clamp(0.0, 1.0) * width as f64 * 8.0).round() as usize;
    let full = (eighths / 8).min(width);
    let mut filled: String = "█".repeat(full);
    let mut used = full;
    if full < width && !eighths.is_multiple_of(8) {
        filled.push(PARTIAL[eighths % 8]);
        used += 1;
    }
    vec![
        Span::styled(filled, t.gauge()),
        Span::styled("░".repeat(width - used), t.dim()),
    ]
}

pub fn render(state: &UiState, density: Density, area: Rect, buf: &mut Buffer) {
    let t = &state.theme;
    let inner = match density {
        Density::Compact => area,
        Density::Normal => {
            let block = Block::new()
                .borders(Borders::ALL)
                .border_type(t.border_type)
                .border_style(t.border())
                .title(Line::styled(" loading ", t.title()));
            let inner = block.inner(area);
            block.render(area, buf);
            inner
        }
    };
    let row = |i: u16| Rect::new(inner.x, inner.y + i, inner.width, 1);
    let w = inner.width as usize;
    let Some(v) = &state.load else {
        Line::styled("starting the engine…", t.dim()).render(row(0), buf);
        return;
    };
    let pct = v
        .fraction()
        .map(|f| format!("{:.0}%", f * 100.0))
        .unwrap_or_default();
    match density {
        Density::Compact => {
            let amount = done_of_total(v);
            let stage =
                format::ellipsize_end(&v.progress.stage, w.saturating_sub(amount.len() + 2));
            super::split_row(Line::raw(stage), Line::raw(amount), row(0), buf);
            let suffix = format!(" {pct} {}", speed(v)).trim_end().to_string();
            let bar_w = w.saturating_sub(suffix.chars().count());
            let mut spans = bar(v.fraction().unwrap_or(0.0), bar_w, t);
            spans.push(Span::raw(suffix));
            Line::from(spans).render(row(1), buf);
        }
        Density::Normal => {
            let stage = format::ellipsize_end(&v.progress.stage, w.saturating_sub(8));
            super::split_row(Line::styled(stage, t.title()), Line::raw(pct), row(0), buf);
            Line::from(bar(v.fraction().unwrap_or(0.0), w, t)).render(row(1), buf);
            let mut detail = done_of_total(v);
            let s = speed(v);
            if !s.is_empty() {
                detail = format!("{detail} · {s}");
            }
            Line::styled(detail, t.text()).render(row(2), buf);
        }
    }
}
