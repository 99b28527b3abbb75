//! Tool calls on screen (cascade mode): the header's `acting` while one runs, the
//! consent question while one waits, and one feed line per call, its result folded.

use super::{EntryKind, UiState};
use crate::bus::ToolActivity;

/// What the screen shows of the tool calls.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ToolView {
    /// The tool running now (the header says `acting`).
    pub acting: Option<String>,
    /// The consent question waiting for `y`/`n`.
    pub asking: Option<String>,
    /// Results shown in full (`o` toggles) rather than folded to one line.
    pub expanded: bool,
    /// The tools overlay (`t`) is open.
    pub overlay: bool,
    /// The session's tools, for the overlay; `None` when the engine calls no tools.
    pub toolbox: Option<crate::tools::SharedTools>,
    /// The feed entry of the call in flight, and its number.
    open: Option<(u64, usize)>,
    /// Each finished call's feed entry and its whole result, to unfold.
    results: Vec<(usize, String)>,
}

impl ToolView {
    /// `toolbox`: `None` when the engine calls no tools.
    pub fn new(toolbox: Option<crate::tools::SharedTools>) -> Self {
        Self {
            toolbox,
            ..Default::default()
        }
    }
}

/// A result folded to one line.
const FOLDED: usize = 100;

impl UiState {
    pub(super) fn tool_activity(&mut self, a: ToolActivity) {
        match &a {
            ToolActivity::Asking { question, .. } => {
                self.tools.asking = Some(question.clone());
            }
            ToolActivity::Running { tool, .. } => {
                self.tools.asking = None;
                self.tools.acting = Some(tool.clone());
            }
            ToolActivity::Done { .. } => {
                self.tools.asking = None;
                self.tools.acting = None;
            }
        }
        let call = match &a {
            ToolActivity::Asking { call, .. }
            | ToolActivity::Running { call, .. }
            | ToolActivity::Done { call, .. } => *call,
        };
        let (head, result) = match &a {
            ToolActivity::Asking { tool, question, .. } => {
                (format!("{tool}: asking: {question} (y/n)"), None)
            }
            ToolActivity::Running { tool, args, .. } => {
                (format!("{tool} {}", crate::tools::shorten(args, 200)), None)
            }
            ToolActivity::Done {
                tool,
                args,
                consent,
                outcome,
                result,
                ms,
                ..
            } => (
                format!(
                    "{tool} {} → {outcome} in {ms:.0} ms (consent: {consent})",
                    crate::tools::shorten(args, 200)
                ),
                Some(if self.tools.expanded {
                    result.clone()
                } else {
                    crate::tools::shorten(result, FOLDED)
                }),
            ),
        };
        let now = self.now();
        let entry = super::FeedEntry {
            at: now,
            kind: EntryKind::Tool,
            text: head,
            remedy: result,
        };
        match self.tools.open.filter(|(c, _)| *c == call) {
            Some((_, i)) => {
                if let Some(e) = self.feed.get_mut(i) {
                    *e = super::FeedEntry { at: e.at, ..entry };
                }
            }
            _ => {
                // A tool's line sits between the user's words and the answer.
                self.open_assistant = None;
                self.feed.push(entry);
                self.tools.open = Some((call, self.feed.len() - 1));
            }
        }
        if let ToolActivity::Done { result, .. } = a {
            if let Some((_, i)) = self.tools.open.take() {
                self.tools.results.push((i, result));
            }
        }
    }

    /// Show the tools' results in full, or folded to one line each (`o`).
    pub fn toggle_tool_results(&mut self) {
        self.tools.expanded = !self.tools.expanded;
        for (i, full) in &self.tools.results {
            if let Some(e) = self.feed.get_mut(*i) {
                e.remedy = Some(if self.tools.expanded {
                    full.clone()
                } else {
                    crate::tools::shorten(full, FOLDED)
                });
            }
        }
    }
}
