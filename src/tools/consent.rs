//! Asking the user before a tool changes anything. The question goes out as an event
//! (the TUI shows it; the journal keeps it); the answer comes back through a `Desk`
//! from a key (`y`/`n`) or from the user's own words ("yes", "no"). A front-end
//! with nobody to ask (headless) refuses.

use crate::bus::Cancel;
use crossbeam_channel::{Receiver, Sender};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The user's answer, and how it was given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    Yes(&'static str),
    No(&'static str),
    /// Nobody can be asked (headless): refused.
    NobodyToAsk,
    /// The turn was cancelled (barge-in) before an answer.
    Cancelled,
    /// No answer in time: refused.
    NoAnswer,
}

/// Where consent questions are answered. One question at a time (the LLM thread asks
/// them one after another).
#[derive(Debug)]
pub struct Desk {
    tx: Sender<(bool, &'static str)>,
    rx: Receiver<(bool, &'static str)>,
    waiting: AtomicBool,
    interactive: bool,
    /// How long a question waits for its answer.
    patience: Duration,
    one_at_a_time: Mutex<()>,
}

impl Desk {
    /// A desk whose questions someone answers (the TUI).
    pub fn interactive() -> Arc<Self> {
        Arc::new(Self::new(true))
    }

    /// A desk with nobody behind it: every question is refused at once.
    pub fn nobody() -> Arc<Self> {
        Arc::new(Self::new(false))
    }

    fn new(interactive: bool) -> Self {
        let (tx, rx) = crossbeam_channel::unbounded();
        Self {
            tx,
            rx,
            waiting: AtomicBool::new(false),
            interactive,
            patience: Duration::from_secs(60),
            one_at_a_time: Mutex::new(()),
        }
    }

    /// Whether a question waits for its answer now (the TUI's `y`/`n` and the
    /// recogniser's yes/no go to it only then).
    pub fn waiting(&self) -> bool {
        self.waiting.load(Ordering::SeqCst)
    }

    /// Answer the waiting question; `by` says how ("key", "voice"). An answer with no
    /// question waiting is dropped.
    pub fn answer(&self, yes: bool, by: &'static str) -> bool {
        if !self.waiting() {
            return false;
        }
        self.tx.send((yes, by)).is_ok()
    }

    /// Wait for the answer to a question already shown. Blocks.
    pub fn ask(&self, cancel: &Cancel) -> Answer {
        if !self.interactive {
            return Answer::NobodyToAsk;
        }
        let _one = self.one_at_a_time.lock().unwrap_or_else(|e| e.into_inner());
        // An answer given before this question was asked is not its answer.
        while self.rx.try_recv().is_ok() {}
        self.waiting.store(true, Ordering::SeqCst);
        let started = std::time::Instant::now();
        let answer = loop {
            if cancel.is_cancelled() {
                break Answer::Cancelled;
            }
            if started.elapsed() > self.patience {
                break Answer::NoAnswer;
            }
            match self.rx.recv_timeout(Duration::from_millis(20)) {
                Ok((true, by)) => break Answer::Yes(by),
                Ok((false, by)) => break Answer::No(by),
                Err(_) => {}
            }
        };
        self.waiting.store(false, Ordering::SeqCst);
        answer
    }
}

/// A spoken answer to a consent question, from the recogniser's words: `Some(true)`
/// for yes, `Some(false)` for no, `None` when the words are neither.
pub fn spoken_answer(words: &str) -> Option<bool> {
    let w: Vec<String> = words
        .split(|c: char| !c.is_alphanumeric() && c != '\'')
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .collect();
    let yes = [
        "yes", "yeah", "yep", "sure", "ok", "okay", "go", "do", "allow", "confirm",
    ];
    let no = [
        "no", "nope", "don't", "dont", "stop", "cancel", "deny", "not",
    ];
    // "no" anywhere wins: "yes, no, don't" is not a yes.
    if w.iter().any(|x| no.contains(&x.as_str())) {
        Some(false)
    } else if w.iter().take(3).any(|x| yes.contains(&x.as_str())) {
        Some(true)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spoken_yes_and_no() {
        assert_eq!(spoken_answer(" Yes."), Some(true));
        assert_eq!(spoken_answer(" Yeah, go ahead"), Some(true));
        assert_eq!(spoken_answer(" No, don't."), Some(false));
        assert_eq!(spoken_answer(" Yes, no, wait"), Some(false));
        assert_eq!(spoken_answer(" what time is it"), None);
    }

    #[test]
    fn a_key_answers_the_waiting_question_and_nothing_else() {
        let d = Desk::interactive();
        assert!(!d.answer(true, "key"), "no question waits");
        let d2 = d.clone();
        let t = std::thread::spawn(move || d2.ask(&Cancel::new()));
        while !d.waiting() {
            std::thread::sleep(Duration::from_millis(5));
        }
        assert!(d.answer(false, "key"));
        assert_eq!(t.join().unwrap(), Answer::No("key"));
        assert_eq!(Desk::nobody().ask(&Cancel::new()), Answer::NobodyToAsk);
    }

    #[test]
    fn a_cancel_ends_the_wait() {
        let d = Desk::interactive();
        let c = Cancel::new();
        c.cancel();
        assert_eq!(d.ask(&c), Answer::Cancelled);
    }
}
