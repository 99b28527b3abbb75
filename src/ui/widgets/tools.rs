//! The tools overlay (`t`): every tool the session has, where it comes from, whether
//! the LLM is offered it under the active persona and whether it asks first; or why
//! there are none.

use crate::tools::{Offer, SharedTools};
use crate::ui::state::UiState;
use ratatui::buffer::Buffer;
use ratatui::layout::Rect;
use ratatui::text::Line;
use ratatui::widgets::{Block, Borders, Clear, Paragraph, Widget, Wrap};

/// What the overlay says when the engine cannot call tools at all.
pub const NO_TOOLS_ENGINE: &str =
    "Moshi and PersonaPlex cannot call tools: they speak as they listen, with no turn to act in. The cascade can (--engine cascade).";

pub fn render(state: &UiState, area: Rect, buf: &mut Buffer) {
    let t = &state.theme;
    let lines: Vec<Line> = match &state.tools.toolbox {
        Some(SharedTools(Some(tb))) => {
            let persona = state.active_persona();
            let listing = tb.listing(persona.tools.as_deref());
            let offered = listing.iter().filter(|t| t.offer == Offer::Offered).count();
            let head = format!(
                " {}: {offered} of {} tools offered",
                persona.name,
                listing.len()
            );
            std::iter::once(Line::styled(head, t.title()))
                .chain(
                    listing
                        .iter()
                        .map(|l| Line::styled(format!(" {}", l.line(tb.access())), t.text())),
                )
                .collect()
        }
        Some(SharedTools(None)) => vec![Line::styled(
            " No tools: configure MCP servers in mcp.json, give --tools-access, or list `tools` in a persona.",
            t.text(),
        )],
        None => vec![Line::styled(format!(" {NO_TOOLS_ENGINE}"), t.text())],
    };
    let w = area.width.saturating_sub(4).min(100);
    let h = (lines.len() as u16 + 4).min(area.height);
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
        .title(Line::styled(" tools ", t.title()))
        .title_bottom(Line::styled(" o unfolds results · Esc closes ", t.dim()).right_aligned());
    Paragraph::new(lines)
        .wrap(Wrap { trim: false })
        .block(block)
        .render(popup, buf);
}
