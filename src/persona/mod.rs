//! Personas: a name, a look, a voice and a sampling character, from TOML files.
//! Built-ins in `personas/` are compiled in; files in
//! `$XDG_CONFIG_HOME/assistant/personas/` add personas or override a built-in
//! of the same name. A broken user file is skipped with a warning, never fatal.

mod catalog;
mod error;
mod file;

pub use catalog::{builtin_sources, user_dir, Catalog, Entry, Source};
pub use error::{line_col, PersonaError};
pub use file::{parse, parse_hotkey};

use crate::bus::Sampling;
use ratatui::style::Color;

#[derive(Debug, Clone, PartialEq)]
pub struct Persona {
    pub name: String,
    pub description: String,
    /// 1..=12 for F1..F12.
    pub hotkey: Option<u8>,
    /// Where the hotkey is written in its file (for duplicate-hotkey errors).
    pub hotkey_offset: Option<usize>,
    pub theme: PersonaTheme,
    pub voice: Voice,
    /// The assistant opens the conversation: switching to this persona starts a
    /// fresh conversation (the model's context is reset), and Moshi speaks first.
    pub greeting: bool,
    /// Role text: shown in the persona card; a model that takes a prompt (PersonaPlex)
    /// is primed with it.
    pub prompt: String,
    /// PersonaPlex: a WAV of the voice to speak in (relative to the persona's file).
    pub voice_prompt: Option<std::path::PathBuf>,
    /// Cascade mode: the TTS voice (an embedding file or a name in Kyutai's voices).
    pub tts_voice: Option<String>,
    /// Cascade mode: the LLM model to ask the server for.
    pub llm_model: Option<String>,
    /// Cascade mode: the tools it may use (`tools = [...]`); `None`: all that are allowed.
    pub tools: Option<Vec<String>>,
    pub visualizer: VisualizerStyle,
    /// The phrases that wake it (`--wake`), lower case; its name by default.
    pub wake: Vec<String>,
    /// The file it came from, as shown to the user.
    pub source: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct PersonaTheme {
    /// The persona's own colour: its name, its words, its level bars, keys.
    pub primary: Color,
    /// The user's colour.
    pub secondary: Color,
    /// Both talking at once.
    pub accent: Color,
    /// `Reset` leaves the terminal's own background.
    pub background: Color,
    /// Body text; `Reset` is the terminal's own.
    pub text: Color,
    pub dim: Color,
    pub warning: Color,
    pub error: Color,
    pub info: Color,
    pub ok: Color,
    pub border: BorderStyle,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BorderStyle {
    Plain,
    Rounded,
    Double,
    Thick,
}

impl BorderStyle {
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s.trim().to_ascii_lowercase().as_str() {
            "plain" => Self::Plain,
            "rounded" => Self::Rounded,
            "double" => Self::Double,
            "thick" => Self::Thick,
            _ => return None,
        })
    }
}

/// How the level visualizer draws a bar's partial cell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VisualizerStyle {
    /// Eighth blocks: ▁▂▃▄▅▆▇█
    Bars,
    /// Shades: ░▒▓█
    Shade,
    /// Braille dots: ⣀⣤⣶⣿
    Dots,
}

impl VisualizerStyle {
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s.trim().to_ascii_lowercase().as_str() {
            "bars" => Self::Bars,
            "shade" => Self::Shade,
            "dots" => Self::Dots,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Voice {
    pub weights: Weights,
    pub temperature: f64,
    pub text_temperature: f64,
    pub top_k: usize,
}

impl Voice {
    /// The sampling this voice asks for; the seed stays the run's.
    pub fn sampling(&self, seed: u64) -> Sampling {
        Sampling {
            temperature: self.temperature,
            text_temperature: self.text_temperature,
            top_k: self.top_k,
            seed,
        }
    }
}

pub use crate::bus::{Weights, MOSHIKA, MOSHIKO};

/// "F2", or "—" without a hotkey.
pub fn hotkey_label(k: Option<u8>) -> String {
    k.map_or_else(|| "—".into(), |k| format!("F{k}"))
}
