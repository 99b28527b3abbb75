//! The first-start chooser: which engine to run when none is on disk yet. The app
//! describes each option (its download, memory and speed on this machine, as words);
//! the UI lets the user pick one with the keyboard, and sends the pick back.

use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers};

/// One engine the chooser offers, worded by the app from its figures.
#[derive(Debug, Clone, PartialEq)]
pub struct ChooserOption {
    /// "Moshi on the GPU".
    pub title: String,
    /// "download 2.9 GiB", "on disk", "nothing to download".
    pub download: String,
    /// "memory 2.5 GiB", or "memory 9.1 GiB of 22.0 GiB on cuda:0" on a GPU.
    pub memory: String,
    /// "memory 2.5 GiB": for small screens.
    pub memory_short: String,
    /// "~132 ms a step (estimate)".
    pub speed: String,
    /// "~132 ms a step": for small screens.
    pub speed_short: String,
    /// Whether that speed keeps up with 80 ms frames (`None`: unknown, a server).
    pub realtime: Option<bool>,
    /// One line on what it is or what stands in its way here.
    pub note: String,
    /// It needs a server address typed in.
    pub takes_url: bool,
}

/// What the app hands the UI for the first start.
#[derive(Debug, Clone, PartialEq)]
pub struct ChooserSetup {
    pub options: Vec<ChooserOption>,
    /// The option the app recommends, selected at first.
    pub recommended: usize,
    /// Why it recommends it: the engine choice's one line.
    pub why: String,
    /// The machine the figures are for: "2 cores, 23.0 GiB available, no GPU".
    pub machine: String,
    /// The server address to start from (`ws://`).
    pub url: String,
}

/// The user's pick: an option, and the address typed for one that takes it.
#[derive(Debug, Clone, PartialEq)]
pub struct ChooserPick {
    pub index: usize,
    pub url: Option<String>,
}

/// The chooser on screen.
#[derive(Debug, Clone, PartialEq)]
pub struct Chooser {
    pub setup: ChooserSetup,
    pub selected: usize,
    pub url: String,
    /// Why the last Enter did not start anything (an address that is not one).
    pub error: Option<String>,
}

/// What a key did.
#[derive(Debug, Clone, PartialEq)]
pub enum ChooserKey {
    /// Nothing changed.
    Ignored,
    Changed,
    Picked(ChooserPick),
    Quit,
}

impl Chooser {
    pub fn new(setup: ChooserSetup) -> Self {
        Self {
            selected: setup.recommended.min(setup.options.len().saturating_sub(1)),
            url: setup.url.clone(),
            setup,
            error: None,
        }
    }

    pub fn current(&self) -> Option<&ChooserOption> {
        self.setup.options.get(self.selected)
    }

    /// The selected option takes an address: typing goes into it.
    pub fn editing_url(&self) -> bool {
        self.current().is_some_and(|o| o.takes_url)
    }

    pub fn key(&mut self, key: KeyEvent) -> ChooserKey {
        if key.kind == KeyEventKind::Release {
            return ChooserKey::Ignored;
        }
        let n = self.setup.options.len();
        let ctrl = key.modifiers.contains(KeyModifiers::CONTROL);
        let editing = self.editing_url();
        let moved = |s: &mut Self, to: usize| {
            s.selected = to;
            s.error = None;
            ChooserKey::Changed
        };
        match key.code {
            KeyCode::Char('c') if ctrl => ChooserKey::Quit,
            KeyCode::Up | KeyCode::BackTab if n > 0 => moved(self, (self.selected + n - 1) % n),
            KeyCode::Down | KeyCode::Tab if n > 0 => moved(self, (self.selected + 1) % n),
            KeyCode::Enter => self.pick(),
            KeyCode::Backspace if editing => {
                self.url.pop();
                self.error = None;
                ChooserKey::Changed
            }
            KeyCode::Char(c) if editing && !ctrl => {
                self.url.push(c);
                self.error = None;
                ChooserKey::Changed
            }
            KeyCode::Esc if editing => moved(self, self.setup.recommended.min(n.saturating_sub(1))),
            KeyCode::Char('q') | KeyCode::Esc => ChooserKey::Quit,
            KeyCode::Char('k') if n > 0 => moved(self, (self.selected + n - 1) % n),
            KeyCode::Char('j') if n > 0 => moved(self, (self.selected + 1) % n),
            KeyCode::Char(d @ '1'..='9') => {
                let i = d as usize - '1' as usize;
                if i < n {
                    moved(self, i)
                } else {
                    ChooserKey::Ignored
                }
            }
            _ => ChooserKey::Ignored,
        }
    }

    fn pick(&mut self) -> ChooserKey {
        let Some(option) = self.current() else {
            return ChooserKey::Ignored;
        };
        if !option.takes_url {
            return ChooserKey::Picked(ChooserPick {
                index: self.selected,
                url: None,
            });
        }
        let url = self.url.trim().to_string();
        match url_problem(&url) {
            Some(why) => {
                self.error = Some(why);
                ChooserKey::Changed
            }
            None => ChooserKey::Picked(ChooserPick {
                index: self.selected,
                url: Some(url),
            }),
        }
    }
}

/// Why `url` is not a server address (`ws://HOST[:PORT]` or `wss://`), if it is not.
pub fn url_problem(url: &str) -> Option<String> {
    let rest = url
        .strip_prefix("ws://")
        .or_else(|| url.strip_prefix("wss://"));
    match rest {
        None => Some("the address starts with ws:// or wss://".into()),
        Some(r) if r.trim_matches('/').is_empty() => {
            Some("type the server's host after ws://, e.g. ws://192.168.1.20:8998".into())
        }
        Some(r) if r.contains(char::is_whitespace) => Some("an address has no spaces".into()),
        Some(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn option(title: &str, takes_url: bool) -> ChooserOption {
        ChooserOption {
            title: title.into(),
            download: String::new(),
            memory: String::new(),
            memory_short: String::new(),
            speed: String::new(),
            speed_short: String::new(),
            realtime: None,
            note: String::new(),
            takes_url,
        }
    }

    fn chooser() -> Chooser {
        Chooser::new(ChooserSetup {
            options: vec![
                option("gpu", false),
                option("cascade", false),
                option("server", true),
                option("demo", false),
            ],
            recommended: 1,
            why: "engine: cascade".into(),
            machine: "2 cores".into(),
            url: "ws://".into(),
        })
    }

    fn key(code: KeyCode) -> KeyEvent {
        KeyEvent::new(code, KeyModifiers::NONE)
    }

    #[test]
    fn arrows_and_digits_move_enter_picks() {
        let mut c = chooser();
        assert_eq!(c.selected, 1, "the recommended one first");
        assert_eq!(c.key(key(KeyCode::Up)), ChooserKey::Changed);
        assert_eq!(c.selected, 0);
        assert_eq!(c.key(key(KeyCode::Up)), ChooserKey::Changed);
        assert_eq!(c.selected, 3, "wraps");
        assert_eq!(c.key(key(KeyCode::Char('2'))), ChooserKey::Changed);
        assert_eq!(c.key(key(KeyCode::Char('9'))), ChooserKey::Ignored);
        assert_eq!(
            c.key(key(KeyCode::Enter)),
            ChooserKey::Picked(ChooserPick {
                index: 1,
                url: None
            })
        );
        assert_eq!(c.key(key(KeyCode::Char('q'))), ChooserKey::Quit);
    }

    #[test]
    fn the_server_option_takes_a_typed_address_and_checks_it() {
        let mut c = chooser();
        c.key(key(KeyCode::Char('3')));
        assert!(c.editing_url());
        // Enter on a bare scheme: an error, no pick.
        assert_eq!(c.key(key(KeyCode::Enter)), ChooserKey::Changed);
        assert!(
            c.error.as_deref().unwrap().contains("host"),
            "{:?}",
            c.error
        );
        // q and digits type, they do not quit or move.
        for ch in "qhost:8998".chars() {
            assert_eq!(c.key(key(KeyCode::Char(ch))), ChooserKey::Changed);
        }
        assert_eq!(c.url, "ws://qhost:8998");
        assert_eq!(c.error, None, "typing clears the error");
        c.key(key(KeyCode::Backspace));
        assert_eq!(
            c.key(key(KeyCode::Enter)),
            ChooserKey::Picked(ChooserPick {
                index: 2,
                url: Some("ws://qhost:899".into())
            })
        );
        // Esc leaves the field for the recommended option; Ctrl-C always quits.
        assert_eq!(c.key(key(KeyCode::Esc)), ChooserKey::Changed);
        assert_eq!(c.selected, 1);
        c.key(key(KeyCode::Char('3')));
        assert_eq!(
            c.key(KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL)),
            ChooserKey::Quit
        );
    }

    #[test]
    fn addresses() {
        assert_eq!(url_problem("ws://10.0.0.2:8998"), None);
        assert_eq!(url_problem("wss://example.org/api/chat"), None);
        assert!(url_problem("http://x").is_some());
        assert!(url_problem("ws://").is_some());
        assert!(url_problem("ws://a b").is_some());
    }
}
