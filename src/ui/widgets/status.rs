//! The status line: latency, step time and RTF, dropped frames, xruns, memory,
//! then the log path and key hints when there is a second row.

use crate::ui::format;
use crate::ui::layout::Density;
use crate::ui::state::UiState;
use ratatui::buffer::Buffer;
use ratatui::layout::Rect;
use ratatui::style::Style;
use ratatui::text::{Line, Span};
use ratatui::widgets::Widget;
use unicode_width::UnicodeWidthStr;

struct Seg {
    long: String,
    short: String,
    style: Style,
}

fn segments(state: &UiState) -> Vec<Seg> {
    let t = &state.theme;
    let seg = |long: String, short: String, alarm: bool| Seg {
        long,
        short,
        style: if alarm { t.alarm() } else { t.text() },
    };
    let mut v = Vec::new();
    match &state.stats {
        Some(s) => {
            v.push(seg(
                format!("latency {}", format::millis(s.latency_ms)),
                format!("{:.0}ms", s.latency_ms),
                false,
            ));
            v.push(seg(
                format!("step {}", format::millis(state.step_ms_avg)),
                format!("{:.0}ms", state.step_ms_avg),
                false,
            ));
            let slow = state.rtf_avg > 1.0;
            v.push(seg(
                format!("RTF {:.2}", state.rtf_avg),
                format!("×{:.2}", state.rtf_avg),
                slow,
            ));
            v.push(seg(
                format!("dropped {}", s.dropped_frames),
                format!("d{}", s.dropped_frames),
                s.dropped_frames > 0,
            ));
            let x = s.xruns_in + s.xruns_out;
            v.push(seg(
                format!("xruns {}/{}", s.xruns_in, s.xruns_out),
                format!("x{x}"),
                x > 0,
            ));
            if let Some(l) = &s.link {
                for (long, short, alarm) in crate::ui::words::link_segments(l) {
                    v.push(seg(long, short, alarm));
                }
            }
        }
        None => {
            v.push(seg("latency –".into(), "–ms".into(), false));
            v.push(seg("step –".into(), "–".into(), false));
        }
    }
    if let Some(m) = state.memory {
        let short = format::bytes(m)
            .replace(' ', "")
            .replace("iB", "")
            .replace("B", "");
        v.push(seg(format!("mem {}", format::bytes(m)), short, false));
    }
    v
}

/// The widest form of the segments that fits, dropping trailing ones if need be.
fn fit<'a>(segs: &[Seg], width: usize, sep_style: Style) -> Line<'a> {
    for long in [true, false] {
        let sep = if long { " │ " } else { " " };
        for n in (1..=segs.len()).rev() {
            let texts: Vec<&String> = segs[..n]
                .iter()
                .map(|s| if long { &s.long } else { &s.short })
                .collect();
            let w = 1 + texts.iter().map(|s| s.width()).sum::<usize>() + sep.width() * (n - 1);
            // Keep the long form only while it shows everything.
            if w <= width && (n == segs.len() || !long) {
                let mut spans = vec![Span::raw(" ")];
                for (i, (s, text)) in segs.iter().zip(texts).enumerate() {
                    if i > 0 {
                        spans.push(Span::styled(sep, sep_style));
                    }
                    spans.push(Span::styled(text.clone(), s.style));
                }
                return Line::from(spans);
            }
        }
    }
    Line::default()
}

pub fn render(state: &UiState, density: Density, area: Rect, buf: &mut Buffer) {
    let t = &state.theme;
    let w = area.width as usize;
    let row = |i: u16| Rect::new(area.x, area.y + i, area.width, 1);
    let hints = Line::from(vec![
        Span::styled("?", t.key()),
        Span::styled(" help ", t.dim()),
        Span::styled("m", t.key()),
        Span::styled(" mute ", t.dim()),
        Span::styled("r", t.key()),
        Span::styled(" reset ", t.dim()),
        Span::styled("q", t.key()),
        Span::styled(" quit ", t.dim()),
    ]);
    let stats = fit(&segments(state), w, t.dim());
    match density {
        Density::Compact => {
            let short_hint = Line::from(vec![
                Span::styled("?", t.key()),
                Span::styled(" help ", t.dim()),
            ]);
            super::split_row(stats, short_hint, row(0), buf);
        }
        Density::Normal => {
            stats.render(row(0), buf);
            if area.height < 2 {
                return;
            }
            let room = w.saturating_sub(hints.width() + 8);
            let log = match &state.log_path {
                Some(p) => Line::from(vec![
                    Span::styled(" log ", t.dim()),
                    Span::raw(format::ellipsize_start(p, room)),
                ]),
                None => Line::styled(" log: none", t.dim()),
            };
            super::split_row(log, hints, row(1), buf);
        }
    }
}
