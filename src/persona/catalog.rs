//! All personas: the built-ins, then the user's files over them.

use super::error::PersonaError;
use super::file::parse;
use super::{hotkey_label, Persona};
use std::path::{Path, PathBuf};

/// The built-in persona files, compiled in, in hotkey order.
pub fn builtin_sources() -> &'static [(&'static str, &'static str)] {
    &[
        ("moshi.toml", include_str!("../../personas/moshi.toml")),
        ("jarvis.toml", include_str!("../../personas/jarvis.toml")),
        ("glados.toml", include_str!("../../personas/glados.toml")),
        ("friday.toml", include_str!("../../personas/friday.toml")),
        ("hal.toml", include_str!("../../personas/hal.toml")),
        ("sage.toml", include_str!("../../personas/sage.toml")),
    ]
}

/// `$XDG_CONFIG_HOME/assistant/personas` (or the platform's config directory).
pub fn user_dir() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .or_else(|| directories::BaseDirs::new().map(|d| d.config_dir().to_path_buf()))?;
    Some(base.join("assistant").join("personas"))
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    Builtin(&'static str),
    User(PathBuf),
}

impl Source {
    pub fn describe(&self) -> String {
        match self {
            Self::Builtin(f) => format!("builtin:{f}"),
            Self::User(p) => p.display().to_string(),
        }
    }
}

/// One file as `assistant personas` lists it.
#[derive(Debug, Clone)]
pub struct Entry {
    pub source: Source,
    /// The persona's name and hotkey, when the file is valid.
    pub name: Option<String>,
    pub hotkey: Option<u8>,
    pub error: Option<PersonaError>,
    /// A user file that replaced the built-in of the same name.
    pub overrides: bool,
    /// A built-in that a user file replaced.
    pub overridden: bool,
}

impl Entry {
    fn valid(source: Source, p: &Persona, overrides: bool) -> Self {
        Self {
            source,
            name: Some(p.name.clone()),
            hotkey: p.hotkey,
            error: None,
            overrides,
            overridden: false,
        }
    }

    fn invalid(source: Source, e: PersonaError) -> Self {
        Self {
            source,
            name: None,
            hotkey: None,
            error: Some(e),
            overrides: false,
            overridden: false,
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct Catalog {
    /// The usable personas, in cycling order: built-ins first (a user override
    /// takes its built-in's place), then the user's new ones by file name.
    pub personas: Vec<Persona>,
    pub entries: Vec<Entry>,
}

impl Catalog {
    /// The built-ins and the user's directory.
    pub fn load() -> Self {
        Self::load_from(user_dir().as_deref())
    }

    /// The built-ins only.
    pub fn builtin() -> Self {
        Self::load_from(None)
    }

    pub fn load_from(user: Option<&Path>) -> Self {
        let mut c = Catalog::default();
        for (file, text) in builtin_sources() {
            let label = format!("builtin:{file}");
            match parse(&label, text, None) {
                Ok(p) => {
                    c.entries
                        .push(Entry::valid(Source::Builtin(file), &p, false));
                    c.personas.push(p);
                }
                // A test keeps this from happening; if it did, the app still runs.
                Err(e) => c.entries.push(Entry::invalid(Source::Builtin(file), e)),
            }
        }
        let Some(dir) = user else { return c };
        let mut files: Vec<PathBuf> = match std::fs::read_dir(dir) {
            Ok(rd) => rd
                .filter_map(|e| e.ok())
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|x| x == "toml"))
                .collect(),
            Err(_) => return c,
        };
        files.sort();
        for path in files {
            let outcome = c.check_file(&path).map(|p| {
                let at = c
                    .personas
                    .iter()
                    .position(|q| q.name.eq_ignore_ascii_case(&p.name));
                (p, at)
            });
            let source = Source::User(path.clone());
            match outcome {
                Ok((p, Some(i))) => {
                    for e in c.entries.iter_mut().filter(|e| {
                        e.name
                            .as_deref()
                            .is_some_and(|n| n.eq_ignore_ascii_case(&p.name))
                    }) {
                        e.overridden = true;
                    }
                    c.entries.push(Entry::valid(source, &p, true));
                    c.personas[i] = p;
                }
                Ok((p, None)) => {
                    c.entries.push(Entry::valid(source, &p, false));
                    c.personas.push(p);
                }
                Err(e) => c.entries.push(Entry::invalid(source, e)),
            }
        }
        c
    }

    /// Parse a user file and check it against the personas already here: its
    /// hotkey must be free (except from the built-in it overrides) and its name
    /// not taken by another user file.
    pub fn check_file(&self, path: &Path) -> Result<Persona, PersonaError> {
        self.check(path, true)
    }

    /// `assistant personas check FILE`: a file checked from anywhere may
    /// replace the persona of its name (a draft of an installed file), so only
    /// its parse and its hotkey against the others count.
    pub fn check_draft(&self, path: &Path) -> Result<Persona, PersonaError> {
        self.check(path, false)
    }

    fn check(&self, path: &Path, names_must_be_new: bool) -> Result<Persona, PersonaError> {
        let label = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| PersonaError {
            file: label.clone(),
            line: 1,
            column: 1,
            message: format!("cannot read the file: {e}"),
            hint: "check the path and its permissions".into(),
        })?;
        let p = parse(&label, &text, path.parent())?;
        if let Some(other) = self.personas.iter().find(|q| {
            names_must_be_new
                && q.name.eq_ignore_ascii_case(&p.name)
                && !q.source.starts_with("builtin:")
                && q.source != label
        }) {
            return Err(PersonaError::at(
                &label,
                &text,
                0,
                format!(
                    "persona {:?} is already defined in {}",
                    p.name, other.source
                ),
                "rename one of them; a user file may override a built-in, not another user file",
            ));
        }
        if let (Some(k), Some(off)) = (p.hotkey, p.hotkey_offset) {
            if let Some(other) = self.personas.iter().find(|q| {
                q.hotkey == Some(k) && !q.name.eq_ignore_ascii_case(&p.name) && q.source != label
            }) {
                return Err(PersonaError::at(
                    &label,
                    &text,
                    off,
                    format!(
                        "hotkey {} is already {}'s ({})",
                        hotkey_label(Some(k)),
                        other.name,
                        other.source
                    ),
                    format!(
                        "pick a free key ({}) or remove the hotkey line",
                        self.free_hotkeys()
                    ),
                ));
            }
        }
        Ok(p)
    }

    fn free_hotkeys(&self) -> String {
        let free: Vec<String> = (1..=12u8)
            .filter(|k| !self.personas.iter().any(|p| p.hotkey == Some(*k)))
            .map(|k| format!("F{k}"))
            .collect();
        if free.is_empty() {
            "none is free".into()
        } else {
            free.join(" ")
        }
    }

    /// Warnings for files that were skipped.
    pub fn warnings(&self) -> Vec<String> {
        self.entries
            .iter()
            .filter_map(|e| {
                e.error
                    .as_ref()
                    .map(|er| format!("persona file skipped: {}", er.one_line()))
            })
            .collect()
    }

    /// A persona by name, ignoring case.
    pub fn find(&self, name: &str) -> Option<usize> {
        self.personas
            .iter()
            .position(|p| p.name.eq_ignore_ascii_case(name.trim()))
    }

    pub fn names(&self) -> String {
        self.personas
            .iter()
            .map(|p| p.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// The listing `assistant personas` prints.
    pub fn listing(&self) -> String {
        use std::fmt::Write as _;
        let mut out = String::new();
        let _ = writeln!(out, "{:<4} {:<10} {:<8} source", "key", "persona", "status");
        for e in &self.entries {
            let status = match (&e.error, e.overridden, e.overrides) {
                (Some(_), _, _) => "INVALID",
                (None, true, _) => "overridden",
                (None, false, true) => "override",
                (None, false, false) => "ok",
            };
            let _ = writeln!(
                out,
                "{:<4} {:<10} {:<8} {}",
                hotkey_label(e.hotkey),
                e.name.as_deref().unwrap_or("?"),
                status,
                e.source.describe()
            );
            if let Some(err) = &e.error {
                for line in err.to_string().lines() {
                    let _ = writeln!(out, "       {line}");
                }
            }
        }
        out
    }
}
