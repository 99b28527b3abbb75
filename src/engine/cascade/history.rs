//! The conversation as the LLM sees it: what the user said and what of the reply was
//! actually played, bounded by tokens (oldest turns go first).

use crate::models::parts::{ChatMessage, ChatRole};

#[derive(Debug, Clone, Default)]
pub struct History {
    messages: Vec<ChatMessage>,
}

impl History {
    pub fn messages(&self) -> &[ChatMessage] {
        &self.messages
    }

    /// Add a message; consecutive messages of one role merge (a user who went on
    /// talking after an interrupted reply that played nothing), so roles alternate as
    /// chat templates require.
    pub fn push(&mut self, role: ChatRole, content: &str) {
        let content = content.trim();
        if content.is_empty() {
            return;
        }
        match self.messages.last_mut() {
            Some(last) if last.role == role => {
                last.content.push(' ');
                last.content.push_str(content);
            }
            _ => self.messages.push(ChatMessage {
                role,
                content: content.to_string(),
            }),
        }
    }

    /// Take back the last message if it is the user's (they went on talking while the
    /// reply was still being written): its words rejoin the turn being heard.
    pub fn take_last_user(&mut self) -> Option<String> {
        match self.messages.last() {
            Some(m) if m.role == ChatRole::User => self.messages.pop().map(|m| m.content),
            _ => None,
        }
    }

    /// Keep the conversation within `budget` as `measure` counts it (the whole prompt,
    /// template and all): when it is over, drop the oldest messages until it is within
    /// `low` (at most `budget`: the margin spares the next turns a drop each), keeping
    /// at least the last message, and starting on a user message.
    pub fn bound(&mut self, budget: usize, low: usize, measure: &dyn Fn(&[ChatMessage]) -> usize) {
        let n = self.messages.len();
        if n <= 1 || measure(&self.messages) <= budget {
            return;
        }
        let low = low.min(budget);
        // The fewest dropped that fit (the count falls as messages go): a binary search,
        // since measuring renders the whole prompt.
        let (mut lo, mut hi) = (1, n - 1);
        while lo < hi {
            let mid = (lo + hi) / 2;
            if measure(&self.messages[mid..]) <= low {
                hi = mid;
            } else {
                lo = mid + 1;
            }
        }
        let mut drop = lo;
        while drop + 1 < n && self.messages[drop].role != ChatRole::User {
            drop += 1;
        }
        self.messages.drain(..drop);
    }

    pub fn clear(&mut self) {
        self.messages.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(s: &str) -> usize {
        s.split_whitespace().count()
    }

    #[test]
    fn roles_alternate_and_blank_turns_vanish() {
        let mut h = History::default();
        h.push(ChatRole::User, "what time");
        h.push(ChatRole::User, " is it ");
        h.push(ChatRole::Assistant, "   ");
        h.push(ChatRole::Assistant, "noon");
        let m = h.messages();
        assert_eq!(m.len(), 2);
        assert_eq!(m[0].content, "what time is it");
        assert_eq!(m[1].content, "noon");
        assert_eq!(h.take_last_user(), None, "the last message is the reply");
    }

    #[test]
    fn the_oldest_turns_go_first_and_it_starts_with_the_user() {
        let mut h = History::default();
        for i in 0..10 {
            h.push(ChatRole::User, &format!("question {i} one two"));
            h.push(ChatRole::Assistant, &format!("answer {i} three four five"));
        }
        h.push(ChatRole::User, "last question");
        // The whole prompt: 50 tokens of system prompt and 4 of template a message.
        let prompt =
            |m: &[ChatMessage]| 50 + m.iter().map(|m| words(&m.content) + 4).sum::<usize>();
        let all = prompt(h.messages());
        h.bound(all, all, &prompt);
        assert_eq!(h.messages().len(), 21, "within the budget: nothing goes");
        h.bound(120, 100, &prompt);
        let m = h.messages();
        assert!(prompt(m) <= 100, "down to the low mark: {}", prompt(m));
        assert!(prompt(m) > 80, "but no further: {m:?}");
        assert_eq!(m[0].role, ChatRole::User);
        assert_eq!(m.last().unwrap().content, "last question");
        // Within the budget again: the margin means the next turn drops nothing.
        h.push(ChatRole::Assistant, "fine");
        h.push(ChatRole::User, "and now");
        let kept = h.messages().len();
        h.bound(120, 100, &prompt);
        assert_eq!(h.messages().len(), kept);
        // A single message bigger than the budget is still kept: the user asked it.
        h.bound(1, 1, &prompt);
        assert_eq!(h.messages().len(), 1);
    }
}
