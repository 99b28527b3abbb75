//! The persona card (`p`): who is speaking, how it samples, its role text,
//! and every persona's key.

use crate::persona::hotkey_label;
use crate::ui::state::UiState;
use ratatui::buffer::Buffer;
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Clear, Paragraph, Widget, Wrap};

pub fn render(state: &UiState, area: Rect, buf: &mut Buffer) {
    let t = &state.theme;
    let p = state.active_persona();
    let w = area.width.min(64);
    let mut lines = vec![
        Line::from(vec![
            Span::styled(p.name.clone(), t.persona_name()),
            Span::styled(format!("  {}", hotkey_label(p.hotkey)), t.key()),
        ]),
        Line::styled(p.description.clone(), t.text()),
        Line::styled(
            format!(
                "voice {} · temperature {} / text {} · top-k {}{}",
                p.voice.weights.describe(),
                p.voice.temperature,
                p.voice.text_temperature,
                p.voice.top_k,
                if p.greeting { " · greets" } else { "" }
            ),
            t.dim(),
        ),
    ];
    if !p.prompt.is_empty() {
        lines.push(Line::styled(
            format!("“{}”", p.prompt),
            t.speaker(crate::ui::theme::Speaker::Assistant),
        ));
    }
    if !p.prompt.is_empty() || p.voice_prompt.is_some() {
        lines.push(Line::styled(
            crate::ui::words::prompt_reach(p.voice_prompt.as_deref()),
            t.dim(),
        ));
    }
    lines.push(Line::styled(format!("from {}", p.source), t.dim()));
    let mut keys = vec![];
    for (i, q) in state.personas.iter().enumerate() {
        let style = if i == state.active {
            t.persona_name()
        } else {
            t.text()
        };
        keys.push(Span::styled(
            format!("{} ", hotkey_label(q.hotkey)),
            t.key(),
        ));
        keys.push(Span::styled(format!("{}  ", q.name), style));
    }
    lines.push(Line::from(keys));
    let inner_w = w.saturating_sub(2).max(1);
    // Rows once wrapped (words may wrap a little earlier; one spare row covers it).
    let rows: usize = lines
        .iter()
        .map(|l| l.width().max(1).div_ceil(inner_w as usize))
        .sum();
    let para = Paragraph::new(lines).wrap(Wrap { trim: true });
    let h = (rows as u16 + 3).min(area.height);
    let popup = Rect::new(
        area.x + (area.width - w) / 2,
        area.y + (area.height - h) / 2,
        w,
        h,
    );
    Clear.render(popup, buf);
    buf.set_style(popup, t.base());
    let block = Block::new()
        .borders(Borders::ALL)
        .border_type(t.border_type)
        .border_style(t.key())
        .title(Line::styled(" persona ", t.title()))
        .title_bottom(Line::styled(" Tab next · Esc closes ", t.dim()).right_aligned());
    para.block(block).render(popup, buf);
}
