//! Everything the UI thread reacts to arrives as one `AppEvent` on one crossbeam
//! channel: engine events, terminal input and ticks. Tests drive the whole UI by
//! sending these.

use crate::bus::EngineEvent;
use ratatui::crossterm::event::{Event, KeyEvent, MouseEvent};

#[derive(Debug, Clone, PartialEq)]
pub enum AppEvent {
    Engine(EngineEvent),
    Key(KeyEvent),
    Mouse(MouseEvent),
    /// The terminal's new size in columns and rows.
    Resize(u16, u16),
    /// Sample the audio meters now. The main loop also ticks by itself.
    Tick,
    /// Audio peaks since the last sample (linear, 0..=1), for the visualizer.
    /// The main loop makes these from `Meters` on its tick.
    Levels {
        mic: f32,
        out: f32,
    },
    /// The process's resident memory in bytes, sampled on a slow tick.
    Memory(u64),
    /// Text pasted into the terminal (bracketed paste), for the typed-turn editor.
    Paste(String),
    /// The devices the sound system offers, for the device picker.
    Devices(Vec<crate::bus::DeviceEntry>),
    /// The picker's input levels since the last sample: (index in its list, peak).
    ProbeLevels(Vec<(usize, f32)>),
}

impl From<EngineEvent> for AppEvent {
    fn from(e: EngineEvent) -> Self {
        Self::Engine(e)
    }
}

impl AppEvent {
    /// Terminal input as the UI wants it; `None` for what it ignores (focus).
    pub fn from_terminal(e: Event) -> Option<Self> {
        match e {
            Event::Key(k) => Some(Self::Key(k)),
            Event::Mouse(m) => Some(Self::Mouse(m)),
            Event::Resize(w, h) => Some(Self::Resize(w, h)),
            Event::Paste(text) => Some(Self::Paste(text)),
            _ => None,
        }
    }
}
