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
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scroll {
    Page,
    Rows(u16),
}

/// Rows one mouse-wheel notch scrolls.
pub const WHEEL_ROWS: u16 = 3;

pub fn action_for_key(key: KeyEvent) -> Option<Action> {
    // Releases come only on terminals with the kitty protocol (and Windows); act once.
    if key.kind == KeyEventKind::Release {
        return None;
    }
    let ctrl = key.modifiers.contains(KeyModifiers::CONTROL);
    Some(match key.code {
        KeyCode::Char('c') if ctrl => Action::Quit,
        _ if ctrl => return None,
        KeyCode::Char('q') => Action::Quit,
        KeyCode::Char('m') => Action::ToggleMute,
        KeyCode::Char('e') => Action::ToggleEcho,
        KeyCode::Char(' ') => Action::PushToTalk,
        KeyCode::Char('r') => Action::Reset,
        KeyCode::Char('?') => Action::ToggleHelp,
        KeyCode::Char('p') => Action::TogglePersonaCard,
        KeyCode::Esc => Action::CloseOverlay,
        KeyCode::PageUp => Action::ScrollUp(Scroll::Page),
        KeyCode::PageDown => Action::ScrollDown(Scroll::Page),
        KeyCode::Up => Action::ScrollUp(Scroll::Rows(1)),
        KeyCode::Down => Action::ScrollDown(Scroll::Rows(1)),
        KeyCode::Home => Action::ScrollTop,
        KeyCode::End => Action::ScrollBottom,
        KeyCode::F(n @ 1..=12) => Action::Persona(n),
        KeyCode::Tab => Action::NextPersona,
        KeyCode::BackTab => Action::PrevPersona,
        _ => return None,
    })
}

pub fn action_for_mouse(m: MouseEvent) -> Option<Action> {
    match m.kind {
        MouseEventKind::ScrollUp => Some(Action::ScrollUp(Scroll::Rows(WHEEL_ROWS))),
        MouseEventKind::ScrollDown => Some(Action::ScrollDown(Scroll::Rows(WHEEL_ROWS))),
        _ => None,
    }
}

/// The help overlay's rows: keys, then what they do.
pub const HELP: &[(&str, &str)] = &[
    ("q  Ctrl-C", "quit"),
    ("m", "mute / unmute the mic"),
    ("r", "reset / restart engine"),
    ("e", "echo cancellation on/off"),
    ("Space", "push-to-talk mic"),
    ("PgUp PgDn", "scroll (↑ ↓ wheel: rows)"),
    ("Home End", "oldest / follow newest"),
    ("? Esc", "this help / close it"),
    ("F1-F12 Tab", "pick / cycle persona"),
    ("p", "persona card"),
];

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
        let mut release = key(KeyCode::Char('q'), KeyModifiers::NONE);
        release.kind = KeyEventKind::Release;
        assert_eq!(action_for_key(release), None);
    }
}
