//! The Running state: a model steps every frame; commands apply at frame boundaries.

use crate::audio::meters::rms;
use crate::bus::{EngineEvent, Happening, StepStats, Weights};
use crate::engine::frames::{Next, Take};
use crate::engine::residency::IdleWatch;
use crate::engine::state::{decide, Action, State};
use crate::models::duplex::DuplexModel;
use std::io::Write;
use std::time::Instant;

use super::runner::{contain, Engine, Fault};

/// At most this much silence (60 s) follows the end of a file while a turn-taking
/// model finishes its turn.
const MAX_TAIL_FRAMES: u32 = 750;

impl Engine {
    /// A fresh conversation with the running model (its prompts replayed, if it takes them).
    pub(super) fn reset_conversation(&mut self) {
        if let Some(m) = self.model.as_mut() {
            m.reset();
        }
        self.frames.reset();
        self.end_turn();
        self.send(EngineEvent::Reset);
    }

    pub(super) fn running(&mut self) -> Option<State> {
        match self.run_frames() {
            Ok(next) => next,
            Err(f) => self.fail(f.message, f.remedy),
        }
    }

    /// Handle queued commands while running; `Err(None)` means stop.
    pub(super) fn running_commands(&mut self) -> Result<(), Option<State>> {
        while let Ok(c) = self.commands.try_recv() {
            match decide(State::Running, c) {
                Action::Stop => return Err(None),
                Action::Apply(s) => self.apply(s),
                Action::ResetConversation => self.reset_conversation(),
                Action::Install { model, weights } => self.swap(model, weights),
                Action::Prime { prompt, fresh } => {
                    if self.model.as_ref().is_some_and(|m| m.takes_prompt()) {
                        self.prime(&prompt);
                    } else if fresh {
                        self.reset_conversation();
                    }
                }
                // The table gives these only while no model runs.
                Action::Reload | Action::Ignore | Action::Hold { .. } | Action::KeepPrompt(_) => {}
            }
        }
        Ok(())
    }

    /// A persona's voice replaces the running model at this frame boundary.
    pub(super) fn swap(&mut self, model: Box<dyn DuplexModel>, weights: Weights) {
        if model.sample_rate() != self.rate || model.frame_len() != self.frame_len {
            let why = format!(
                "it runs at {} Hz / {} samples, not {} Hz / {}",
                model.sample_rate(),
                model.frame_len(),
                self.rate,
                self.frame_len
            );
            self.happened(Happening::VoiceRejected {
                name: model.info().name,
                why,
            });
            return;
        }
        let info = model.info();
        if let Err(e) = self.install(model, weights, false) {
            self.happened(Happening::VoiceRejected {
                name: info.name,
                why: format!("{e:#}"),
            });
            return;
        }
        self.stats.model = info.clone();
        self.send(EngineEvent::ModelReady { info, load_ms: 0.0 });
    }

    pub(super) fn run_frames(&mut self) -> Result<Option<State>, Fault> {
        let io = |e: anyhow::Error| Fault {
            message: format!("{e:#}"),
            remedy: "press r to restart the engine; details are in the log file".into(),
        };
        let mut idle = self.idle_unload.map(|d| IdleWatch::new(d.as_secs_f64()));
        let mut tail_frames = 0u32;
        let mut last_out_rms = 0f32;
        loop {
            if let Err(next) = self.running_commands() {
                return Ok(next);
            }
            let t_frame = Instant::now();
            let dropped_before = self.frames.dropped;
            let fresh = match self
                .frames
                .next(Take {
                    replay_held: true,
                    bound_backlog: true,
                })
                .map_err(io)?
            {
                Next::Wait => continue,
                Next::Ended
                    if tail_frames < MAX_TAIL_FRAMES
                        && self.model.as_ref().is_some_and(|m| m.busy()) =>
                {
                    // The file ended mid-turn: silence until the turn is over. No clock
                    // paces it now: a speaker does (it blocks until there is room), a
                    // file takes it as fast as it comes.
                    if tail_frames == 0 {
                        self.send(EngineEvent::InputEnded);
                        // No clock now: parts on threads of their own are waited for.
                        if let Some(m) = self.model.as_mut() {
                            m.set_realtime(false);
                        }
                    }
                    tail_frames += 1;
                    self.frames.frame.fill(0.0);
                    true
                }
                Next::Ended => {
                    if tail_frames == 0 {
                        self.send(EngineEvent::InputEnded);
                    }
                    return Ok(None);
                }
                Next::Frame { fresh } => fresh,
            };
            let dropped = self.frames.dropped - dropped_before;
            self.stats.dropped_frames += dropped;
            self.stats.frames_in += dropped + 1;
            // The canceller runs at 24 kHz, the rate of every model we have.
            if let Some(p) = self
                .mic_path
                .as_mut()
                .filter(|_| fresh && self.rate == crate::audio::aec::SAMPLE_RATE)
            {
                p.process_near(&mut self.frames.frame);
            }
            if fresh {
                self.frames.mute_if_closed();
            }
            self.wake_gate(fresh, last_out_rms);
            let mic_rms = rms(&self.frames.frame);
            let work = t_frame.elapsed();

            self.out.clear(self.frame_len);
            let t_step = Instant::now();
            let model = self.model.as_mut().expect("Running has a model");
            let (frame, out) = (&self.frames.frame, &mut self.out);
            match contain(|| model.step(frame, out)) {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    return Err(Fault {
                        message: format!("the model failed: {e:#}"),
                        remedy: "press r to restart the engine".into(),
                    })
                }
                Err(panic) => {
                    return Err(Fault {
                        message: format!("the model crashed: {panic}"),
                        remedy: "press r to restart the engine; the transcript is kept".into(),
                    })
                }
            }
            let step_ms = t_step.elapsed().as_secs_f64() * 1000.0;
            self.wake_words();
            let t_out = Instant::now();
            self.output
                .emit(
                    &self.out.pcm,
                    self.frames.is_realtime() && tail_frames == 0,
                    self.out.cut,
                    &self.meters,
                )
                .map_err(io)?;
            if let Some(p) = self
                .mic_path
                .as_mut()
                .filter(|_| self.rate == crate::audio::aec::SAMPLE_RATE)
            {
                // The reference: what was sent to the speaker, as it is sent. The echo
                // comes the speaker's queue later; the canceller finds that delay, which
                // changes only after a stall (the queue grows, then gives it back at
                // the next silence, `Output::emit`).
                p.push_far(&self.out.pcm);
            }
            self.dump_step().map_err(io)?;
            let spoke_text = self.out.text.is_some();
            // The user's words and phase changes come before the reply's words of the
            // same step, as they happened.
            for talk in std::mem::take(&mut self.out.talk) {
                self.send(EngineEvent::Talk(talk));
            }
            if let Some(text) = self.out.text.take() {
                self.send(EngineEvent::Text(text));
            }
            self.stats.frames_out += 1;
            self.stats.output_seconds += self.frame_len as f64 / self.rate as f64;
            let overhead_ms = (work + t_out.elapsed()).as_secs_f64() * 1000.0;
            self.stats.step_ms.push(step_ms);
            self.stats.overhead_ms.push(overhead_ms);
            let out_rms = rms(&self.out.pcm);
            last_out_rms = out_rms;
            let link = self.model.as_ref().and_then(|m| m.link());
            while let Some(h) = self.model.as_mut().and_then(|m| m.take_happening()) {
                self.send(EngineEvent::Happened(h));
            }
            self.send(EngineEvent::Step(StepStats {
                step_index: self.step_index,
                step_ms,
                overhead_ms,
                rtf: step_ms / self.stats.frame_ms,
                dropped_frames: self.stats.dropped_frames,
                xruns_in: self.meters.xruns_in(),
                xruns_out: self.meters.xruns_out(),
                latency_ms: self.stats.latency.total_ms(),
                mic_rms,
                out_rms,
                link,
            }));
            self.step_index += 1;
            if self.turns.step(spoke_text) {
                self.send(EngineEvent::TurnEnded);
            }
            self.maybe_sample_rss();
            if idle.as_mut().is_some_and(|w| {
                w.observe(
                    self.frame_len as f64 / self.rate as f64,
                    mic_rms,
                    out_rms,
                    spoke_text,
                )
            }) {
                return Ok(Some(self.unload()));
            }
        }
    }

    /// The wake gate: silences the frame unless a wake phrase opened it (or the model
    /// listens for wake words in it, and for nothing else).
    fn wake_gate(&mut self, fresh: bool, last_out_rms: f32) {
        let Some(gate) = self.wake.as_mut().filter(|g| g.enabled()) else {
            if let Some(m) = self.model.as_mut() {
                m.wake_listen(false, "");
            }
            return;
        };
        if !fresh {
            // Held audio from before a reload: only an open gate lets it through.
            if !gate.is_open() {
                self.frames.frame.fill(0.0);
            }
            return;
        }
        let busy = self.model.as_ref().is_some_and(|m| m.busy());
        let listening = self
            .model
            .as_mut()
            .is_some_and(|m| m.wake_listen(!gate.is_open(), ""));
        let mic = rms(&self.frames.frame);
        match gate.frame(&mut self.frames.frame, mic, last_out_rms, busy, listening) {
            super::wake_gate::Change::None => {}
            super::wake_gate::Change::Opened(h) | super::wake_gate::Change::Closed(h) => {
                let open = gate.is_open();
                if let Some(m) = self.model.as_mut() {
                    m.wake_listen(!open, "");
                }
                self.happened(h)
            }
        }
    }

    /// The second wake path: a phrase in the words the model's recogniser heard while
    /// the gate waited opens it, and the words after the phrase start the turn.
    fn wake_words(&mut self) {
        let (Some(gate), Some(model)) = (
            self.wake.as_mut().filter(|g| g.enabled() && !g.is_open()),
            self.model.as_mut(),
        ) else {
            return;
        };
        let Some(text) = model.take_wake_words() else {
            return;
        };
        if let Some((h, rest)) = gate.heard_words(&text) {
            model.wake_listen(false, &rest);
            self.happened(h);
        }
    }

    pub(super) fn dump_step(&mut self) -> anyhow::Result<()> {
        self.dump_prefill()?;
        if let Some(d) = self.dump.as_mut() {
            let line = serde_json::json!({
                "step": self.step_index,
                "text_token": self.out.text_token,
                "audio_codes": self.out.audio_codes,
            });
            writeln!(d, "{line}")?;
        }
        Ok(())
    }
}
