//! The conversation as the LLM sees it: what the user said and what of the reply was
//! actually played, bounded by tokens (oldest turns go first).

use super::parts::{ChatMessage, ChatRole};

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

    /// Drop the oldest messages until `count(all) <= budget`, keeping at least the
    /// last one, and starting on a user message.
    pub fn bound(&mut self, budget: usize, count: &dyn Fn(&str) -> usize) {
        let mut total: usize = self.messages.iter().map(|m| count(&m.content)).sum();
        let mut drop = 0;
        while total > budget && drop + 1 < self.messages.len() {
            total -= count(&self.messages[drop].content);
            drop += 1;
        }
        while drop + 1 < self.messages.len() && self.messages[drop].role != ChatRole::User {
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
        h.bound(20, &words);
        let m = h.messages();
        assert!(m.iter().map(|m| words(&m.content)).sum::<usize>() <= 20);
        assert_eq!(m[0].role, ChatRole::User);
        assert_eq!(m.last().unwrap().content, "last question");
        assert!(m.len() >= 3, "recent turns are kept: {m:?}");
        // A single message bigger than the budget is still kept: the user asked it.
        h.bound(1, &words);
        assert_eq!(h.messages().len(), 1);
    }
}
