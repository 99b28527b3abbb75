//! The activity feed: timestamped rows, assistant words in the persona's colour,
//! user markers in the user's, system lines by severity with their remedies.

use crate::bus::Severity;
use crate::ui::feed::{gutter, EntryKind, FeedEntry, Row, RowPart};
use crate::ui::format;
use crate::ui::layout::Density;
use crate::ui::state::UiState;
use crate::ui::theme::{Speaker, Theme};
use ratatui::buffer::Buffer;
use ratatui::layout::Rect;
use ratatui::style::Style;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Widget};

/// The glyph before an entry, and the style of its glyph and body.
pub fn marker(kind: &EntryKind, t: &Theme) -> (&'static str, Style, Style) {
    match kind {
        EntryKind::Assistant => (
            "◆",
            t.speaker(Speaker::Assistant),
            t.speaker(Speaker::Assistant),
        ),
        EntryKind::User { .. } | EntryKind::Said => {
            ("●", t.speaker(Speaker::User), t.speaker(Speaker::User))
        }
        EntryKind::Typed => ("⌨", t.speaker(Speaker::User), t.speaker(Speaker::User)),
        EntryKind::Success => ("✓", t.ok(), t.text()),
        EntryKind::Notice(Severity::Info) => ("•", t.severity(Severity::Info), t.text()),
        EntryKind::Notice(s @ Severity::Warning) => ("!", t.severity(*s), t.severity(*s)),
        EntryKind::Notice(s @ Severity::Error) => ("✗", t.severity(*s), t.severity(*s)),
        EntryKind::Persona => ("◈", t.persona_name(), t.speaker(Speaker::Assistant)),
        EntryKind::Previous => ("◇", t.dim(), t.dim()),
        EntryKind::Tool => ("⚙", t.key(), t.text()),
    }
}

fn row_line<'a>(entry: &FeedEntry, row: Row, t: &Theme) -> Line<'a> {
    let (glyph, glyph_style, body_style) = marker(&entry.kind, t);
    let indent = " ".repeat(gutter(entry));
    match row.part {
        RowPart::First => Line::from(vec![
            Span::styled(format::timestamp(entry.at), t.timestamp()),
            Span::raw(" "),
            Span::styled(glyph, glyph_style),
            Span::raw(" "),
            Span::styled(row.text, body_style),
        ]),
        RowPart::Body => Line::from(vec![Span::raw(indent), Span::styled(row.text, body_style)]),
        RowPart::Remedy { first } => Line::from(vec![
            Span::raw(indent),
            Span::styled(if first { "↳ " } else { "  " }, t.remedy()),
            Span::styled(row.text, t.remedy()),
        ]),
    }
}

pub fn render(state: &UiState, density: Density, frame: Rect, inner: Rect, buf: &mut Buffer) {
    let t = &state.theme;
    let height = inner.height as usize;
    let below = state.feed.rows_below(inner.width, height);
    if density == Density::Normal {
        let mut block = Block::new()
            .borders(Borders::ALL)
            .border_type(t.border_type)
            .border_style(t.border())
            .title(Line::styled(" activity ", t.title()));
        if below > 0 {
            block = block.title_bottom(
                Line::styled(format!(" ↓ {below} more · End follows "), t.key()).right_aligned(),
            );
        }
        block.render(frame, buf);
    }
    if state.feed.is_empty() {
        let hint = if state.phase == crate::ui::state::Phase::Loading {
            "starting…"
        } else {
            "say something"
        };
        Line::styled(hint, t.dim()).render(Rect { height: 1, ..inner }, buf);
        return;
    }
    for (i, (entry, row)) in state
        .feed
        .visible(inner.width, height)
        .into_iter()
        .enumerate()
    {
        let r = Rect::new(inner.x, inner.y + i as u16, inner.width, 1);
        row_line(entry, row, t).render(r, buf);
    }
    if density == Density::Compact && below > 0 && inner.height > 0 {
        // No border to carry the hint: put it over the last row's end.
        let hint = format!(" ↓{below} ");
        let w = hint.chars().count() as u16;
        if w < inner.width {
            let r = Rect::new(inner.right() - w, inner.bottom() - 1, w, 1);
            Line::styled(hint, t.key()).render(r, buf);
        }
    }
}
