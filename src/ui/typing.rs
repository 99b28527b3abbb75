//! The typed-turn editor (`/`): one line at the bottom of the screen, with the
//! history of what was typed this session (↑/↓). Editing itself (cursor, word moves,
//! deletes, Ctrl-A/E/U/W/K) is `tui-input`'s; this module adds the turn around it.

use ratatui::crossterm::event::{Event, KeyCode, KeyEvent, KeyEventKind, KeyModifiers};
use tui_input::backend::crossterm::to_input_request;
use tui_input::{Input, InputRequest};

/// Most turns kept for ↑/↓.
const HISTORY: usize = 100;

/// What a key did to the editor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TypingKey {
    /// Nothing to show.
    Ignored,
    /// The line or the cursor moved.
    Changed,
    /// Enter on a line with words: send them as the user's turn (the editor closed).
    Send(String),
    /// Esc (the editor closed, the line dropped).
    Cancelled,
}

#[derive(Debug, Default)]
pub struct Typing {
    /// The line being typed, while the editor is open.
    line: Option<Input>,
    /// Turns sent, oldest first.
    history: Vec<String>,
    /// Where ↑/↓ are in the history (`history.len()`: the line being typed), and
    /// that line, kept while browsing.
    browsing: Option<(usize, String)>,
}

impl Typing {
    pub fn is_open(&self) -> bool {
        self.line.is_some()
    }

    pub fn open(&mut self) {
        self.line = Some(Input::default());
        self.browsing = None;
    }

    /// The line and the cursor's column in characters, while open.
    pub fn line(&self) -> Option<(&str, usize)> {
        self.line.as_ref().map(|l| (l.value(), l.visual_cursor()))
    }

    /// Turns sent this session, oldest first.
    pub fn history(&self) -> &[String] {
        &self.history
    }

    /// Pasted text joins the line at the cursor (line breaks as spaces: one turn).
    pub fn paste(&mut self, text: &str) -> TypingKey {
        let Some(line) = self.line.as_mut() else {
            return TypingKey::Ignored;
        };
        for c in text.chars() {
            let c = if c == '\n' || c == '\r' || c == '\t' {
                ' '
            } else {
                c
            };
            if !c.is_control() {
                line.handle(InputRequest::InsertChar(c));
            }
        }
        TypingKey::Changed
    }

    pub fn key(&mut self, key: KeyEvent) -> TypingKey {
        if key.kind == KeyEventKind::Release {
            return TypingKey::Ignored;
        }
        let Some(line) = self.line.as_mut() else {
            return TypingKey::Ignored;
        };
        match key.code {
            KeyCode::Esc => {
                self.line = None;
                TypingKey::Cancelled
            }
            KeyCode::Char('c') if key.modifiers.contains(KeyModifiers::CONTROL) => {
                self.line = None;
                TypingKey::Cancelled
            }
            KeyCode::Enter => {
                let text = line.value().trim().to_string();
                if text.is_empty() {
                    return TypingKey::Ignored;
                }
                self.line = None;
                if self.history.last() != Some(&text) {
                    self.history.push(text.clone());
                    if self.history.len() > HISTORY {
                        self.history.remove(0);
                    }
                }
                TypingKey::Send(text)
            }
            KeyCode::Up => self.browse(-1),
            KeyCode::Down => self.browse(1),
            _ => match to_input_request(&Event::Key(key)) {
                Some(req) => match line.handle(req) {
                    Some(_) => TypingKey::Changed,
                    None => TypingKey::Ignored,
                },
                None => TypingKey::Ignored,
            },
        }
    }

    /// ↑ (`-1`) or ↓ (`1`) through the history; past the newest, the line being typed.
    fn browse(&mut self, by: isize) -> TypingKey {
        let Some(line) = self.line.as_mut() else {
            return TypingKey::Ignored;
        };
        let n = self.history.len();
        let (at, draft) = self
            .browsing
            .take()
            .unwrap_or_else(|| (n, line.value().to_string()));
        let to = (at as isize + by).clamp(0, n as isize) as usize;
        let value = if to == n {
            draft.clone()
        } else {
            self.history[to].clone()
        };
        let changed = to != at;
        *line = Input::new(value);
        self.browsing = Some((to, draft));
        if changed {
            TypingKey::Changed
        } else {
            TypingKey::Ignored
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn press(t: &mut Typing, code: KeyCode) -> TypingKey {
        t.key(KeyEvent::new(code, KeyModifiers::NONE))
    }

    fn typed(t: &mut Typing, s: &str) {
        for c in s.chars() {
            press(t, KeyCode::Char(c));
        }
    }

    #[test]
    fn a_line_is_edited_sent_and_found_again_in_the_history() {
        let mut t = Typing::default();
        t.open();
        typed(&mut t, "helo");
        press(&mut t, KeyCode::Left);
        typed(&mut t, "l");
        assert_eq!(t.line(), Some(("hello", 4)));
        press(&mut t, KeyCode::End);
        t.paste(" there\nfriend");
        assert_eq!(
            press(&mut t, KeyCode::Enter),
            TypingKey::Send("hello there friend".into())
        );
        assert!(!t.is_open());
        t.open();
        assert_eq!(press(&mut t, KeyCode::Enter), TypingKey::Ignored, "empty");
        typed(&mut t, "second");
        press(&mut t, KeyCode::Enter);
        t.open();
        typed(&mut t, "draft");
        press(&mut t, KeyCode::Up);
        assert_eq!(t.line().unwrap().0, "second");
        press(&mut t, KeyCode::Up);
        press(&mut t, KeyCode::Up);
        assert_eq!(
            t.line().unwrap().0,
            "hello there friend",
            "stops at the oldest"
        );
        press(&mut t, KeyCode::Down);
        press(&mut t, KeyCode::Down);
        assert_eq!(
            t.line().unwrap().0,
            "draft",
            "the line being typed comes back"
        );
        assert_eq!(press(&mut t, KeyCode::Esc), TypingKey::Cancelled);
        assert!(!t.is_open());
        assert_eq!(t.history(), ["hello there friend", "second"]);
    }
}
