//! Persona files: the built-ins, valid user fixtures, and one invalid fixture
//! per error, each located (file:line:column) with a hint; a broken user file
//! is skipped with a warning and never stops the rest; the CLI lists and checks.

use assistant::persona::{parse, Catalog, PersonaError, VisualizerStyle, Weights, MOSHIKA};
use ratatui::style::Color;
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::Command;

fn fixture(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/personas")
        .join(rel)
}

fn check(rel: &str) -> Result<assistant::persona::Persona, PersonaError> {
    Catalog::builtin().check_file(&fixture(rel))
}

#[test]
fn two_user_files_may_not_claim_one_name() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(fixture("valid/nova.toml"), dir.path().join("a.toml")).unwrap();
    let text = std::fs::read_to_string(fixture("valid/nova.toml"))
        .unwrap()
        .replace("F7", "F8");
    std::fs::write(dir.path().join("b.toml"), text).unwrap();
    let c = Catalog::load_from(Some(dir.path()));
    let w = c.warnings();
    assert_eq!(w.len(), 1, "{w:?}");
    assert!(
        w[0].contains("b.toml:1:1: persona \"Nova\" is already defined in")
            && w[0].contains("a.toml"),
        "{w:?}"
    );
    assert_eq!(c.personas.iter().filter(|p| p.name == "Nova").count(), 1);
}

fn located(rel: &str, line: usize, column: usize, message: &str, hint: &str) {
    let e = check(rel).expect_err(rel);
    assert!(e.file.ends_with(rel), "{e}");
    assert_eq!((e.line, e.column), (line, column), "{e}");
    assert!(e.message.contains(message), "{e}");
    assert!(e.hint.contains(hint), "{e}");
    // The one-line form carries all of it too.
    let one = e.one_line();
    assert!(
        one.contains(&format!("{rel}:{line}:{column}:")) && one.contains(hint),
        "{one}"
    );
}

#[test]
fn builtins_are_valid_distinct_and_include_a_plain_default() {
    let c = Catalog::builtin();
    assert!(
        c.entries.iter().all(|e| e.error.is_none()),
        "{}",
        c.listing()
    );
    assert!(c.personas.len() >= 6);
    let names: HashSet<_> = c.personas.iter().map(|p| p.name.clone()).collect();
    assert_eq!(names.len(), c.personas.len());
    let keys: HashSet<_> = c
        .personas
        .iter()
        .map(|p| p.hotkey.expect("every built-in has a key"))
        .collect();
    assert_eq!(keys.len(), c.personas.len(), "distinct hotkeys");
    let looks: HashSet<_> = c
        .personas
        .iter()
        .map(|p| {
            format!(
                "{:?}{:?}{:?}",
                p.theme.primary, p.theme.background, p.theme.border
            )
        })
        .collect();
    assert_eq!(looks.len(), c.personas.len(), "distinct looks");
    let sampling: HashSet<_> = c
        .personas
        .iter()
        .map(|p| {
            format!(
                "{}/{}/{}",
                p.voice.temperature, p.voice.text_temperature, p.voice.top_k
            )
        })
        .collect();
    assert_eq!(
        sampling.len(),
        c.personas.len(),
        "distinct sampling characters"
    );
    // The default is today's look: cyan on the terminal's own background, default sampling, CLI weights.
    let d = &c.personas[0];
    assert_eq!((d.name.as_str(), d.hotkey), ("Moshi", Some(1)));
    assert_eq!(
        (d.theme.primary, d.theme.background, d.theme.text),
        (Color::Cyan, Color::Reset, Color::Reset)
    );
    assert_eq!(d.voice.weights, Weights::Default);
    let s = assistant::engine::Sampling::default();
    assert_eq!(
        (d.voice.temperature, d.voice.text_temperature, d.voice.top_k),
        (s.temperature, s.text_temperature, s.top_k)
    );
}

#[test]
fn a_valid_file_with_every_field_parses_to_what_it_says() {
    let p = check("valid/nova.toml").unwrap();
    assert_eq!(p.name, "Nova");
    assert_eq!(p.hotkey, Some(7));
    assert!(p.greeting);
    assert_eq!(p.visualizer, VisualizerStyle::Dots);
    assert_eq!(
        p.tts_voice.as_deref(),
        Some("expresso/ex03-ex01_happy_001_channel1_334s.wav")
    );
    assert_eq!(p.llm_model.as_deref(), Some("llama3.2:3b"));
    assert_eq!(p.theme.primary, Color::Rgb(0xff, 0x00, 0xaa));
    assert_eq!(p.theme.secondary, Color::LightGreen);
    assert_eq!(p.theme.accent, Color::Indexed(214));
    assert_eq!(p.theme.background, Color::Rgb(0x10, 0x10, 0x10));
    assert_eq!(p.voice.weights, Weights::Repo(MOSHIKA.into()));
    assert_eq!(
        (p.voice.temperature, p.voice.text_temperature, p.voice.top_k),
        (1.1, 0.4, 64)
    );
    let m = check("valid/minimal.toml").unwrap();
    assert_eq!((m.tts_voice.clone(), m.llm_model.clone()), (None, None));
    assert_eq!(
        (m.hotkey, m.theme.background, m.voice.weights.clone()),
        (None, Color::Reset, Weights::Default)
    );
}

#[test]
fn malformed_toml_is_located_with_a_hint() {
    located(
        "invalid/malformed.toml",
        2,
        34,
        "invalid basic string",
        "not valid TOML",
    );
}

#[test]
fn unknown_fields_are_errors_at_top_level_and_in_tables() {
    located(
        "invalid/unknown_field.toml",
        3,
        1,
        "unknown field `mood`",
        "remove or rename",
    );
    located(
        "invalid/unknown_theme_field.toml",
        10,
        1,
        "unknown field `sparkle`",
        "remove or rename",
    );
}

#[test]
fn bad_colours_point_at_the_value() {
    located(
        "invalid/bad_colour.toml",
        6,
        13,
        "theme.secondary: \"greenish\" is not a colour",
        "#rrggbb",
    );
}

#[test]
fn duplicate_hotkeys_name_the_owner_and_the_free_keys() {
    located(
        "invalid/duplicate_hotkey.toml",
        2,
        10,
        "hotkey F2 is already JARVIS's (builtin:jarvis.toml)",
        "F7",
    );
}

#[test]
fn a_missing_name_says_to_add_one() {
    located(
        "invalid/missing_name.toml",
        1,
        1,
        "missing field `name`",
        "add a name",
    );
}

#[test]
fn out_of_range_values_are_located() {
    located(
        "invalid/bad_hotkey.toml",
        2,
        10,
        "\"F13\" is not a function key",
        "F1 to F12",
    );
    located(
        "invalid/bad_temperature.toml",
        12,
        15,
        "voice.temperature = -1 is out of range",
        "from 0",
    );
}

#[test]
fn an_empty_name_is_an_error() {
    let text = std::fs::read_to_string(fixture("valid/minimal.toml"))
        .unwrap()
        .replace("name = \"Minimal\"", "name = \"  \"");
    let e = parse("x.toml", &text, None).unwrap_err();
    assert_eq!((e.line, e.column), (1, 8), "{e}");
    assert!(e.message.contains("empty"), "{e}");
}

fn user_dir_with(files: &[&str]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for f in files {
        let name = Path::new(f).file_name().unwrap();
        std::fs::copy(fixture(f), dir.path().join(name)).unwrap();
    }
    dir
}

#[test]
fn user_files_add_and_override_and_broken_ones_are_skipped_with_warnings() {
    let dir = user_dir_with(&[
        "valid/nova.toml",
        "valid/jarvis_override.toml",
        "invalid/bad_colour.toml",
        "invalid/duplicate_hotkey.toml",
        "invalid/malformed.toml",
    ]);
    let c = Catalog::load_from(Some(dir.path()));
    let builtin = Catalog::builtin();
    // Nova added at the end; JARVIS replaced in place; the broken three skipped.
    assert_eq!(c.personas.len(), builtin.personas.len() + 1);
    assert_eq!(c.personas.last().unwrap().name, "Nova");
    let j = c.find("jarvis").unwrap();
    assert_eq!(
        j,
        builtin.find("JARVIS").unwrap(),
        "an override keeps its place"
    );
    assert_eq!(c.personas[j].description, "My own JARVIS.");
    assert_eq!(c.personas[j].theme.primary, Color::Rgb(0xff, 0xd7, 0x00));
    let warnings = c.warnings();
    assert_eq!(warnings.len(), 3, "{warnings:?}");
    assert!(
        warnings.iter().any(|w| w.contains("bad_colour.toml:6:13")),
        "{warnings:?}"
    );
    assert!(
        warnings
            .iter()
            .any(|w| w.contains("duplicate_hotkey.toml:2:10") && w.contains("JARVIS")),
        "{warnings:?}"
    );
    assert!(
        warnings.iter().any(|w| w.contains("malformed.toml:2:34")),
        "{warnings:?}"
    );
    let listing = c.listing();
    assert!(
        listing.contains("overridden")
            && listing.contains("override")
            && listing.contains("INVALID"),
        "{listing}"
    );
}

fn assistant(config: &Path, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_assistant"))
        .args(args)
        .env("XDG_CONFIG_HOME", config)
        .env("XDG_STATE_HOME", config)
        .output()
        .unwrap()
}

#[test]
fn assistant_personas_lists_every_file_and_check_exits_non_zero_with_the_location() {
    let config = tempfile::tempdir().unwrap();
    let dir = config.path().join("assistant/personas");
    std::fs::create_dir_all(&dir).unwrap();
    for f in ["valid/nova.toml", "invalid/unknown_field.toml"] {
        std::fs::copy(fixture(f), dir.join(Path::new(f).file_name().unwrap())).unwrap();
    }
    let out = assistant(config.path(), &["personas"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    for line in [
        "F1   Moshi      ok       builtin:moshi.toml",
        "F2   JARVIS     ok       builtin:jarvis.toml",
        "F7   Nova       ok",
    ] {
        assert!(text.contains(line), "{line:?} missing from:\n{text}");
    }
    assert!(
        text.contains("INVALID") && text.contains("unknown_field.toml:3:1: unknown field `mood`"),
        "{text}"
    );

    let ok = assistant(
        config.path(),
        &[
            "personas",
            "check",
            fixture("valid/nova.toml").to_str().unwrap(),
        ],
    );
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let bad = assistant(
        config.path(),
        &[
            "personas",
            "check",
            fixture("invalid/bad_colour.toml").to_str().unwrap(),
        ],
    );
    assert_eq!(bad.status.code(), Some(1));
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(
        err.contains("bad_colour.toml:6:13: theme.secondary") && err.contains("hint: "),
        "{err}"
    );
}

#[test]
fn an_unknown_persona_at_start_is_a_usage_error_naming_the_choices() {
    let config = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_assistant"))
        .args([
            "--headless",
            "--engine",
            "loopback",
            "--persona",
            "Nobody",
            "--no-journal",
        ])
        .env("XDG_CONFIG_HOME", config.path())
        .env("XDG_STATE_HOME", config.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("no persona named \"Nobody\"") && err.contains("JARVIS"),
        "{err}"
    );
}
