//! Keys and mouse to actions. One table, also the source of the help overlay.

use ratatui::crossterm::event::{
    KeyCode, KeyEvent, KeyEventKind, KeyModifiers, MouseEvent, MouseEventKind,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Quit,
    ToggleMute,
    /// Echo cancellation on / off (`e`).
    ToggleEcho,
    Reset,
    ToggleHelp,
    CloseOverlay,
    /// Scroll the feed up or down by this many rows.
    ScrollUp(Scroll),
    ScrollDown(Scroll),
    ScrollTop,
    /// Back to following the newest line.
    ScrollBottom,
    /// F1..=F12: the persona with that hotkey.
    Persona(u8),
    /// Show or hide the active persona's card.
    TogglePersonaCard,
    NextPersona,
    PrevPersona,
    /// Space: open or close the microphone in push-to-talk mode.
    PushToTalk,
    /// The tools overlay (`t`).
    ToggleTools,
    /// Answer the tool's consent question (`y` / `n`).
    Consent(bool),
    /// Tool results in full or folded to one line (`o`).
    ToggleToolResults,
    /// `/`: type a turn instead of saying it.
    Type,
    /// `d`: the device picker.
    Devices,
    /// `s`: the settings overlay.
    Settings,
    /// Wake mode on / off (`w`).
    ToggleWake,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scroll {
    Page,
    Rows(u16),
}

/// Rows one mouse-wheel notch scrolls.
pub const WHEEL_ROWS: u16 = 3;

/// A key as the table names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Key {
    /// A key without Ctrl (Shift is part of the character or code).
    Code(KeyCode),
    /// Ctrl plus a character.
    Ctrl(char),
    /// F1 to F12: the persona with that hotkey.
    Function,
}

/// One row of the table: the keys, what they do, and how the help overlay says it.
pub struct Binding {
    pub label: &'static str,
    pub help: &'static str,
    pub keys: &'static [(Key, Action)],
}

const fn ch(c: char) -> Key {
    Key::Code(KeyCode::Char(c))
}

/// The one key table: key handling reads it, and so does the help overlay.
pub const KEYS: &[Binding] = &[
    Binding {
        label: "q  Ctrl-C",
        help: "quit",
        keys: &[(ch('q'), Action::Quit), (Key::Ctrl('c'), Action::Quit)],
    },
    Binding {
        label: "m",
        help: "mute / unmute the mic",
        keys: &[(ch('m'), Action::ToggleMute)],
    },
    Binding {
        label: "r",
        help: "reset / restart engine",
        keys: &[(ch('r'), Action::Reset)],
    },
    Binding {
        label: "e",
        help: "echo cancellation on/off",
        keys: &[(ch('e'), Action::ToggleEcho)],
    },
    Binding {
        label: "/",
        help: "type a turn (cascade)",
        keys: &[(ch('/'), Action::Type)],
    },
    Binding {
        label: "d",
        help: "devices (switch live)",
        keys: &[(ch('d'), Action::Devices)],
    },
    Binding {
        label: "s",
        help: "settings (saved)",
        keys: &[(ch('s'), Action::Settings)],
    },
    Binding {
        label: "Space",
        help: "push-to-talk mic",
        keys: &[(ch(' '), Action::PushToTalk)],
    },
    Binding {
        label: "w",
        help: "wake word on/off",
        keys: &[(ch('w'), Action::ToggleWake)],
    },
    Binding {
        label: "PgUp PgDn",
        help: "scroll (↑ ↓ wheel: rows)",
        keys: &[
            (Key::Code(KeyCode::PageUp), Action::ScrollUp(Scroll::Page)),
            (
                Key::Code(KeyCode::PageDown),
                Action::ScrollDown(Scroll::Page),
            ),
            (Key::Code(KeyCode::Up), Action::ScrollUp(Scroll::Rows(1))),
            (
                Key::Code(KeyCode::Down),
                Action::ScrollDown(Scroll::Rows(1)),
            ),
        ],
    },
    Binding {
        label: "Home End",
        help: "oldest / follow newest",
        keys: &[
            (Key::Code(KeyCode::Home), Action::ScrollTop),
            (Key::Code(KeyCode::End), Action::ScrollBottom),
        ],
    },
    Binding {
        label: "? Esc",
        help: "this help / close it",
        keys: &[
            (ch('?'), Action::ToggleHelp),
            (Key::Code(KeyCode::Esc), Action::CloseOverlay),
        ],
    },
    Binding {
        label: "F1-F12 Tab",
        help: "pick / cycle persona",
        keys: &[
            (Key::Function, Action::Persona(1)),
            (Key::Code(KeyCode::Tab), Action::NextPersona),
            (Key::Code(KeyCode::BackTab), Action::PrevPersona),
        ],
    },
    Binding {
        label: "p",
        help: "persona card",
        keys: &[(ch('p'), Action::TogglePersonaCard)],
    },
    Binding {
        label: "t y n o",
        help: "tools / consent / unfold",
        keys: &[
            (ch('t'), Action::ToggleTools),
            (ch('y'), Action::Consent(true)),
            (ch('n'), Action::Consent(false)),
            (ch('o'), Action::ToggleToolResults),
        ],
    },
];

pub fn action_for_key(key: KeyEvent) -> Option<Action> {
    // Releases come only on terminals with the kitty protocol (and Windows); act once.
    if key.kind == KeyEventKind::Release {
        return None;
    }
    let ctrl = key.modifiers.contains(KeyModifiers::CONTROL);
    KEYS.iter()
        .flat_map(|b| b.keys)
        .find_map(|&(k, action)| match (k, key.code) {
            (Key::Ctrl(c), KeyCode::Char(got)) if ctrl && got == c => Some(action),
            (Key::Code(code), got) if !ctrl && code == got => Some(action),
            (Key::Function, KeyCode::F(n @ 1..=12)) if !ctrl => Some(Action::Persona(n)),
            _ => None,
        })
}

pub fn action_for_mouse(m: MouseEvent) -> Option<Action> {
    match m.kind {
        MouseEventKind::ScrollUp => Some(Action::ScrollUp(Scroll::Rows(WHEEL_ROWS))),
        MouseEventKind::ScrollDown => Some(Action::ScrollDown(Scroll::Rows(WHEEL_ROWS))),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(code: KeyCode, mods: KeyModifiers) -> KeyEvent {
        KeyEvent::new(code, mods)
    }

    #[test]
    fn keys_map_to_actions() {
        assert_eq!(
            action_for_key(key(KeyCode::Char('q'), KeyModifiers::NONE)),
            Some(Action::Quit)
        );
        assert_eq!(
            action_for_key(key(KeyCode::Char('c'), KeyModifiers::CONTROL)),
            Some(Action::Quit)
        );
        assert_eq!(
            action_for_key(key(KeyCode::Char('c'), KeyModifiers::NONE)),
            None
        );
        assert_eq!(
            action_for_key(key(KeyCode::Char('m'), KeyModifiers::CONTROL)),
            None
        );
        assert_eq!(
            action_for_key(key(KeyCode::F(3), KeyModifiers::NONE)),
            Some(Action::Persona(3))
        );
        assert_eq!(
            action_for_key(key(KeyCode::BackTab, KeyModifiers::SHIFT)),
            Some(Action::PrevPersona)
        );
        assert_eq!(
            action_for_key(key(KeyCode::Char('x'), KeyModifiers::NONE)),
            None
        );
        let mut release = key(KeyCode::Char('q'), KeyModifiers::NONE);
        release.kind = KeyEventKind::Release;
        assert_eq!(action_for_key(release), None);
    }

    #[test]
    fn every_key_in_the_table_does_what_its_row_says() {
        for b in KEYS {
            for &(k, action) in b.keys {
                let ev = match k {
                    Key::Code(c) => key(c, KeyModifiers::NONE),
                    Key::Ctrl(c) => key(KeyCode::Char(c), KeyModifiers::CONTROL),
                    Key::Function => key(KeyCode::F(1), KeyModifiers::NONE),
                };
                assert_eq!(action_for_key(ev), Some(action), "{} ({})", b.label, b.help);
            }
        }
    }
}
