//! The engine's states and the one table of what each command does in each.
//!
//! ```text
//!            load ok                     silence (--idle-unload)
//! Loading ────────────▶ Running ─────────────────────────────▶ Unloaded
//!   ▲  │ load failed      │ step failed / panicked                │ speech, r: reload
//!   │  ▼                  ▼                                       │ (a held voice is
//!   └── Failed ◀──────────┘                                       │  installed instead)
//!   r: reload (or install a held voice)   ◀───────────────────────┘
//! ```
//! Shutdown stops from every state; a file input that ends stops from Running and
//! Unloaded.

use super::command::Command;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Building a model for the current voice. Input is held, not lost.
    Loading,
    /// A model steps every frame.
    Running,
    /// Unloaded after a silence; listening for speech without a model.
    Unloaded,
    /// The model failed (load, step or panic); audio keeps flowing, `r` restarts.
    Failed,
}

/// What a command does. Commands that only change settings or ports apply the same
/// way in every state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Stop the engine (cancelling a load in progress).
    Stop,
    /// Mute, echo cancellation, sampling, a new input or output: applied at once.
    Apply,
    /// Start a fresh conversation with the running model.
    ResetConversation,
    /// Load the current voice now (a restart, or waking an unloaded model).
    Reload,
    /// Nothing to do: a load in progress gives a fresh conversation anyway.
    Ignore,
    /// Put a newly loaded voice in place at this frame boundary.
    Install,
    /// Keep a newly loaded voice, and make it the current voice, until the state can
    /// take it: a reload then uses it instead of loading again.
    Hold,
    /// Reset the running model and prefill a persona's prompts now.
    Prime,
    /// Keep a persona's prompts for the next model that comes up.
    KeepPrompt,
}

/// The table: what `command` does in `state`.
pub fn decide(state: State, command: &Command) -> Action {
    use Action::*;
    use State::*;
    match (command, state) {
        (Command::Shutdown, _) => Stop,
        (
            Command::SetMuted(_)
            | Command::SetEchoCancel(_)
            | Command::SetHalfDuplex(_)
            | Command::SetWake(_)
            | Command::InstallWake(_)
            | Command::SetWakeThreshold(_)
            | Command::SetWakeActive(_)
            | Command::SetSampling(_),
            _,
        ) => Apply,
        (Command::ReplaceInput(_) | Command::ReplaceSpeaker(_) | Command::Type(_), _) => Apply,
        (Command::Reset, Running) => ResetConversation,
        (Command::Reset, Unloaded | Failed) => Reload,
        (Command::Reset, Loading) => Ignore,
        (Command::SwapModel { .. }, Running) => Install,
        (Command::SwapModel { .. }, Loading | Unloaded | Failed) => Hold,
        (Command::Prime { .. }, Running) => Prime,
        (Command::Prime { .. }, Loading | Unloaded | Failed) => KeepPrompt,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bus::{Sampling, Weights};

    #[test]
    fn every_state_stops_and_applies_settings() {
        for s in [
            State::Loading,
            State::Running,
            State::Unloaded,
            State::Failed,
        ] {
            assert_eq!(decide(s, &Command::Shutdown), Action::Stop);
            assert_eq!(decide(s, &Command::SetMuted(true)), Action::Apply);
            assert_eq!(
                decide(s, &Command::SetSampling(Sampling::default())),
                Action::Apply
            );
            assert_eq!(decide(s, &Command::ReplaceSpeaker(None)), Action::Apply);
        }
    }

    #[test]
    fn r_resets_a_running_model_and_reloads_a_missing_one() {
        assert_eq!(
            decide(State::Running, &Command::Reset),
            Action::ResetConversation
        );
        assert_eq!(decide(State::Failed, &Command::Reset), Action::Reload);
        assert_eq!(decide(State::Unloaded, &Command::Reset), Action::Reload);
        assert_eq!(decide(State::Loading, &Command::Reset), Action::Ignore);
    }

    #[test]
    fn prompts_prime_a_running_model_and_wait_for_one_otherwise() {
        let prime = || Command::Prime {
            prompt: crate::engine::model::Prompt {
                text: "You are JARVIS.".into(),
                ..Default::default()
            },
            fresh: false,
        };
        assert_eq!(decide(State::Running, &prime()), Action::Prime);
        for s in [State::Loading, State::Unloaded, State::Failed] {
            assert_eq!(decide(s, &prime()), Action::KeepPrompt, "{s:?}");
        }
    }

    #[test]
    fn a_voice_is_installed_only_while_running_and_held_otherwise() {
        let swap = || Command::SwapModel {
            model: Box::new(crate::engine::loopback::Loopback::new(24_000, 1920)),
            weights: Weights::Demo,
        };
        assert_eq!(decide(State::Running, &swap()), Action::Install);
        for s in [State::Loading, State::Unloaded, State::Failed] {
            assert_eq!(decide(s, &swap()), Action::Hold, "{s:?}");
        }
    }
}
