//! The Unloaded state: no model after a silence; listen for speech with a short
//! pre-roll, then wake.

use crate::audio::meters::rms;
use crate::bus::{EngineEvent, Happening, Residency};
use crate::engine::frames::{Next, Take};
use crate::engine::residency::{rss_bytes, SILENCE_RMS};
use crate::engine::state::{decide, Action, State};
use std::time::Duration;

use super::runner::{Engine, PREROLL_FRAMES};

impl Engine {
    pub(super) fn unload(&mut self) -> State {
        self.end_turn();
        self.send(EngineEvent::Residency(Residency::Unloading));
        let before = rss_bytes();
        self.sample_rss();
        self.model = None;
        self.stats.residency.unloads += 1;
        let after = rss_bytes();
        self.sample_rss();
        self.send(EngineEvent::Residency(Residency::Unloaded));
        let silent_s = self.idle_unload.map_or(0.0, |d| d.as_secs_f64());
        self.happened(Happening::Unloaded {
            silent_s,
            rss_before: before,
            rss_after: after,
        });
        State::Unloaded
    }

    /// No model: listen until the user speaks, keeping a short pre-roll. Silence consumed
    /// here still goes to the output file as silence, so its timeline stays aligned with
    /// the input.
    pub(super) fn unloaded(&mut self) -> Option<State> {
        self.frames.held = Default::default();
        loop {
            while let Ok(c) = self.commands.try_recv() {
                match decide(State::Unloaded, c) {
                    Action::Stop => return None,
                    Action::Reload => return self.wake(),
                    Action::Hold { model, weights } => self.hold(model, weights, false),
                    Action::Apply(s) => self.apply(s),
                    Action::KeepPrompt(p) => self.pending_prompt = Some(p),
                    // The table gives these only while a model runs or loads.
                    Action::ResetConversation
                    | Action::Ignore
                    | Action::Install { .. }
                    | Action::Prime { .. } => {}
                }
            }
            match self.frames.next(Take {
                replay_held: false,
                bound_backlog: false,
            }) {
                Err(e) => {
                    return self.fail(format!("{e:#}"), "press r to restart the engine".into())
                }
                Ok(Next::Wait) => std::thread::sleep(Duration::from_millis(5)),
                Ok(Next::Ended) => {
                    // The file ended in silence: what the pre-roll held was silence too.
                    while self.frames.held.pop().is_some() {
                        if let Err(e) = self.silent_output() {
                            return self.fail(format!("{e:#}"), "check the output path".into());
                        }
                    }
                    self.send(EngineEvent::InputEnded);
                    return None;
                }
                Ok(Next::Frame { .. }) => {
                    self.frames.mute_if_closed();
                    self.stats.frames_in += 1;
                    self.maybe_sample_rss();
                    let level = rms(&self.frames.frame);
                    self.frames.held.push(&self.frames.frame);
                    if level >= SILENCE_RMS {
                        self.happened(Happening::WokeBySpeech);
                        return self.wake();
                    }
                    if self.frames.held.len() > PREROLL_FRAMES {
                        self.frames.held.pop();
                        if let Err(e) = self.silent_output() {
                            return self.fail(format!("{e:#}"), "check the output path".into());
                        }
                    }
                }
            }
        }
    }

    pub(super) fn wake(&mut self) -> Option<State> {
        self.waking = true;
        self.reload()
    }

    pub(super) fn silent_output(&mut self) -> anyhow::Result<()> {
        self.output.silence_to_file()?;
        self.stats.frames_out += 1;
        self.stats.output_seconds += self.frame_len as f64 / self.rate as f64;
        Ok(())
    }
}
