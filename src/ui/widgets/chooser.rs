//! The first-start chooser, over the whole screen: each engine with its download,
//! memory and speed on this machine. Below the room for all of them, the selected one
//! alone, so a tiny terminal still shows what Enter would start.

use crate::ui::chooser::{Chooser, ChooserOption};
use crate::ui::format::ellipsize_end;
use crate::ui::theme::Theme;
use ratatui::buffer::Buffer;
use ratatui::layout::Rect;
use ratatui::style::Style;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Clear, Widget};
use unicode_width::UnicodeWidthStr;

/// The full view's widest box.
const MAX_WIDTH: u16 = 100;

pub fn render(theme: &Theme, chooser: &Chooser, area: Rect, buf: &mut Buffer) {
    Clear.render(area, buf);
    buf.set_style(area, theme.base());
    // Wide screens get a box of a readable width, centred.
    let width = area.width.min(MAX_WIDTH);
    let full = full_lines(theme, chooser, width.saturating_sub(2));
    if area.width >= 50 && full.len() as u16 + 2 <= area.height {
        let height = full.len() as u16 + 2;
        let area = Rect::new(
            area.x + (area.width - width) / 2,
            area.y + (area.height - height) / 2,
            width,
            height,
        );
        let keys = if chooser.editing_url() {
            " type the address · Enter connect · Esc back · Ctrl-C quit "
        } else {
            " ↑↓ or 1-4 choose · Enter start · q quit "
        };
        let block = Block::new()
            .borders(Borders::ALL)
            .border_type(theme.border_type)
            .border_style(theme.key())
            .title(Line::styled(" choose an engine ", theme.title()))
            .title_bottom(Line::styled(keys, theme.dim()));
        let inner = block.inner(area);
        block.render(area, buf);
        draw_lines(full, inner, buf);
    } else {
        draw_lines(
            compact_lines(theme, chooser, area.width, area.height),
            area,
            buf,
        );
    }
}

fn draw_lines(lines: Vec<Line<'static>>, area: Rect, buf: &mut Buffer) {
    for (i, line) in lines.into_iter().take(area.height as usize).enumerate() {
        line.render(Rect::new(area.x, area.y + i as u16, area.width, 1), buf);
    }
}

fn speed_style(theme: &Theme, o: &ChooserOption) -> Style {
    match o.realtime {
        Some(true) => theme.ok(),
        Some(false) => theme.alarm(),
        None => theme.text(),
    }
}

/// Every option with its figures, the recommendation's reason wrapped below.
fn full_lines(theme: &Theme, c: &Chooser, width: u16) -> Vec<Line<'static>> {
    let w = width as usize;
    let fit = |s: &str, room: usize| ellipsize_end(s, room);
    let mut lines = vec![
        Line::styled(
            fit(
                " No weights here yet. Pick what to run; the figures are for this machine:",
                w,
            ),
            theme.text(),
        ),
        Line::styled(fit(&format!(" {}.", c.setup.machine), w), theme.dim()),
        Line::raw(""),
    ];
    for (i, o) in c.setup.options.iter().enumerate() {
        let selected = i == c.selected;
        let marker = if selected { " ▸ " } else { "   " };
        let mut title = vec![
            Span::styled(marker, theme.key()),
            Span::styled(format!("{} ", i + 1), theme.key()),
            Span::styled(
                o.title.clone(),
                if selected {
                    theme.persona_name()
                } else {
                    theme.text()
                },
            ),
        ];
        if i == c.setup.recommended {
            title.push(Span::styled("  recommended", theme.ok()));
        }
        lines.push(Line::from(title));
        let indent = "     ";
        let room = w.saturating_sub(indent.len());
        let figures = format!("{} · {} · ", o.download, o.memory);
        let speed_room = room.saturating_sub(figures.width());
        lines.push(Line::from(vec![
            Span::raw(indent),
            Span::styled(fit(&figures, room), theme.dim()),
            Span::styled(fit(&o.speed, speed_room), speed_style(theme, o)),
        ]));
        if o.takes_url {
            let cursor = if selected { "█" } else { "" };
            let mut url = vec![
                Span::raw(indent),
                Span::styled("address ", theme.dim()),
                Span::styled(format!("{}{cursor}", c.url), theme.text()),
            ];
            if let (true, Some(e)) = (selected, &c.error) {
                url.push(Span::styled(format!("  {e}"), theme.alarm()));
            }
            lines.push(Line::from(url));
        } else {
            lines.push(Line::from(vec![
                Span::raw(indent),
                Span::styled(fit(&o.note, room), theme.dim()),
            ]));
        }
    }
    lines.push(Line::raw(""));
    for row in crate::ui::feed::wrap_text(&c.setup.why, w.saturating_sub(2).max(1)) {
        lines.push(Line::styled(format!(" {row}"), theme.dim()));
    }
    lines
}

/// The selected option alone, most important rows first, for any size down to 1x1.
fn compact_lines(theme: &Theme, c: &Chooser, width: u16, height: u16) -> Vec<Line<'static>> {
    let w = width as usize;
    let fit = |s: &str| ellipsize_end(s, w);
    let Some(o) = c.current() else {
        return vec![Line::styled(fit("no engine to choose"), theme.alarm())];
    };
    let n = c.setup.options.len();
    let head = Line::styled(
        fit(&format!("▸ {} {}/{n}", o.title, c.selected + 1)),
        theme.persona_name(),
    );
    let keys = if c.editing_url() {
        "type · Enter · Esc"
    } else {
        "↑↓ Enter start q"
    };
    let keys = Line::styled(fit(keys), theme.dim());
    // The rest by importance; what does not fit is left out.
    let mut body = Vec::new();
    if o.takes_url {
        let url = match &c.error {
            Some(e) => Line::styled(fit(e), theme.alarm()),
            // The end is where the typing is.
            None => Line::styled(
                crate::ui::format::ellipsize_start(&format!("{}█", c.url), w),
                theme.text(),
            ),
        };
        body.push(url);
    }
    body.push(Line::styled(fit(&o.download), theme.text()));
    body.push(Line::styled(fit(&o.speed_short), speed_style(theme, o)));
    body.push(Line::styled(fit(&o.memory_short), theme.text()));
    if !o.takes_url {
        body.push(Line::styled(fit(&o.note), theme.dim()));
    }
    // With room to spare, the others, so the keys have something to move to.
    body.push(Line::raw(""));
    for (i, other) in c.setup.options.iter().enumerate() {
        let mark = if i == c.selected { "▸" } else { " " };
        body.push(Line::styled(
            fit(&format!("{mark}{} {}", i + 1, other.title)),
            theme.text(),
        ));
    }
    let h = height as usize;
    let mut lines = vec![head];
    if h >= 2 {
        lines.extend(body.into_iter().take(h.saturating_sub(2)));
        lines.push(keys);
    }
    lines
}
