//! Choices made in the settings overlay (`s`), kept in
//! `$XDG_CONFIG_HOME/assistant/config.toml` and read at start: each applies where the
//! command line did not set the same thing (flags override the file).

use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// What the file holds; a missing key leaves the default (or the flag) in place.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    pub echo_cancel: Option<bool>,
    pub half_duplex: Option<bool>,
    pub push_to_talk: Option<bool>,
    /// Wake mode (`--wake`, `w`).
    pub wake: Option<bool>,
    /// The wake spotter's threshold (`--wake-threshold`).
    pub wake_threshold: Option<f64>,
    pub temperature: Option<f64>,
    pub text_temperature: Option<f64>,
    pub top_k: Option<usize>,
    /// `moshi`, `cascade` or `loopback`, as `--engine` takes it.
    pub engine: Option<String>,
}

/// `$XDG_CONFIG_HOME/assistant/config.toml` (or the platform's config directory).
pub fn path() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .or_else(|| directories::BaseDirs::new().map(|d| d.config_dir().to_path_buf()))?;
    Some(base.join("assistant").join("config.toml"))
}

impl Settings {
    /// The file's settings; none when it does not exist. A file that does not parse
    /// is an error naming the file and the line.
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        match std::fs::read_to_string(path) {
            Ok(text) => {
                toml::from_str(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Self::default()),
            Err(e) => Err(anyhow::anyhow!("{}: {e}", path.display())),
        }
    }

    /// Write the file whole (a temporary file renamed over it: never half written).
    pub fn save(&self, path: &Path) -> anyhow::Result<()> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| anyhow::anyhow!("{}: {e}", dir.display()))?;
        }
        let text = toml::to_string(self)?;
        let tmp = path.with_extension("toml.tmp");
        std::fs::write(&tmp, text).map_err(|e| anyhow::anyhow!("{}: {e}", tmp.display()))?;
        std::fs::rename(&tmp, path).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_round_trip_and_a_bad_file_names_itself() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("assistant/config.toml");
        assert_eq!(Settings::load(&p).unwrap(), Settings::default());
        let s = Settings {
            push_to_talk: Some(true),
            top_k: Some(40),
            engine: Some("cascade".into()),
            ..Default::default()
        };
        s.save(&p).unwrap();
        assert_eq!(Settings::load(&p).unwrap(), s);
        std::fs::write(&p, "top_k = \"many\"\n").unwrap();
        let e = Settings::load(&p).unwrap_err().to_string();
        assert!(e.contains("config.toml") && e.contains("top_k"), "{e}");
    }
}
