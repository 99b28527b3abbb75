//! A persona file's error, located: file, line and column, and what to do.

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PersonaError {
    /// The file as the user knows it (a path, or `builtin:NAME.toml`).
    pub file: String,
    /// 1-based line and column (characters).
    pub line: usize,
    pub column: usize,
    pub message: String,
    pub hint: String,
}

impl fmt::Display for PersonaError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}\n  hint: {}",
            self.file, self.line, self.column, self.message, self.hint
        )
    }
}

impl std::error::Error for PersonaError {}

impl PersonaError {
    /// An error at byte `offset` of `text`.
    pub fn at(
        file: &str,
        text: &str,
        offset: usize,
        message: impl Into<String>,
        hint: impl Into<String>,
    ) -> Self {
        let (line, column) = line_col(text, offset);
        Self {
            file: file.into(),
            line,
            column,
            message: message.into(),
            hint: hint.into(),
        }
    }

    /// One line for a feed entry or a listing.
    pub fn one_line(&self) -> String {
        format!(
            "{}:{}:{}: {} (hint: {})",
            self.file, self.line, self.column, self.message, self.hint
        )
    }
}

/// 1-based line and column of byte `offset` (clamped to the text, snapped to a
/// character boundary); columns count characters, not bytes.
pub fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    (line, text[line_start..offset].chars().count() + 1)
}

#[cfg(test)]
mod tests {
    use super::line_col;

    #[test]
    fn offsets_become_lines_and_character_columns() {
        let t = "a = 1\nbé = \"x\"\n";
        assert_eq!(line_col(t, 0), (1, 1));
        assert_eq!(line_col(t, 4), (1, 5));
        assert_eq!(line_col(t, 6), (2, 1));
        // "é" is two bytes: the '=' after it is the fourth character.
        assert_eq!(line_col(t, 10), (2, 4));
        assert_eq!(line_col(t, 999), (3, 1));
    }
}
