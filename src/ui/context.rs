//! What the app knows when the UI starts.

use super::clock::Clock;
use crate::audio::meters::Meters;
use ratatui::style::Color;
use std::path::PathBuf;
use std::sync::Arc;

#[derive(Debug, Clone)]
pub struct UiContext {
    /// The persona's name, shown in the header and on its level bars.
    pub persona: String,
    /// The persona's colour (the personas issue will supply a whole theme).
    pub persona_colour: Color,
    /// Where the log goes; shown in the status line.
    pub log_path: Option<PathBuf>,
    /// Peaks the audio callbacks raise; the UI samples them on its tick.
    pub meters: Arc<Meters>,
    /// NO_COLOR is set: draw without colour.
    pub no_color: bool,
    /// Source of feed timestamps.
    pub clock: Clock,
}

impl UiContext {
    /// The default persona, NO_COLOR from the environment, the system clock.
    pub fn new(meters: Arc<Meters>, log_path: Option<PathBuf>) -> Self {
        Self {
            persona: "Moshi".into(),
            persona_colour: Color::Cyan,
            log_path,
            meters,
            no_color: no_color_from_env(),
            clock: Clock::system(),
        }
    }
}

/// NO_COLOR set to anything non-empty turns colour off (no-color.org).
pub fn no_color_from_env() -> bool {
    std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty())
}

#[cfg(test)]
mod tests {
    // The only test in the crate that touches NO_COLOR.
    #[test]
    fn no_color_counts_only_when_set_and_not_empty() {
        std::env::remove_var("NO_COLOR");
        assert!(!super::no_color_from_env());
        std::env::set_var("NO_COLOR", "");
        assert!(!super::no_color_from_env());
        std::env::set_var("NO_COLOR", "1");
        assert!(super::no_color_from_env());
        std::env::remove_var("NO_COLOR");
    }
}
