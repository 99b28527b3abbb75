//! The one turn rule, counted in model steps: the assistant's turn opens with its
//! first words and ends after `TURN_GAP_STEPS` steps without any (or on a reset, an
//! unload, a failure, the end). The engine announces `TurnEnded`; the feed and the
//! journal both follow it, so `history show` and `--resume` split turns exactly as the
//! screen did.

/// 15 steps of 80 ms: 1.2 s without words ends a turn.
pub const TURN_GAP_STEPS: u32 = 15;

#[derive(Debug, Default)]
pub struct TurnTracker {
    open: bool,
    quiet_steps: u32,
}

impl TurnTracker {
    /// One model step; true when it ended the turn.
    pub fn step(&mut self, spoke_text: bool) -> bool {
        if spoke_text {
            self.open = true;
            self.quiet_steps = 0;
            return false;
        }
        self.quiet_steps = self.quiet_steps.saturating_add(1);
        self.open && self.quiet_steps >= TURN_GAP_STEPS && self.close()
    }

    /// End the turn now (reset, unload, failure, end); true if one was open.
    pub fn close(&mut self) -> bool {
        std::mem::take(&mut self.open)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_turn_ends_after_the_gap_and_only_once() {
        let mut t = TurnTracker::default();
        assert!(!t.step(false), "no turn before any words");
        assert!(!t.step(true));
        for _ in 0..TURN_GAP_STEPS - 1 {
            assert!(!t.step(false));
        }
        assert!(t.step(false), "the gap ends it");
        for _ in 0..40 {
            assert!(!t.step(false), "ended once");
        }
        assert!(!t.step(true));
        assert!(t.close(), "closing an open turn ends it");
        assert!(!t.close());
    }

    #[test]
    fn words_within_the_gap_keep_the_turn_open() {
        let mut t = TurnTracker::default();
        t.step(true);
        for _ in 0..5 {
            for _ in 0..TURN_GAP_STEPS - 1 {
                assert!(!t.step(false));
            }
            assert!(!t.step(true));
        }
    }
}
