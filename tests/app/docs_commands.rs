//! The docs cannot rot: every `assistant …` line in a ```sh block of README.md and docs/*.md
//! parses with the real command line, every docs page is linked from the README, and every
//! relative link resolves.

use assistant::cli::Cli;
use clap::Parser;
use std::path::{Path, PathBuf};

pub(crate) fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// README.md and every docs/*.md, sorted.
pub(crate) fn doc_files() -> Vec<PathBuf> {
    let mut pages: Vec<PathBuf> = std::fs::read_dir(root().join("docs"))
        .expect("docs/ exists")
        .map(|entry| entry.expect("readable docs/ entry").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "md"))
        .collect();
    pages.sort();
    let mut files = vec![root().join("README.md")];
    files.extend(pages);
    files
}

pub(crate) fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Joins a shell line that ends in `\` with the next one.
#[derive(Default)]
pub(crate) struct Continuation(Option<(usize, String)>);

impl Continuation {
    /// Feed lines in order (with their numbers); a whole line comes back, with its first
    /// line's number, once a line does not end in `\`.
    pub(crate) fn push(&mut self, number: usize, line: &str) -> Option<(usize, String)> {
        let (number, joined) = match self.0.take() {
            Some((first, start)) => (first, format!("{start} {line}")),
            None => (number, line.to_string()),
        };
        match joined.strip_suffix('\\') {
            Some(head) => {
                self.0 = Some((number, head.to_string()));
                None
            }
            None => Some((number, joined)),
        }
    }
}

/// The `assistant` command lines in ```sh blocks: (line number, arguments). Leading
/// `NAME=value` environment assignments are dropped, `# comments` are shlex's, and a
/// line ending in `\` goes on to the next.
fn assistant_commands(text: &str) -> Vec<(usize, Result<Vec<String>, String>)> {
    let mut commands = Vec::new();
    let mut in_sh = false;
    let mut pending = Continuation::default();
    for (index, line) in text.lines().enumerate() {
        let trimmed = line.trim();
        if trimmed.starts_with("```") {
            in_sh = !in_sh && trimmed == "```sh";
            continue;
        }
        if !in_sh {
            continue;
        }
        let Some((number, joined)) = pending.push(index + 1, trimmed) else {
            continue;
        };
        let Some(words) = shlex::split(&joined) else {
            if joined.contains("assistant") {
                commands.push((number, Err(format!("unbalanced quotes: {joined}"))));
            }
            continue;
        };
        let words: Vec<String> = words
            .into_iter()
            .skip_while(|word| is_env_assignment(word))
            .collect();
        if words.first().map(String::as_str) == Some("assistant") {
            commands.push((number, Ok(words)));
        }
    }
    commands
}

pub(crate) fn is_env_assignment(word: &str) -> bool {
    match word.split_once('=') {
        Some((name, _)) => {
            !name.is_empty()
                && name
                    .chars()
                    .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
        }
        None => false,
    }
}

/// Every failure as `file:line: command: clap's first line`.
fn parse_failures(file: &str, text: &str) -> (usize, Vec<String>) {
    let commands = assistant_commands(text);
    let failures = commands
        .iter()
        .filter_map(|(line, words)| match words {
            Err(why) => Some(format!("{file}:{line}: {why}")),
            Ok(words) => Cli::try_parse_from(words).err().map(|e| {
                let first = e.to_string().lines().next().unwrap_or_default().to_string();
                format!("{file}:{line}: `{}`: {first}", words.join(" "))
            }),
        })
        .collect();
    (commands.len(), failures)
}

#[test]
fn every_assistant_command_in_the_docs_parses_with_the_real_cli() {
    let mut total = 0;
    let mut failures = Vec::new();
    for path in doc_files() {
        let name = path.strip_prefix(root()).unwrap().display().to_string();
        let (count, mut failed) = parse_failures(&name, &read(&path));
        total += count;
        failures.append(&mut failed);
    }
    assert!(
        failures.is_empty(),
        "commands in the docs that `assistant` does not accept:\n{}",
        failures.join("\n")
    );
    // The guide shows dozens; a handful means the extraction broke, not the docs.
    assert!(
        total >= 40,
        "only {total} `assistant` commands found in the docs"
    );
}

#[test]
fn the_check_names_the_file_and_line_of_a_command_the_cli_refuses() {
    let text = "intro\n```sh\nassistant --demo   # fine\nFOO=1 assistant --no-such-flag\n```\n```\nassistant --not-sh-so-ignored\n```\n";
    let (count, failures) = parse_failures("page.md", text);
    assert_eq!(count, 2);
    assert_eq!(failures.len(), 1, "{failures:?}");
    assert!(
        failures[0].starts_with("page.md:4: `assistant --no-such-flag`"),
        "{}",
        failures[0]
    );
}

#[test]
fn every_docs_page_is_linked_from_the_readme() {
    let readme = read(&root().join("README.md"));
    let unlinked: Vec<String> = doc_files()
        .iter()
        .skip(1)
        .map(|path| path.file_name().unwrap().to_string_lossy().to_string())
        .filter(|name| !readme.contains(&format!("](docs/{name}")))
        .collect();
    assert!(
        unlinked.is_empty(),
        "docs pages the README does not link to: {unlinked:?}"
    );
}

#[test]
fn every_relative_link_in_the_docs_resolves_to_a_file() {
    let mut broken = Vec::new();
    for path in doc_files() {
        let text = read(&path);
        let dir = path.parent().unwrap();
        for (index, line) in text.lines().enumerate() {
            for target in link_targets(line) {
                let file = target.split('#').next().unwrap_or_default();
                if file.is_empty() || file.contains("://") || file.starts_with("mailto:") {
                    continue;
                }
                if !dir.join(file).exists() {
                    let name = path.strip_prefix(root()).unwrap().display();
                    broken.push(format!("{name}:{}: {target}", index + 1));
                }
            }
        }
    }
    assert!(
        broken.is_empty(),
        "links to nothing:\n{}",
        broken.join("\n")
    );
}

/// The targets of `[text](target)` links on one line.
fn link_targets(line: &str) -> Vec<&str> {
    line.match_indices("](")
        .filter_map(|(at, _)| {
            let rest = &line[at + 2..];
            rest.find(')').map(|end| rest[..end].trim())
        })
        .collect()
}
