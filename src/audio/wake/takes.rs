//! Where the takes of each wake phrase live: `$XDG_CONFIG_HOME/assistant/wake/<phrase>/
//! take-N.wav` (24 kHz mono), one folder per phrase, so a name is recorded once and
//! every persona that answers to it shares it.

use super::spotter::Template;
use crate::audio::wav::{read_wav, write_wav_mono};
use std::path::{Path, PathBuf};

/// `$XDG_CONFIG_HOME/assistant/wake` (or the platform's config directory).
pub fn default_dir() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .or_else(|| directories::BaseDirs::new().map(|d| d.config_dir().to_path_buf()))?;
    Some(base.join("assistant").join("wake"))
}

/// A phrase as a folder name: lower case, words joined by `-` ("hey jarvis" →
/// `hey-jarvis`); `None` when nothing is left.
pub fn folder_name(phrase: &str) -> Option<String> {
    let words: Vec<String> = phrase
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(|w| w.to_lowercase())
        .collect();
    (!words.is_empty()).then(|| words.join("-"))
}

/// The take files of one phrase, in order.
pub fn take_files(dir: &Path, phrase: &str) -> Vec<PathBuf> {
    let Some(folder) = folder_name(phrase) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir.join(folder))
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e.eq_ignore_ascii_case("wav")))
        .collect();
    files.sort();
    files
}

/// 24 kHz mono samples of a WAV file, whatever its rate and channels.
pub fn read_mono_24k(path: &Path) -> anyhow::Result<Vec<f32>> {
    let wav = read_wav(path)?;
    let mut mono = Vec::new();
    crate::audio::resample::downmix_into(&wav.samples, wav.channels as usize, &mut mono);
    if wav.sample_rate == super::features::RATE {
        return Ok(mono);
    }
    let chunk = 480;
    let mut r = crate::audio::resample::StreamResampler::new(
        wav.sample_rate,
        super::features::RATE,
        chunk,
    )?;
    r.push(&mono);
    r.flush();
    let mut out = vec![0.0; r.available()];
    let n = r.pop(&mut out);
    out.truncate(n);
    // The resampler's delay is a few samples of lead-in: harmless for a take.
    Ok(out)
}

/// What loading the takes of some phrases found.
pub struct Loaded {
    pub templates: Vec<Template>,
    /// Phrases with no takes at all.
    pub missing: Vec<String>,
    /// Takes that could not be used, each with the reason.
    pub bad: Vec<String>,
}

/// Templates for every phrase that has takes in `dir`.
pub fn load(dir: &Path, phrases: &[String]) -> Loaded {
    let mut loaded = Loaded {
        templates: Vec::new(),
        missing: Vec::new(),
        bad: Vec::new(),
    };
    for phrase in phrases {
        let files = take_files(dir, phrase);
        if files.is_empty() {
            loaded.missing.push(phrase.clone());
            continue;
        }
        for f in files {
            match read_mono_24k(&f)
                .and_then(|s| Template::from_take(phrase, &s).map_err(|e| anyhow::anyhow!("{e}")))
            {
                Ok(t) => loaded.templates.push(t),
                Err(e) => loaded.bad.push(format!("{}: {e:#}", f.display())),
            }
        }
    }
    loaded
}

/// Store a take as the phrase's next `take-N.wav`; checks it first, so a silent or
/// clipped take is refused with the reason instead of weakening the spotter.
pub fn save(dir: &Path, phrase: &str, samples: &[f32]) -> anyhow::Result<PathBuf> {
    let folder = folder_name(phrase)
        .ok_or_else(|| anyhow::anyhow!("{phrase:?} has no letters or digits to name"))?;
    Template::from_take(phrase, samples).map_err(|e| anyhow::anyhow!("{e}"))?;
    let peak = samples.iter().fold(0f32, |m, s| m.max(s.abs()));
    if peak >= 0.999 {
        anyhow::bail!("the take is clipped (too loud): move back from the microphone");
    }
    let d = dir.join(folder);
    std::fs::create_dir_all(&d)
        .map_err(|e| anyhow::anyhow!("{}: cannot create: {e}", d.display()))?;
    let n = (1..)
        .find(|i| !d.join(format!("take-{i}.wav")).exists())
        .unwrap_or(1);
    let path = d.join(format!("take-{n}.wav"));
    write_wav_mono(&path, super::features::RATE, samples)?;
    Ok(path)
}
