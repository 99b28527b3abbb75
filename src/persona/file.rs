//! One persona file: the TOML schema (unknown fields are errors) and its
//! checks, each failure located in the file with a hint.

use super::error::PersonaError;
use super::{BorderStyle, Persona, PersonaTheme, VisualizerStyle, Voice, Weights};
use ratatui::style::Color;
use serde::Deserialize;
use std::path::Path;
use toml::Spanned;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPersona {
    name: Spanned<String>,
    #[serde(default)]
    description: String,
    hotkey: Option<Spanned<String>>,
    theme: RawTheme,
    #[serde(default)]
    voice: RawVoice,
    #[serde(default)]
    greeting: bool,
    #[serde(default)]
    prompt: String,
    #[serde(default)]
    voice_prompt: Option<Spanned<String>>,
    #[serde(default)]
    tts_voice: Option<Spanned<String>>,
    #[serde(default)]
    llm_model: Option<Spanned<String>>,
    /// Cascade mode: the tools this persona may use (names, `SERVER/*`, `prefix*`).
    #[serde(default)]
    tools: Option<Vec<String>>,
    #[serde(default)]
    visualizer: Option<Spanned<String>>,
    #[serde(default)]
    wake: Option<Spanned<Vec<String>>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTheme {
    primary: Spanned<String>,
    secondary: Spanned<String>,
    accent: Spanned<String>,
    #[serde(default)]
    background: Option<Spanned<String>>,
    #[serde(default)]
    text: Option<Spanned<String>>,
    dim: Spanned<String>,
    warning: Spanned<String>,
    error: Spanned<String>,
    #[serde(default)]
    info: Option<Spanned<String>>,
    #[serde(default)]
    ok: Option<Spanned<String>>,
    #[serde(default)]
    border: Option<Spanned<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawVoice {
    weights: Option<Spanned<String>>,
    temperature: Option<Spanned<f64>>,
    text_temperature: Option<Spanned<f64>>,
    top_k: Option<Spanned<i64>>,
}

const COLOUR_HINT: &str =
    "use a colour name (cyan, light-red, dark-gray, reset), #rrggbb, or an index 0-255";

/// Parse and check one persona file's text. `file` names it in errors; `dir`
/// anchors a relative `voice.weights` directory.
pub fn parse(file: &str, text: &str, dir: Option<&Path>) -> Result<Persona, PersonaError> {
    let raw: RawPersona = toml::from_str(text).map_err(|e| toml_error(file, text, &e))?;
    let err = |span: std::ops::Range<usize>, msg: String, hint: &str| {
        PersonaError::at(file, text, span.start, msg, hint)
    };

    let name = raw.name.get_ref().trim().to_string();
    if name.is_empty() {
        return Err(err(
            raw.name.span(),
            "`name` is empty".into(),
            "give the persona a name, e.g. name = \"Jarvis\"",
        ));
    }
    let hotkey = match &raw.hotkey {
        None => None,
        Some(h) => Some(parse_hotkey(h.get_ref()).ok_or_else(|| {
            err(
                h.span(),
                format!("hotkey {:?} is not a function key", h.get_ref()),
                "use one of F1 to F12, e.g. hotkey = \"F7\"",
            )
        })?),
    };
    let colour = |s: &Spanned<String>, field: &str| -> Result<Color, PersonaError> {
        s.get_ref().parse::<Color>().map_err(|_| {
            err(
                s.span(),
                format!("theme.{field}: {:?} is not a colour", s.get_ref()),
                COLOUR_HINT,
            )
        })
    };
    let optional =
        |s: &Option<Spanned<String>>, field: &str, default: Color| -> Result<Color, PersonaError> {
            s.as_ref().map_or(Ok(default), |s| colour(s, field))
        };
    let t = &raw.theme;
    let border = match &t.border {
        None => BorderStyle::Plain,
        Some(b) => BorderStyle::parse(b.get_ref()).ok_or_else(|| {
            err(
                b.span(),
                format!("theme.border: {:?} is not a border style", b.get_ref()),
                "use plain, rounded, double or thick",
            )
        })?,
    };
    let theme = PersonaTheme {
        primary: colour(&t.primary, "primary")?,
        secondary: colour(&t.secondary, "secondary")?,
        accent: colour(&t.accent, "accent")?,
        background: optional(&t.background, "background", Color::Reset)?,
        text: optional(&t.text, "text", Color::Reset)?,
        dim: colour(&t.dim, "dim")?,
        warning: colour(&t.warning, "warning")?,
        error: colour(&t.error, "error")?,
        info: optional(&t.info, "info", Color::Blue)?,
        ok: optional(&t.ok, "ok", Color::Green)?,
        border,
    };

    let v = &raw.voice;
    let d = crate::bus::Sampling::default();
    let temp = |s: &Option<Spanned<f64>>, field: &str, default: f64| -> Result<f64, PersonaError> {
        match s {
            None => Ok(default),
            Some(s) if s.get_ref().is_finite() && (0.0..=5.0).contains(s.get_ref()) => {
                Ok(*s.get_ref())
            }
            Some(s) => Err(err(
                s.span(),
                format!("voice.{field} = {} is out of range", s.get_ref()),
                "use a temperature from 0 (greedy) to 5; around 0.7 is usual",
            )),
        }
    };
    let top_k = match &v.top_k {
        None => d.top_k,
        Some(k) if (1..=100_000).contains(k.get_ref()) => *k.get_ref() as usize,
        Some(k) => {
            return Err(err(
                k.span(),
                format!("voice.top_k = {} is out of range", k.get_ref()),
                "use a whole number from 1 up; 250 is Moshi's usual",
            ))
        }
    };
    let weights = match &v.weights {
        None => Weights::Default,
        Some(w) => Weights::parse(w.get_ref(), dir).ok_or_else(|| {
            err(
                w.span(),
                "voice.weights is empty".into(),
                "use default, moshiko, moshika, demo, hf:OWNER/REPO or a model directory",
            )
        })?,
    };
    let voice = Voice {
        weights,
        temperature: temp(&v.temperature, "temperature", d.temperature)?,
        text_temperature: temp(&v.text_temperature, "text_temperature", d.text_temperature)?,
        top_k,
    };

    let visualizer = match &raw.visualizer {
        None => VisualizerStyle::Bars,
        Some(s) => VisualizerStyle::parse(s.get_ref()).ok_or_else(|| {
            err(
                s.span(),
                format!("visualizer {:?} is not a style", s.get_ref()),
                "use bars, shade or dots",
            )
        })?,
    };
    let voice_prompt = match &raw.voice_prompt {
        None => None,
        Some(p) if p.get_ref().trim().is_empty() => {
            return Err(err(
                p.span(),
                "voice_prompt is empty".into(),
                "give a WAV of the voice (a few seconds of one speaker), or leave it out",
            ))
        }
        Some(p) => {
            let value = p.get_ref().trim();
            let path = std::path::PathBuf::from(value);
            // A bare name (NATF2, NATF2.pt) is a voice from the voices directory, looked
            // up when the model primes; any other relative path is the persona file's.
            let is_name = !value.contains(['/', '\\'])
                && path
                    .extension()
                    .is_none_or(|e| e.eq_ignore_ascii_case("pt"));
            Some(match dir {
                Some(d) if path.is_relative() && !is_name => d.join(path),
                _ => path,
            })
        }
    };
    let named = |field: &Option<Spanned<String>>, what: &str| match field {
        Some(v) if v.get_ref().trim().is_empty() => Err(err(
            v.span(),
            format!("{what} is empty"),
            "give a name, or leave the line out for the default",
        )),
        Some(v) => Ok(Some(v.get_ref().trim().to_string())),
        None => Ok(None),
    };
    let tts_voice = named(&raw.tts_voice, "tts_voice")?;
    let llm_model = named(&raw.llm_model, "llm_model")?;
    // The phrases the persona answers to with --wake; its name when the file names none.
    let wake = match &raw.wake {
        None => vec![name.to_lowercase()],
        Some(w) => {
            let phrases: Vec<String> = w
                .get_ref()
                .iter()
                .map(|p| {
                    p.split_whitespace()
                        .collect::<Vec<_>>()
                        .join(" ")
                        .to_lowercase()
                })
                .collect();
            if phrases.is_empty()
                || phrases
                    .iter()
                    .any(|p| !p.chars().any(char::is_alphanumeric))
            {
                return Err(err(
                    w.span(),
                    "`wake` needs at least one phrase, each with letters".into(),
                    "e.g. wake = [\"jarvis\", \"hey jarvis\"]",
                ));
            }
            phrases
        }
    };
    Ok(Persona {
        wake,
        name,
        description: raw.description.trim().to_string(),
        hotkey,
        hotkey_offset: raw.hotkey.as_ref().map(|h| h.span().start),
        theme,
        voice,
        greeting: raw.greeting,
        prompt: raw.prompt.trim().to_string(),
        voice_prompt,
        tts_voice,
        llm_model,
        tools: raw.tools,
        visualizer,
        source: file.to_string(),
    })
}

/// "F1".."F12" (any case) as 1..=12.
pub fn parse_hotkey(s: &str) -> Option<u8> {
    let n = s.trim().strip_prefix(['F', 'f'])?.parse::<u8>().ok()?;
    (1..=12).contains(&n).then_some(n)
}

fn toml_error(file: &str, text: &str, e: &toml::de::Error) -> PersonaError {
    let msg = e.message().trim().to_string();
    let offset = e.span().map_or(0, |s| s.start);
    let hint = if msg.starts_with("unknown field") {
        "remove or rename the field; the allowed ones are listed above (see personas/moshi.toml in the source)"
    } else if msg.starts_with("missing field `name`") {
        "add a name at the top, e.g. name = \"Jarvis\""
    } else if msg.starts_with("missing field") {
        "add the field; personas/moshi.toml in the source shows every field"
    } else if msg.starts_with("invalid type") {
        "check the value's type: text in quotes, numbers without"
    } else {
        "this is not valid TOML: check quotes, brackets and `key = value` lines"
    };
    PersonaError::at(file, text, offset, msg, hint)
}
