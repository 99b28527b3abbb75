//! The activity feed: timestamped entries, how they wrap to a width, and where the
//! view sits. The view follows the newest row until the user scrolls up; a pinned
//! view is held as (entry, row) from the top, so new lines never move it.

use super::format;
use crate::bus::Severity;
use std::borrow::Cow;
use std::time::Duration;
use unicode_width::{UnicodeWidthChar, UnicodeWidthStr};

#[derive(Debug, Clone, PartialEq)]
pub enum EntryKind {
    /// One assistant turn; its words stream into `text`.
    Assistant,
    /// The user spoke; `ended` is set once the voice-activity rule says they stopped.
    User {
        ended: Option<Duration>,
    },
    /// The user's words as the recogniser heard them (cascade mode).
    Said,
    /// A turn the user typed (`/`, cascade mode).
    Typed,
    /// Something went as it should (weights found, model ready).
    Success,
    Notice(Severity),
    /// A persona switch.
    Persona,
    /// A turn from the previous session (`--resume`), shown dimmed.
    Previous,
    /// A tool call (cascade mode); its result is the remedy row, folded or whole.
    Tool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct FeedEntry {
    pub at: Duration,
    pub kind: EntryKind,
    pub text: String,
    pub remedy: Option<String>,
}

impl FeedEntry {
    pub fn new(at: Duration, kind: EntryKind, text: impl Into<String>) -> Self {
        Self {
            at,
            kind,
            text: text.into(),
            remedy: None,
        }
    }

    /// What the entry says, as shown.
    pub fn body(&self) -> Cow<'_, str> {
        match &self.kind {
            EntryKind::Assistant | EntryKind::Said => Cow::Borrowed(self.text.trim_start()),
            EntryKind::User { ended: None } => Cow::Borrowed("you are speaking…"),
            EntryKind::User { ended: Some(end) } => {
                let secs = end.saturating_sub(self.at).as_secs_f64();
                Cow::Owned(format!("you spoke for {}", format::duration(secs)))
            }
            _ => Cow::Borrowed(&self.text),
        }
    }
}

/// Which part of an entry a wrapped row shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RowPart {
    /// The first row: timestamp and glyph, then text.
    First,
    /// A continuation of the body, under the text.
    Body,
    /// The remedy; `first` marks the row that carries the arrow.
    Remedy { first: bool },
}

#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub part: RowPart,
    pub text: String,
}

/// Columns before the text: timestamp, space, glyph, space.
pub fn gutter(entry: &FeedEntry) -> usize {
    // `mm:ss` or `h:mm:ss` (see format::timestamp), without formatting it.
    let hours = entry.at.as_secs() / 3600;
    let ts = if hours == 0 {
        5
    } else {
        hours.to_string().len() + 6
    };
    ts + 3
}

/// Columns of the arrow that leads a remedy.
pub const REMEDY_MARK: usize = 2;

/// The rows `entry` takes at `width` columns.
pub fn wrap_entry(entry: &FeedEntry, width: u16) -> Vec<Row> {
    let text_w = (width as usize).saturating_sub(gutter(entry)).max(1);
    let mut rows: Vec<Row> = wrap_text(&entry.body(), text_w)
        .into_iter()
        .enumerate()
        .map(|(i, text)| Row {
            part: if i == 0 {
                RowPart::First
            } else {
                RowPart::Body
            },
            text,
        })
        .collect();
    if let Some(remedy) = &entry.remedy {
        let w = text_w.saturating_sub(REMEDY_MARK).max(1);
        rows.extend(
            wrap_text(remedy, w)
                .into_iter()
                .enumerate()
                .map(|(i, text)| Row {
                    part: RowPart::Remedy { first: i == 0 },
                    text,
                }),
        );
    }
    rows
}

pub fn row_count(entry: &FeedEntry, width: u16) -> usize {
    wrap_entry(entry, width).len()
}

/// Greedy word wrap to `width` columns; words wider than a row are split.
/// Always at least one row, so an empty entry still shows its timestamp.
pub fn wrap_text(text: &str, width: usize) -> Vec<String> {
    let width = width.max(1);
    let mut rows = Vec::new();
    for para in text.split('\n') {
        let mut row = String::new();
        let mut row_w = 0;
        for word in para.split_whitespace() {
            let word_w = word.width();
            let sep = usize::from(row_w > 0);
            if row_w + sep + word_w <= width {
                if sep == 1 {
                    row.push(' ');
                }
                row.push_str(word);
                row_w += sep + word_w;
                continue;
            }
            if row_w > 0 {
                rows.push(std::mem::take(&mut row));
                row_w = 0;
            }
            if word_w <= width {
                row.push_str(word);
                row_w = word_w;
                continue;
            }
            for c in word.chars() {
                let cw = c.width().unwrap_or(0);
                if row_w + cw > width && row_w > 0 {
                    rows.push(std::mem::take(&mut row));
                    row_w = 0;
                }
                row.push(c);
                row_w += cw;
            }
        }
        rows.push(row);
    }
    rows
}

/// A row in the feed: `row` of entry `entry`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    pub entry: usize,
    pub row: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum View {
    /// Show the newest rows.
    Follow,
    /// Show rows from this one down.
    Pinned(Position),
}

#[derive(Debug, Clone, Default)]
pub struct Feed {
    entries: Vec<FeedEntry>,
    pinned: Option<Position>,
}

impl Feed {
    pub fn entries(&self) -> &[FeedEntry] {
        &self.entries
    }

    pub fn push(&mut self, entry: FeedEntry) {
        self.entries.push(entry);
    }

    pub fn get_mut(&mut self, i: usize) -> Option<&mut FeedEntry> {
        self.entries.get_mut(i)
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn view(&self) -> View {
        self.pinned.map_or(View::Follow, View::Pinned)
    }

    pub fn is_following(&self) -> bool {
        self.pinned.is_none()
    }

    /// The first row shown in a view `height` rows tall at `width` columns.
    pub fn top(&self, width: u16, height: usize) -> Position {
        match self.pinned {
            Some(p) => self.clamp(p, width),
            None => self.back(self.end(), height, width),
        }
    }

    /// Rows of the view, top to bottom, with the entry each belongs to.
    pub fn visible(&self, width: u16, height: usize) -> Vec<(&FeedEntry, Row)> {
        let mut out = Vec::with_capacity(height);
        if self.pinned.is_none() {
            // Following: wrap from the newest entry back, each entry once.
            'fill: for entry in self.entries.iter().rev() {
                for row in wrap_entry(entry, width).into_iter().rev() {
                    if out.len() == height {
                        break 'fill;
                    }
                    out.push((entry, row));
                }
            }
            out.reverse();
            return out;
        }
        let start = self.top(width, height);
        for (i, entry) in self.entries.iter().enumerate().skip(start.entry) {
            let skip = if i == start.entry { start.row } else { 0 };
            for row in wrap_entry(entry, width).into_iter().skip(skip) {
                if out.len() == height {
                    return out;
                }
                out.push((entry, row));
            }
        }
        out
    }

    /// Rows hidden below the view (0 while following).
    pub fn rows_below(&self, width: u16, height: usize) -> usize {
        match self.pinned {
            None => 0,
            Some(p) => self
                .rows_from(self.clamp(p, width), width, usize::MAX)
                .saturating_sub(height),
        }
    }

    pub fn scroll_up(&mut self, rows: usize, width: u16, height: usize) {
        let top = self.top(width, height);
        let new = self.back(top, rows, width);
        // Nothing above the view: stay as it is (following keeps following).
        if new != top {
            self.pinned = Some(new);
        }
    }

    pub fn scroll_down(&mut self, rows: usize, width: u16, height: usize) {
        let Some(p) = self.pinned else { return };
        let new = self.forward(self.clamp(p, width), rows, width);
        self.pinned = Some(new);
        if self.rows_from(new, width, height + 1) <= height {
            self.pinned = None;
        }
    }

    pub fn scroll_to_top(&mut self, width: u16, height: usize) {
        let first = Position { entry: 0, row: 0 };
        self.pinned = (self.rows_from(first, width, height + 1) > height).then_some(first);
    }

    pub fn follow(&mut self) {
        self.pinned = None;
    }

    /// One past the last row.
    fn end(&self) -> Position {
        Position {
            entry: self.entries.len(),
            row: 0,
        }
    }

    fn clamp(&self, p: Position, width: u16) -> Position {
        match self.entries.get(p.entry) {
            None => self.end(),
            Some(e) => Position {
                entry: p.entry,
                row: p.row.min(row_count(e, width).saturating_sub(1)),
            },
        }
    }

    /// `rows` rows above `p`, stopping at the first row.
    fn back(&self, mut p: Position, mut rows: usize, width: u16) -> Position {
        while rows > 0 {
            if p.row >= rows {
                p.row -= rows;
                return p;
            }
            rows -= p.row;
            if p.entry == 0 {
                return Position { entry: 0, row: 0 };
            }
            p.entry -= 1;
            p.row = row_count(&self.entries[p.entry], width);
        }
        p
    }

    /// `rows` rows below `p`, stopping at the last row.
    fn forward(&self, mut p: Position, mut rows: usize, width: u16) -> Position {
        while rows > 0 && p.entry < self.entries.len() {
            let n = row_count(&self.entries[p.entry], width);
            let left = n - p.row;
            if rows < left {
                p.row += rows;
                return p;
            }
            rows -= left;
            if p.entry + 1 == self.entries.len() {
                return Position {
                    entry: p.entry,
                    row: n - 1,
                };
            }
            p = Position {
                entry: p.entry + 1,
                row: 0,
            };
        }
        p
    }

    /// Rows from `p` to the end, counting no further than `limit`.
    fn rows_from(&self, p: Position, width: u16, limit: usize) -> usize {
        let mut n = 0;
        for (i, e) in self.entries.iter().enumerate().skip(p.entry) {
            n += row_count(e, width) - if i == p.entry { p.row } else { 0 };
            if n >= limit {
                break;
            }
        }
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed(n: usize) -> Feed {
        let mut f = Feed::default();
        for i in 0..n {
            f.push(FeedEntry::new(
                Duration::from_secs(i as u64),
                EntryKind::Assistant,
                format!("line {i}"),
            ));
        }
        f
    }

    fn shown(f: &Feed, h: usize) -> Vec<String> {
        f.visible(40, h).into_iter().map(|(_, r)| r.text).collect()
    }

    #[test]
    fn gutter_matches_the_timestamp() {
        for secs in [0, 59, 3599, 3600, 36_000, 360_000] {
            let e = FeedEntry::new(Duration::from_secs(secs), EntryKind::Assistant, "x");
            assert_eq!(gutter(&e), format::timestamp(e.at).len() + 3, "{secs}");
        }
    }

    #[test]
    fn wraps_words_and_splits_long_ones() {
        assert_eq!(
            wrap_text("the quick brown fox", 9),
            vec!["the quick", "brown fox"]
        );
        assert_eq!(wrap_text("abcdefghij", 4), vec!["abcd", "efgh", "ij"]);
        assert_eq!(wrap_text("", 4), vec![""]);
        let mut e = FeedEntry::new(
            Duration::ZERO,
            EntryKind::Notice(Severity::Error),
            "weights failed",
        );
        e.remedy = Some("pass a model dir".into());
        let rows = wrap_entry(&e, 20);
        assert_eq!(
            rows.iter().map(|r| r.part).collect::<Vec<_>>(),
            vec![
                RowPart::First,
                RowPart::Body,
                RowPart::Remedy { first: true },
                RowPart::Remedy { first: false },
            ]
        );
    }

    #[test]
    fn follows_newest_until_scrolled_up_and_stays_put() {
        let mut f = feed(10);
        assert_eq!(shown(&f, 3), vec!["line 7", "line 8", "line 9"]);
        f.scroll_up(2, 40, 3);
        assert_eq!(shown(&f, 3), vec!["line 5", "line 6", "line 7"]);
        f.push(FeedEntry::new(
            Duration::ZERO,
            EntryKind::Assistant,
            "line 10",
        ));
        assert_eq!(
            shown(&f, 3),
            vec!["line 5", "line 6", "line 7"],
            "new lines don't move a pinned view"
        );
        assert_eq!(f.rows_below(40, 3), 3);
        f.scroll_down(2, 40, 3);
        assert!(!f.is_following());
        f.scroll_down(5, 40, 3);
        assert!(f.is_following(), "reaching the bottom follows again");
        assert_eq!(shown(&f, 3), vec!["line 8", "line 9", "line 10"]);
        f.scroll_to_top(40, 3);
        assert_eq!(shown(&f, 3), vec!["line 0", "line 1", "line 2"]);
        f.scroll_up(5, 40, 3);
        assert_eq!(shown(&f, 3), vec!["line 0", "line 1", "line 2"]);
    }

    #[test]
    fn short_feed_does_not_scroll() {
        let mut f = feed(2);
        f.scroll_up(1, 40, 5);
        assert!(f.is_following());
        f.scroll_to_top(40, 5);
        assert!(f.is_following());
        assert_eq!(shown(&f, 5), vec!["line 0", "line 1"]);
    }
}
