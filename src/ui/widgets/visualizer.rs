//! Scrolling level bars, the user's above the assistant's, newest on the right.
//! A bar takes its speaker's colour while that side counts as voice, dim otherwise.

use crate::persona::VisualizerStyle;
use crate::ui::state::{LevelSample, UiState};
use crate::ui::theme::Speaker;
use ratatui::buffer::Buffer;
use ratatui::layout::Rect;
use ratatui::text::Line;
use ratatui::widgets::Widget;

/// Levels below this many dB under full scale draw nothing.
const FLOOR_DB: f32 = 54.0;
const EIGHTHS: [char; 9] = [' ', '▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];
const SHADES: [char; 9] = [' ', ' ', '░', '░', '▒', '▒', '▓', '▓', '█'];
const DOTS: [char; 9] = [' ', '⡀', '⣀', '⣄', '⣤', '⣦', '⣶', '⣷', '⣿'];

/// A cell filled `eighths`/8, in the persona's visualizer style.
pub fn glyph(style: VisualizerStyle, eighths: usize) -> char {
    let table = match style {
        VisualizerStyle::Bars => &EIGHTHS,
        VisualizerStyle::Shade => &SHADES,
        VisualizerStyle::Dots => &DOTS,
    };
    table[eighths.min(8)]
}

/// A peak (linear) as a bar height between 0 and 1, on a dB scale so speech
/// at ordinary levels fills a useful part of the bar.
pub fn bar_height(peak: f32) -> f32 {
    if peak <= 0.0 {
        return 0.0;
    }
    ((20.0 * peak.log10() + FLOOR_DB) / FLOOR_DB).clamp(0.0, 1.0)
}

pub fn label_width(state: &UiState) -> u16 {
    (state.persona.chars().count().clamp(3, 8) + 1) as u16
}

pub fn render(state: &UiState, area: Rect, buf: &mut Buffer) {
    let per = area.height / 2;
    if per == 0 {
        return;
    }
    let label_w = label_width(state).min(area.width);
    let mic_label = if state.muted {
        "you✕".to_string()
    } else {
        "you".to_string()
    };
    let bands = [
        (Speaker::User, mic_label, area.y),
        (
            Speaker::Assistant,
            state.persona.chars().take(8).collect::<String>(),
            area.y + per,
        ),
    ];
    let cols = (area.width - label_w) as usize;
    let skip = state.levels.len().saturating_sub(cols);
    let start_x = area.x + label_w + (cols - (state.levels.len() - skip)) as u16;
    for (who, label, top) in bands {
        Line::styled(label, state.theme.speaker(who))
            .render(Rect::new(area.x, top, label_w, 1), buf);
        for (i, s) in state.levels.iter().skip(skip).enumerate() {
            let (level, voice) = pick(s, who);
            let style = state.theme.level(who, voice);
            let total = (bar_height(level) * per as f32 * 8.0).round() as u16;
            for r in 0..per {
                let fill = total.saturating_sub(r * 8).min(8) as usize;
                if fill == 0 {
                    break;
                }
                let cell = &mut buf[(start_x + i as u16, top + per - 1 - r)];
                cell.set_char(glyph(state.visualizer, fill))
                    .set_style(style);
            }
        }
    }
}

fn pick(s: &LevelSample, who: Speaker) -> (f32, bool) {
    match who {
        Speaker::User => (s.mic, s.mic_voice),
        Speaker::Assistant => (s.out, s.out_voice),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bar_height_is_logarithmic() {
        assert_eq!(bar_height(0.0), 0.0);
        assert_eq!(bar_height(1.0), 1.0);
        assert!((bar_height(0.1) - (34.0 / 54.0)).abs() < 1e-4);
        assert_eq!(bar_height(1e-4), 0.0);
    }
}
