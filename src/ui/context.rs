//! What the app knows when the UI starts.

use super::chooser::{ChooserPick, ChooserSetup};
use super::clock::Clock;
use crate::audio::meters::Meters;
use crate::bus::Cancel;
use crate::bus::EngineEvent;
use crate::engine::voice::VoiceLoader;
use crate::persona::{Catalog, Persona};
use crossbeam_channel::Sender;
use std::path::PathBuf;
use std::sync::Arc;

/// The last session's transcript, shown dimmed at the top of the feed (`--resume`).
#[derive(Debug, Clone, PartialEq)]
pub struct Resume {
    pub started: String,
    pub persona: String,
    pub turns: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct UiContext {
    /// Every usable persona, in cycling order (never empty).
    pub personas: Arc<Vec<Persona>>,
    /// The one active at start.
    pub persona: usize,
    /// The engine's event channel, upstream of the journal: the UI sends
    /// persona switches and voice-load progress through it.
    pub events: Option<Sender<EngineEvent>>,
    /// Loads a persona's other weights; `None` pins the voice (loopback,
    /// `--demo`, `--model-dir`): personas then change look and sampling only.
    pub voices: Option<VoiceLoader>,
    /// Set when the user quits, so a load in progress stops at once.
    pub shutdown: Cancel,
    /// The run's sampling seed (personas keep it).
    pub seed: u64,
    pub resume: Option<Resume>,
    /// Where the log goes; shown in the status line.
    pub log_path: Option<PathBuf>,
    /// Peaks the audio callbacks raise; the UI samples them on its tick.
    pub meters: Arc<Meters>,
    /// NO_COLOR is set: draw without colour.
    pub no_color: bool,
    /// `--push-to-talk`: the microphone starts closed; Space opens and closes it.
    pub push_to_talk: bool,
    /// Source of feed timestamps.
    pub clock: Clock,
    /// The engine picked for this machine and why, for the header (`None`: the
    /// command line named it).
    pub engine: Option<String>,
    /// The first start with no weights: the engines to choose from.
    pub chooser: Option<ChooserSetup>,
    /// Where the chooser's pick goes (the app's waiting loader).
    pub picks: Option<Sender<ChooserPick>>,
    /// The session's tools (cascade mode): what the `t` overlay lists, and the desk
    /// that `y` / `n` answer. `None`: the engine calls no tools.
    pub tools: Option<ToolsContext>,
    /// Switches the microphone or speaker live (the device picker); `None` when no
    /// device is in use (files only).
    pub devices: Option<crate::audio::supervisor::Switcher>,
    /// What the settings overlay shows and where it saves: the settings in force,
    /// the file's own, and the file. `None`: no settings overlay.
    pub settings: Option<SettingsContext>,
}

/// The tools as the UI knows them.
#[derive(Debug, Clone)]
pub struct ToolsContext {
    pub desk: Arc<crate::tools::consent::Desk>,
    /// The session's tools (none when nothing asked for them): a persona switch sets
    /// which are offered, and the overlay lists the active persona's.
    pub toolbox: crate::tools::SharedTools,
}

#[derive(Debug, Clone)]
pub struct SettingsContext {
    pub current: super::settings_view::Current,
    pub saved: crate::settings::Settings,
    pub path: PathBuf,
}

impl UiContext {
    /// The built-in personas with the default active, NO_COLOR from the
    /// environment, the system clock.
    pub fn new(meters: Arc<Meters>, log_path: Option<PathBuf>) -> Self {
        Self {
            personas: Arc::new(Catalog::builtin().personas),
            persona: 0,
            events: None,
            voices: None,
            shutdown: Cancel::new(),
            seed: crate::models::duplex::Sampling::default().seed,
            resume: None,
            log_path,
            meters,
            no_color: no_color_from_env(),
            push_to_talk: false,
            clock: Clock::system(),
            engine: None,
            chooser: None,
            picks: None,
            tools: None,
            devices: None,
            settings: None,
        }
    }

    pub fn active(&self) -> &Persona {
        &self.personas[self.persona.min(self.personas.len() - 1)]
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
