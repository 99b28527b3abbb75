//! The Failed state: audio keeps flowing and the UI stays responsive until `r` or quit.

use crate::bus::Happening;
use crate::engine::state::{decide, Action, State};
use std::time::Duration;

use super::runner::Engine;

impl Engine {
    /// Keep audio flowing (and the UI responsive) until the user restarts or quits.
    pub(super) fn failed(&mut self) -> Option<State> {
        loop {
            match self.commands.recv_timeout(Duration::from_millis(20)) {
                Ok(c) => match decide(State::Failed, c) {
                    Action::Stop => return None,
                    Action::Reload => {
                        self.happened(Happening::Restarting);
                        return self.reload();
                    }
                    Action::Hold { model, weights } => self.hold(model, weights, true),
                    Action::Apply(s) => self.apply(s),
                    Action::KeepPrompt(p) => self.pending_prompt = Some(p),
                    // The table gives these only while a model runs or loads.
                    Action::ResetConversation
                    | Action::Ignore
                    | Action::Install { .. }
                    | Action::Prime { .. } => {}
                },
                Err(crossbeam_channel::RecvTimeoutError::Disconnected) => return None,
                Err(crossbeam_channel::RecvTimeoutError::Timeout) => {}
            }
            self.frames.drain();
        }
    }
}
