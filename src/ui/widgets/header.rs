//! The header: persona, conversation state, model and device; audio endpoints when there is room.

use crate::bus::{Endpoint, Severity};
use crate::ui::format;
use crate::ui::layout::Density;
use crate::ui::state::{ConvState, UiState};
use crate::ui::theme::Speaker;
use ratatui::buffer::Buffer;
use ratatui::layout::Rect;
use ratatui::style::Style;
use ratatui::text::{Line, Span};
use ratatui::widgets::Widget;

const ENGINE_LABEL: &str = " engine ";

/// The state's glyph, words and style.
pub fn state_badge(state: &UiState) -> (&'static str, Style) {
    let t = &state.theme;
    match state.conv_state() {
        ConvState::Loading | ConvState::Priming => ("◌", t.severity(Severity::Info)),
        ConvState::Thinking => ("◔", t.speaker(Speaker::Assistant)),
        ConvState::Acting => ("⚙", t.speaker(Speaker::Assistant)),
        ConvState::Asking => ("?", t.alarm()),
        ConvState::Idle => ("◌", t.dim()),
        ConvState::Listening if state.user_speaking() => ("●", t.speaker(Speaker::User)),
        ConvState::Listening => ("○", t.text()),
        ConvState::Speaking => ("◆", t.speaker(Speaker::Assistant)),
        ConvState::Both => ("◆●", t.both_talking()),
        ConvState::Reconnecting => ("⟳", t.alarm()),
        ConvState::Muted => ("✕", t.alarm()),
        ConvState::Waiting => ("◌", t.dim()),
        ConvState::Degraded => ("!", t.alarm()),
        ConvState::Error => ("✗", t.severity(Severity::Error)),
        ConvState::Stopped => ("■", t.dim()),
    }
}

/// The active persona's wake phrases as the user would say them: `"Jarvis"`.
fn wake_names(state: &UiState) -> String {
    let capitalised: Vec<String> = state
        .personas
        .get(state.active)
        .map(|p| p.wake.as_slice())
        .unwrap_or_default()
        .iter()
        .map(|w| {
            let mut c = w.chars();
            c.next()
                .map(|f| f.to_uppercase().chain(c).collect())
                .unwrap_or_default()
        })
        .collect();
    crate::ui::words::quoted_list(&capitalised)
}

pub fn render(state: &UiState, density: Density, area: Rect, buf: &mut Buffer) {
    let t = &state.theme;
    let (glyph, style) = state_badge(state);
    let conv = state.conv_state();
    let mut left = vec![
        Span::raw(" "),
        Span::styled(state.persona.clone(), t.persona_name()),
        Span::raw("  "),
        Span::styled(format!("{glyph} {}", conv.label()), style),
    ];
    if conv == ConvState::Waiting {
        left.push(Span::styled(format!(" for {}", wake_names(state)), style));
    }
    if let Some(why) = state.degraded_reason() {
        left.push(Span::styled(format!(": {why}"), style));
    }
    if state.muted && conv != ConvState::Muted {
        left.push(Span::styled("  ✕ muted", t.alarm()));
    }
    match state.echo_cancel {
        Some(true) => left.push(Span::styled("  aec", t.dim())),
        Some(false) => left.push(Span::styled("  aec off", t.alarm())),
        None => {}
    }
    let model = match &state.model {
        Some(m) if density == Density::Compact => format!("{} · {} ", m.name, m.device),
        Some(m) if m.dtype.is_empty() => format!("{} · {} ", m.name, m.device),
        Some(m) => format!("{} · {} · {} ", m.name, m.device, m.dtype),
        None => String::new(),
    };
    let row = Rect { height: 1, ..area };
    super::split_row(Line::from(left), Line::styled(model, t.dim()), row, buf);

    if density == Density::Normal && area.height > 1 {
        let name = |e: &Option<Endpoint>| match e {
            None => "…".to_string(),
            Some(Endpoint::Device(d)) => d.clone(),
            Some(Endpoint::File(f)) => f.clone(),
            Some(Endpoint::Missing(_)) => "none".into(),
            Some(Endpoint::Off) => "off".into(),
        };
        let half = (area.width as usize).saturating_sub(16) / 2;
        let line = Line::from(vec![
            Span::styled(" mic ", t.dim()),
            Span::raw(format::ellipsize_start(&name(&state.input), half)),
            Span::styled("  →  speaker ", t.dim()),
            Span::raw(format::ellipsize_start(&name(&state.output), half)),
        ]);
        let row = Rect {
            y: area.y + 1,
            height: 1,
            ..area
        };
        // The engine picked for this machine, and why, comes first; the endpoints (also
        // in the feed) keep the end of the row when they fit.
        match &state.engine {
            Some(why) => {
                let room = (row.width as usize).saturating_sub(ENGINE_LABEL.len() + 1);
                let engine = Line::from(vec![
                    Span::styled(ENGINE_LABEL, t.dim()),
                    Span::raw(format::ellipsize_end(why, room)),
                ]);
                let rest = (row.width as usize).saturating_sub(engine.width());
                if line.width() + 2 <= rest {
                    super::split_row(engine, line, row, buf);
                } else {
                    engine.render(row, buf);
                }
            }
            None => line.render(row, buf),
        }
    }
}
