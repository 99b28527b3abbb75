//! Every colour on screen comes from here, named by meaning, filled from the
//! active persona's file; nothing else in the UI picks a colour.

use crate::bus::Severity;
use crate::persona::{BorderStyle, PersonaTheme};
use ratatui::style::{Color, Modifier, Style};
use ratatui::widgets::BorderType;

/// Who a line or a bar belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Speaker {
    User,
    Assistant,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Theme {
    /// The persona's colour: its name in the header, its words, its level bars.
    pub persona: Color,
    /// The user's markers and level bars.
    pub user: Color,
    /// Both talking at once.
    pub both: Color,
    pub info: Color,
    pub ok: Color,
    pub warning: Color,
    pub error: Color,
    /// Timestamps, borders, inactive bars, hints.
    pub dim: Color,
    /// Body text; `Reset` is the terminal's own.
    pub text: Color,
    /// Behind everything; `Reset` is the terminal's own.
    pub background: Color,
    pub border_type: BorderType,
    /// False when NO_COLOR is set: every style then carries modifiers only.
    pub color: bool,
}

impl Default for Theme {
    fn default() -> Self {
        Self::new(Color::Cyan, false)
    }
}

impl Theme {
    pub fn new(persona: Color, no_color: bool) -> Self {
        Self {
            persona,
            user: Color::Green,
            both: Color::Magenta,
            info: Color::Blue,
            ok: Color::Green,
            warning: Color::Yellow,
            error: Color::Red,
            dim: Color::DarkGray,
            text: Color::Reset,
            background: Color::Reset,
            border_type: BorderType::Plain,
            color: !no_color,
        }
    }

    /// The theme a persona file describes.
    pub fn from_persona(p: &PersonaTheme, no_color: bool) -> Self {
        Self {
            persona: p.primary,
            user: p.secondary,
            both: p.accent,
            info: p.info,
            ok: p.ok,
            warning: p.warning,
            error: p.error,
            dim: p.dim,
            text: p.text,
            background: p.background,
            border_type: match p.border {
                BorderStyle::Plain => BorderType::Plain,
                BorderStyle::Rounded => BorderType::Rounded,
                BorderStyle::Double => BorderType::Double,
                BorderStyle::Thick => BorderType::Thick,
            },
            color: !no_color,
        }
    }

    /// The whole screen's base style: the persona's background and text colour.
    pub fn base(&self) -> Style {
        if !self.color {
            return Style::new();
        }
        let mut s = Style::new();
        if self.background != Color::Reset {
            s = s.bg(self.background);
        }
        if self.text != Color::Reset {
            s = s.fg(self.text);
        }
        s
    }

    fn fg(&self, c: Color) -> Style {
        if self.color {
            Style::new().fg(c)
        } else {
            Style::new()
        }
    }

    pub fn text(&self) -> Style {
        if self.text == Color::Reset {
            Style::new()
        } else {
            self.fg(self.text)
        }
    }
    pub fn persona_name(&self) -> Style {
        self.fg(self.persona).add_modifier(Modifier::BOLD)
    }
    pub fn speaker(&self, who: Speaker) -> Style {
        match who {
            Speaker::User => self.fg(self.user),
            Speaker::Assistant => self.fg(self.persona),
        }
    }
    /// A level bar: the speaker's colour while they are heard, dim otherwise.
    pub fn level(&self, who: Speaker, active: bool) -> Style {
        if active {
            self.speaker(who)
        } else {
            self.fg(self.dim)
        }
    }
    pub fn both_talking(&self) -> Style {
        self.fg(self.both).add_modifier(Modifier::BOLD)
    }
    pub fn severity(&self, s: Severity) -> Style {
        match s {
            Severity::Info => self.fg(self.info),
            Severity::Warning => self.fg(self.warning).add_modifier(Modifier::BOLD),
            Severity::Error => self.fg(self.error).add_modifier(Modifier::BOLD),
        }
    }
    pub fn ok(&self) -> Style {
        self.fg(self.ok)
    }
    /// What to do about a problem: stands out from the problem itself.
    pub fn remedy(&self) -> Style {
        self.fg(self.warning).add_modifier(Modifier::ITALIC)
    }
    pub fn dim(&self) -> Style {
        if self.color {
            self.fg(self.dim)
        } else {
            Style::new().add_modifier(Modifier::DIM)
        }
    }
    pub fn timestamp(&self) -> Style {
        self.dim()
    }
    pub fn border(&self) -> Style {
        self.dim()
    }
    pub fn title(&self) -> Style {
        Style::new().add_modifier(Modifier::BOLD)
    }
    /// A key name in the help and the hints.
    pub fn key(&self) -> Style {
        self.fg(self.persona).add_modifier(Modifier::BOLD)
    }
    pub fn gauge(&self) -> Style {
        self.fg(self.persona)
    }
    /// A figure that says the machine is not keeping up.
    pub fn alarm(&self) -> Style {
        self.fg(self.warning).add_modifier(Modifier::BOLD)
    }
}
