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
use crate::bus::{Sampling, Weights};
use crate::models::duplex::{DuplexModel, Prompt};

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

/// A command that changes a setting or a port, or a typed turn: applied the same way
/// in every state.
pub enum Setting {
    Muted(bool),
    EchoCancel(bool),
    HalfDuplex(bool),
    Wake(bool),
    InstallWake(Box<super::wake_gate::WakeOptions>),
    /// The spotter's bar, from the settings overlay.
    WakeThreshold(f32),
    /// The phrases of the persona now active (the others switch persona).
    WakeActive(Vec<String>),
    Sampling(Sampling),
    Type(String),
    ReplaceInput(crate::audio::port::InputPort),
    ReplaceSpeaker(Option<crate::audio::port::OutputPort>),
}

/// What a command does, with what it needs to do it (the command's payload, moved
/// here), so a state's dispatch cannot meet a payload of the wrong kind.
pub enum Action {
    /// Stop the engine (cancelling a load in progress).
    Stop,
    /// Mute, echo cancellation, sampling, a new input or output: applied at once.
    Apply(Setting),
    /// Start a fresh conversation with the running model.
    ResetConversation,
    /// Load the current voice now (a restart, or waking an unloaded model).
    Reload,
    /// Nothing to do: a load in progress gives a fresh conversation anyway.
    Ignore,
    /// Put a newly loaded voice in place at this frame boundary.
    Install {
        model: Box<dyn DuplexModel>,
        weights: Weights,
    },
    /// Keep a newly loaded voice, and make it the current voice, until the state can
    /// take it: a reload then uses it instead of loading again.
    Hold {
        model: Box<dyn DuplexModel>,
        weights: Weights,
    },
    /// Reset the running model and prefill a persona's prompts now (a model that takes
    /// none only starts a fresh conversation, and only if `fresh`).
    Prime { prompt: Prompt, fresh: bool },
    /// Keep a persona's prompts for the next model that comes up.
    KeepPrompt(Prompt),
}

/// The table: what `command` does in `state`.
pub fn decide(state: State, command: Command) -> Action {
    use State::*;
    match (command, state) {
        (Command::Shutdown, _) => Action::Stop,
        (Command::SetMuted(on), _) => Action::Apply(Setting::Muted(on)),
        (Command::SetEchoCancel(on), _) => Action::Apply(Setting::EchoCancel(on)),
        (Command::SetHalfDuplex(on), _) => Action::Apply(Setting::HalfDuplex(on)),
        (Command::SetWake(on), _) => Action::Apply(Setting::Wake(on)),
        (Command::InstallWake(o), _) => Action::Apply(Setting::InstallWake(o)),
        (Command::SetWakeThreshold(t), _) => Action::Apply(Setting::WakeThreshold(t)),
        (Command::SetWakeActive(p), _) => Action::Apply(Setting::WakeActive(p)),
        (Command::SetSampling(s), _) => Action::Apply(Setting::Sampling(s)),
        (Command::Type(t), _) => Action::Apply(Setting::Type(t)),
        (Command::ReplaceInput(p), _) => Action::Apply(Setting::ReplaceInput(p)),
        (Command::ReplaceSpeaker(p), _) => Action::Apply(Setting::ReplaceSpeaker(p)),
        (Command::Reset, Running) => Action::ResetConversation,
        (Command::Reset, Unloaded | Failed) => Action::Reload,
        (Command::Reset, Loading) => Action::Ignore,
        (Command::SwapModel { model, weights }, Running) => Action::Install { model, weights },
        (Command::SwapModel { model, weights }, Loading | Unloaded | Failed) => {
            Action::Hold { model, weights }
        }
        (Command::Prime { prompt, fresh }, Running) => Action::Prime { prompt, fresh },
        (Command::Prime { prompt, .. }, Loading | Unloaded | Failed) => Action::KeepPrompt(prompt),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_state_stops_and_applies_settings() {
        for s in [
            State::Loading,
            State::Running,
            State::Unloaded,
            State::Failed,
        ] {
            assert!(matches!(decide(s, Command::Shutdown), Action::Stop));
            assert!(matches!(
                decide(s, Command::SetMuted(true)),
                Action::Apply(Setting::Muted(true))
            ));
            assert!(matches!(
                decide(s, Command::SetSampling(Sampling::default())),
                Action::Apply(Setting::Sampling(_))
            ));
            assert!(matches!(
                decide(s, Command::ReplaceSpeaker(None)),
                Action::Apply(Setting::ReplaceSpeaker(None))
            ));
        }
    }

    #[test]
    fn r_resets_a_running_model_and_reloads_a_missing_one() {
        assert!(matches!(
            decide(State::Running, Command::Reset),
            Action::ResetConversation
        ));
        assert!(matches!(
            decide(State::Failed, Command::Reset),
            Action::Reload
        ));
        assert!(matches!(
            decide(State::Unloaded, Command::Reset),
            Action::Reload
        ));
        assert!(matches!(
            decide(State::Loading, Command::Reset),
            Action::Ignore
        ));
    }

    #[test]
    fn prompts_prime_a_running_model_and_wait_for_one_otherwise() {
        let prime = || Command::Prime {
            prompt: crate::models::duplex::Prompt {
                text: "You are JARVIS.".into(),
                ..Default::default()
            },
            fresh: false,
        };
        assert!(matches!(decide(State::Running, prime()),
            Action::Prime { prompt, fresh: false } if prompt.text == "You are JARVIS."
        ));
        for s in [State::Loading, State::Unloaded, State::Failed] {
            assert!(
                matches!(decide(s, prime()),
                    Action::KeepPrompt(p) if p.text == "You are JARVIS."
                ),
                "{s:?}"
            );
        }
    }

    #[test]
    fn a_voice_is_installed_only_while_running_and_held_otherwise() {
        let swap = || Command::SwapModel {
            model: Box::new(crate::engine::loopback::Loopback::new(24_000, 1920)),
            weights: Weights::Demo,
        };
        assert!(matches!(
            decide(State::Running, swap()),
            Action::Install {
                weights: Weights::Demo,
                ..
            }
        ));
        for s in [State::Loading, State::Unloaded, State::Failed] {
            assert!(
                matches!(
                    decide(s, swap()),
                    Action::Hold {
                        weights: Weights::Demo,
                        ..
                    }
                ),
                "{s:?}"
            );
        }
    }
}
