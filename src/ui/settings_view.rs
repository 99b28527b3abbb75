//! The settings overlay (`s`): one row per setting, ↑/↓ to pick a row, ←/→ (or
//! Enter, Space) to change it. Each change applies live where it can (echo
//! cancellation, half-duplex, push-to-talk, wake mode and its threshold, sampling) and
//! is saved to the settings
//! file; the engine takes effect at the next start, and its row says so.

use crate::settings::Settings;
use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyEventKind};

/// The rows, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Row {
    EchoCancel,
    HalfDuplex,
    PushToTalk,
    Wake,
    WakeThreshold,
    Temperature,
    TextTemperature,
    TopK,
    Engine,
}

pub const ROWS: [Row; 9] = [
    Row::EchoCancel,
    Row::HalfDuplex,
    Row::PushToTalk,
    Row::Wake,
    Row::WakeThreshold,
    Row::Temperature,
    Row::TextTemperature,
    Row::TopK,
    Row::Engine,
];

pub const ENGINES: [&str; 3] = ["moshi", "cascade", "loopback"];

/// What runs now (flags, the file and the defaults together).
#[derive(Debug, Clone, PartialEq)]
pub struct Current {
    pub echo_cancel: bool,
    pub half_duplex: bool,
    pub push_to_talk: bool,
    /// Waiting for a wake phrase (`--wake`, `w`).
    pub wake: bool,
    pub wake_threshold: f32,
    pub temperature: f64,
    pub text_temperature: f64,
    pub top_k: usize,
    pub engine: String,
}

impl Row {
    pub fn label(self) -> &'static str {
        match self {
            Row::EchoCancel => "echo cancellation",
            Row::HalfDuplex => "half-duplex",
            Row::PushToTalk => "push-to-talk",
            Row::Wake => "wake word",
            Row::WakeThreshold => "wake threshold",
            Row::Temperature => "audio temperature",
            Row::TextTemperature => "text temperature",
            Row::TopK => "top-k",
            Row::Engine => "engine",
        }
    }

    /// Whether a change applies to this session (else: from the next start).
    pub fn live(self) -> bool {
        self != Row::Engine
    }

    pub fn value(self, c: &Current) -> String {
        let on = |b: bool| if b { "on" } else { "off" }.to_string();
        match self {
            Row::EchoCancel => on(c.echo_cancel),
            Row::HalfDuplex => on(c.half_duplex),
            Row::PushToTalk => on(c.push_to_talk),
            Row::Wake => on(c.wake),
            Row::WakeThreshold => format!("{:.2}", c.wake_threshold),
            Row::Temperature => format!("{:.2}", c.temperature),
            Row::TextTemperature => format!("{:.2}", c.text_temperature),
            Row::TopK => c.top_k.to_string(),
            Row::Engine => c.engine.clone(),
        }
    }

    /// Change `c` one step (`up`: →, Enter, Space; else ←) and note it in `saved`.
    fn step(self, c: &mut Current, saved: &mut Settings, up: bool) {
        let temp =
            |t: f64| ((t + if up { 0.05 } else { -0.05 }).clamp(0.0, 2.0) * 100.0).round() / 100.0;
        match self {
            Row::EchoCancel => {
                c.echo_cancel = !c.echo_cancel;
                saved.echo_cancel = Some(c.echo_cancel);
            }
            Row::HalfDuplex => {
                c.half_duplex = !c.half_duplex;
                saved.half_duplex = Some(c.half_duplex);
            }
            Row::PushToTalk => {
                c.push_to_talk = !c.push_to_talk;
                saved.push_to_talk = Some(c.push_to_talk);
            }
            Row::Wake => {
                c.wake = !c.wake;
                saved.wake = Some(c.wake);
            }
            Row::WakeThreshold => {
                // Steps of 0.01: the scores of a name and of other speech lie close.
                let t = c.wake_threshold + if up { 0.01 } else { -0.01 };
                c.wake_threshold = (t.clamp(0.3, 0.99) * 100.0).round() / 100.0;
                saved.wake_threshold = Some((c.wake_threshold as f64 * 100.0).round() / 100.0);
            }
            Row::Temperature => {
                c.temperature = temp(c.temperature);
                saved.temperature = Some(c.temperature);
            }
            Row::TextTemperature => {
                c.text_temperature = temp(c.text_temperature);
                saved.text_temperature = Some(c.text_temperature);
            }
            Row::TopK => {
                c.top_k = if up {
                    (c.top_k + 10).min(2000)
                } else {
                    c.top_k.saturating_sub(10).max(1)
                };
                saved.top_k = Some(c.top_k);
            }
            Row::Engine => {
                let i = ENGINES.iter().position(|e| *e == c.engine).unwrap_or(0);
                let n = ENGINES.len();
                c.engine = ENGINES[if up { (i + 1) % n } else { (i + n - 1) % n }].into();
                saved.engine = Some(c.engine.clone());
            }
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct SettingsView {
    pub cursor: usize,
}

#[derive(Debug, Clone, PartialEq)]
pub enum SettingsKey {
    Ignored,
    Moved,
    Closed,
    /// This row changed (in `Current` and in the saved settings).
    Changed(Row),
}

impl SettingsView {
    pub fn key(&mut self, key: KeyEvent, c: &mut Current, saved: &mut Settings) -> SettingsKey {
        if key.kind == KeyEventKind::Release {
            return SettingsKey::Ignored;
        }
        match key.code {
            KeyCode::Esc | KeyCode::Char('s') | KeyCode::Char('q') => SettingsKey::Closed,
            KeyCode::Up if self.cursor > 0 => {
                self.cursor -= 1;
                SettingsKey::Moved
            }
            KeyCode::Down if self.cursor + 1 < ROWS.len() => {
                self.cursor += 1;
                SettingsKey::Moved
            }
            KeyCode::Right | KeyCode::Enter | KeyCode::Char(' ') | KeyCode::Left => {
                let row = ROWS[self.cursor];
                row.step(c, saved, key.code != KeyCode::Left);
                SettingsKey::Changed(row)
            }
            _ => SettingsKey::Ignored,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ratatui::crossterm::event::KeyModifiers;

    #[test]
    fn changes_step_the_value_and_note_only_that_row_in_the_file() {
        let mut c = Current {
            echo_cancel: true,
            half_duplex: false,
            push_to_talk: false,
            wake: false,
            wake_threshold: 0.74,
            temperature: 0.8,
            text_temperature: 0.7,
            top_k: 250,
            engine: "moshi".into(),
        };
        let mut saved = Settings::default();
        let mut v = SettingsView { cursor: 0 };
        let k = |code| KeyEvent::new(code, KeyModifiers::NONE);
        for _ in 0..4 {
            v.key(k(KeyCode::Down), &mut c, &mut saved);
        }
        assert_eq!(
            v.key(k(KeyCode::Right), &mut c, &mut saved),
            SettingsKey::Changed(Row::WakeThreshold)
        );
        assert_eq!(c.wake_threshold, 0.75);
        for _ in 0..3 {
            v.key(k(KeyCode::Down), &mut c, &mut saved);
        }
        assert_eq!(
            v.key(k(KeyCode::Left), &mut c, &mut saved),
            SettingsKey::Changed(Row::TopK)
        );
        assert_eq!(c.top_k, 240);
        v.key(k(KeyCode::Down), &mut c, &mut saved);
        v.key(k(KeyCode::Right), &mut c, &mut saved);
        assert_eq!(c.engine, "cascade");
        assert_eq!(
            saved,
            Settings {
                wake_threshold: Some(0.75f64),
                top_k: Some(240),
                engine: Some("cascade".into()),
                ..Default::default()
            }
        );
    }
}
