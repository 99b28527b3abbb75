//! The device picker (`d`): every input and output of every cpal host, the current
//! ones marked; ↑/↓ move, Enter switches to the device under the cursor, Esc closes.
//! The list comes from the main loop (it asks the sound system); this is its state.

use crate::bus::{DeviceEntry, DeviceSide};
use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyEventKind};

#[derive(Debug, Clone, PartialEq, Default)]
pub struct Picker {
    /// `None` until the main loop has listed the devices.
    pub devices: Option<Vec<DeviceEntry>>,
    pub cursor: usize,
    /// Input levels by index in `devices` (0..=1), from the level probes; an input
    /// with none could not be opened beside the one in use.
    pub levels: Vec<(usize, f32)>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum PickerKey {
    Ignored,
    Changed,
    Closed,
    /// Switch this side to this selector.
    Pick(DeviceSide, String),
}

impl Picker {
    pub fn key(&mut self, key: KeyEvent) -> PickerKey {
        if key.kind == KeyEventKind::Release {
            return PickerKey::Ignored;
        }
        let n = self.devices.as_ref().map_or(0, Vec::len);
        match key.code {
            KeyCode::Esc | KeyCode::Char('d') | KeyCode::Char('q') => PickerKey::Closed,
            KeyCode::Up if self.cursor > 0 => {
                self.cursor -= 1;
                PickerKey::Changed
            }
            KeyCode::Down if self.cursor + 1 < n => {
                self.cursor += 1;
                PickerKey::Changed
            }
            KeyCode::Enter => match self.devices.as_ref().and_then(|d| d.get(self.cursor)) {
                Some(d) => PickerKey::Pick(d.side, d.selector.clone()),
                None => PickerKey::Ignored,
            },
            _ => PickerKey::Ignored,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ratatui::crossterm::event::KeyModifiers;

    fn entry(side: DeviceSide, id: &str) -> DeviceEntry {
        DeviceEntry {
            side,
            host: "PulseAudio".into(),
            selector: format!("pulseaudio:{id}"),
            name: id.into(),
            config: "48000 Hz, 2 ch, f32".into(),
        }
    }

    #[test]
    fn the_cursor_moves_within_the_list_and_enter_picks() {
        let mut p = Picker {
            devices: Some(vec![
                entry(DeviceSide::Microphone, "a.monitor"),
                entry(DeviceSide::Speaker, "b"),
            ]),
            cursor: 0,
            levels: Vec::new(),
        };
        let k = |c| KeyEvent::new(c, KeyModifiers::NONE);
        assert_eq!(p.key(k(KeyCode::Up)), PickerKey::Ignored);
        assert_eq!(p.key(k(KeyCode::Down)), PickerKey::Changed);
        assert_eq!(p.key(k(KeyCode::Down)), PickerKey::Ignored);
        assert_eq!(
            p.key(k(KeyCode::Enter)),
            PickerKey::Pick(DeviceSide::Speaker, "pulseaudio:b".into())
        );
        assert_eq!(p.key(k(KeyCode::Esc)), PickerKey::Closed);
    }
}
