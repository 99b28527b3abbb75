//! Persona switching, background voices, device notices and the resumed
//! transcript: the parts of `UiState` that personas and degraded modes add.

use super::{Effect, EntryKind, FeedEntry, Phase, Severity, UiState, Update};
use crate::bus::Endpoint;
use crate::bus::Sampling;
use crate::engine::Command;
use crate::persona::{hotkey_label, Weights};
use crate::ui::context::Resume;
use crate::ui::theme::Theme;
use std::time::Duration;

/// What the main loop does for a switch.
#[derive(Debug)]
pub struct Switch {
    /// The persona now active.
    pub name: String,
    /// Sent to the engine at once: it applies from the next model step.
    pub sampling: Sampling,
    /// The persona opens the conversation: start a fresh one.
    pub reset: bool,
    /// The persona's prompts (role text, voice WAV), for a model that takes them: it is
    /// reset and primed with them (which also starts a fresh conversation).
    pub prompt: Option<crate::models::duplex::Prompt>,
    /// Load these weights in the background (the current voice keeps talking).
    pub load: Option<Weights>,
    /// This switch's number; a load for an older one is dropped.
    pub id: u64,
    /// The persona's `tools = [...]` (`None`: all the session's tools).
    pub tools: Option<Vec<String>>,
    /// The phrases that wake it (another persona's need a higher score to switch).
    pub wake: Vec<String>,
}

/// A persona whose voice is loading.
#[derive(Debug, Clone, PartialEq)]
pub struct PendingVoice {
    pub id: u64,
    pub persona: usize,
    /// The persona to go back to if the load fails.
    pub previous: usize,
    pub weights: Weights,
}

impl UiState {
    pub fn active_persona(&self) -> &crate::persona::Persona {
        &self.personas[self.active]
    }

    fn sampling_of(&self, i: usize) -> Sampling {
        self.personas[i].voice.sampling(self.seed)
    }

    /// Make persona `i` the one on screen: name, theme, visualizer.
    fn show_persona(&mut self, i: usize) {
        let p = &self.personas[i];
        self.active = i;
        self.persona = p.name.clone();
        self.theme = Theme::from_persona(&p.theme, self.no_color);
        self.visualizer = p.visualizer;
    }

    pub(super) fn switch_to(&mut self, i: usize) -> Update {
        if i >= self.personas.len() || (i == self.active && self.pending_voice.is_none()) {
            return Update::none();
        }
        let previous = self
            .pending_voice
            .as_ref()
            .map_or(self.active, |p| p.previous);
        self.show_persona(i);
        let id = self.next_voice_id;
        self.next_voice_id += 1;
        let p = self.personas[i].clone();
        let load = match (&self.voices, &self.engine_weights) {
            (Some(v), Some(running)) => Some(v.resolve(&p.voice.weights)).filter(|w| w != running),
            _ => None,
        };
        self.pending_voice = load.clone().map(|weights| super::PendingVoice {
            id,
            persona: i,
            previous,
            weights,
        });
        let mut text = format!(
            "persona: {} ({}) — {} · temperature {} / text {} · top-k {}",
            p.name,
            hotkey_label(p.hotkey),
            p.description,
            p.voice.temperature,
            p.voice.text_temperature,
            p.voice.top_k
        );
        if let Some(w) = &load {
            text.push_str(&format!(
                " · loading its voice ({}) while this one keeps talking",
                w.describe()
            ));
        } else if self.voices.is_none() && p.voice.weights != Weights::Default {
            text.push_str(&format!(
                " · its voice ({}) is not loaded: the command line pins the weights",
                p.voice.weights.describe()
            ));
        }
        if p.greeting {
            text.push_str(" · fresh conversation: it speaks first");
        }
        self.note(EntryKind::Persona, text, None);
        Update::with(
            Effect::Persona(Switch {
                name: p.name.clone(),
                sampling: self.sampling_of(i),
                reset: p.greeting,
                prompt: (!p.prompt.trim().is_empty()
                    || p.voice_prompt.is_some()
                    || p.tts_voice.is_some()
                    || p.llm_model.is_some())
                .then(|| crate::models::duplex::Prompt {
                    text: p.prompt.clone(),
                    voice: p.voice_prompt.clone(),
                    speaker: p.tts_voice.clone(),
                    llm_model: p.llm_model.clone(),
                }),
                load,
                id,
                tools: p.tools.clone(),
                wake: p.wake.clone(),
            }),
            true,
        )
    }

    /// A model came up. From a persona's swap: its voice is speaking now.
    /// From the engine's own loader (start, restart): it runs the command
    /// line's weights, and gets the active persona's sampling.
    pub(super) fn voice_ready(&mut self) -> Option<Effect> {
        match self.pending_voice.take() {
            Some(p) => {
                self.engine_weights = Some(p.weights);
                let text = format!("{}'s voice is speaking now", self.personas[p.persona].name);
                self.note(EntryKind::Success, text, None);
                None
            }
            // The engine's own (re)load: it loaded the current voice (`Voice` said which).
            None => Some(Effect::Send(Command::SetSampling(
                self.sampling_of(self.active),
            ))),
        }
    }

    pub(super) fn voice_failed(
        &mut self,
        persona: String,
        error: String,
        remedy: String,
    ) -> Update {
        let Some(p) = self
            .pending_voice
            .take()
            .filter(|p| self.personas[p.persona].name == persona)
        else {
            self.note(
                EntryKind::Notice(Severity::Warning),
                format!("{persona}'s voice did not load: {error}"),
                Some(remedy),
            );
            return Update::redraw();
        };
        self.show_persona(p.previous);
        let back = self.personas[p.previous].name.clone();
        self.note(
            EntryKind::Notice(Severity::Warning),
            format!("{persona}'s voice did not load: {error}; staying with {back}"),
            Some(remedy),
        );
        Update::with(
            Effect::Send(Command::SetSampling(self.sampling_of(p.previous))),
            true,
        )
    }

    /// A device status moves the endpoint it is about: lost makes it missing (the
    /// header shows the state degraded), ready names the device again.
    pub(super) fn device_status(&mut self, status: &crate::bus::DeviceStatus) {
        use crate::bus::{DeviceSide, DeviceStatus};
        let (side, endpoint) = match status {
            DeviceStatus::Lost { side, reason, .. } => (
                side,
                Endpoint::Missing(crate::ui::words::loss_reason(reason)),
            ),
            DeviceStatus::Ready { side, name } | DeviceStatus::Switched { side, name, .. } => {
                (side, Endpoint::Device(name.clone()))
            }
            DeviceStatus::Trouble { .. } | DeviceStatus::SwitchFailed { .. } => return,
        };
        match side {
            DeviceSide::Microphone => self.input = Some(endpoint),
            DeviceSide::Speaker => self.output = Some(endpoint),
        }
    }

    /// `--resume`: the last session's turns, dimmed, above this session's.
    pub(super) fn show_resume(&mut self, r: &Resume) {
        let at = Duration::ZERO;
        let head = format!(
            "previous session {} ({}): {} turn(s)",
            r.started,
            r.persona,
            r.turns.len()
        );
        self.feed
            .push(FeedEntry::new(at, EntryKind::Previous, head));
        for t in &r.turns {
            self.feed
                .push(FeedEntry::new(at, EntryKind::Previous, t.clone()));
        }
    }

    /// The voice loader this state resolves weights with (tests drive it).
    pub fn clone_voices(&self) -> Option<crate::engine::voice::VoiceLoader> {
        self.voices.clone()
    }

    /// Whether the engine failed and waits for `r`.
    pub fn failed(&self) -> bool {
        self.phase == Phase::Failed
    }
}
