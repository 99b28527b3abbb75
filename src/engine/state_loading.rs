//! The Loading state: build a model for the current voice while commands keep
//! working, then bring it up (or fail).

use crate::bus::{Cancel, EngineEvent, Happening, LoadProgress, Residency, StepStats, Weights};
use crate::engine::load::{LoadFailure, LoadRequest};
use crate::engine::state::{decide, Action, State};
use crate::models::duplex::{DuplexModel, StepOutput};
use std::time::Instant;

use super::runner::{contain, Engine};

impl Engine {
    /// Build a model for the current voice. Commands keep working meanwhile (through
    /// the progress callback); a voice that arrives meanwhile wins over this load.
    pub(super) fn loading(&mut self) -> Option<State> {
        self.send(EngineEvent::Residency(Residency::Loading));
        let t_load = Instant::now();
        let cancel = self.shutdown.child();
        let mut stop = false;
        let mut loader = self.loader.take().expect("one load at a time");
        let voice = self.voice.clone();
        let result = {
            let me = &mut *self;
            let mut progress = |p: LoadProgress| me.while_loading(Some(p), &cancel, &mut stop);
            let mut req = LoadRequest {
                weights: &voice,
                progress: &mut progress,
                cancel: &cancel,
            };
            contain(|| loader(&mut req)).unwrap_or_else(|panic| {
                Err(LoadFailure {
                    message: format!("loading the model panicked: {panic}"),
                    remedy: "press r to retry; see the log file".into(),
                })
            })
        };
        self.loader = Some(loader);
        // Commands that came after the last progress report.
        self.while_loading(None, &cancel, &mut stop);
        self.stats.load_ms = t_load.elapsed().as_secs_f64() * 1000.0;
        if stop || (self.shutdown.is_cancelled() && result.is_err()) {
            self.happened(Happening::LoadCancelled);
            return None;
        }
        if let Some((model, weights)) = self.held_voice.take() {
            // A persona's voice arrived while this load ran: it is the newer choice.
            self.end_turn();
            return self.come_up(model, weights, None, Vec::new());
        }
        match result {
            Ok(l) => self.come_up(l.model, voice, l.degraded, l.notices),
            Err(f) => self.fail(f.message, f.remedy),
        }
    }

    /// During a load: forward progress, hold the user's audio, and apply commands as
    /// the table says for `Loading`.
    pub(super) fn while_loading(
        &mut self,
        progress: Option<LoadProgress>,
        cancel: &Cancel,
        stop: &mut bool,
    ) {
        if let Some(p) = progress {
            self.send(EngineEvent::Loading(p));
        }
        if self.waking {
            self.frames.hold_queued();
        }
        while let Ok(c) = self.commands.try_recv() {
            match decide(State::Loading, c) {
                Action::Stop => {
                    *stop = true;
                    cancel.cancel();
                }
                Action::Hold { model, weights } => {
                    self.voice = weights.clone();
                    self.held_voice = Some((model, weights));
                    cancel.cancel();
                }
                Action::Apply(s) => self.apply(s),
                Action::KeepPrompt(p) => self.pending_prompt = Some(p),
                // `r` while loading: the load gives a fresh conversation anyway.
                Action::Ignore => {}
                // The table gives these only while a model runs or none is wanted.
                Action::ResetConversation
                | Action::Reload
                | Action::Install { .. }
                | Action::Prime { .. } => {}
            }
        }
    }

    /// A model is ready: put it in place and tell everyone; `Running` unless it cannot run here.
    pub(super) fn come_up(
        &mut self,
        model: Box<dyn DuplexModel>,
        weights: Weights,
        degraded: Option<String>,
        notices: Vec<crate::bus::Notice>,
    ) -> Option<State> {
        if let Err(e) = self.install(model, weights, true) {
            return self.fail(
                format!("{e:#}"),
                "check the model's sample rate and frame length".into(),
            );
        }
        if let Some(p) = self.pending_prompt.take() {
            self.prime(&p);
        }
        for text in std::mem::take(&mut self.pending_typed) {
            self.type_text(text);
        }
        self.stats.model = self.model.as_ref().map(|m| m.info()).unwrap_or_default();
        self.stats.error = None;
        self.send(EngineEvent::ModelReady {
            info: self.stats.model.clone(),
            load_ms: self.stats.load_ms,
        });
        self.send(EngineEvent::Residency(Residency::Ready {
            device: self.stats.model.device.clone(),
            degraded: degraded.clone(),
        }));
        if let Some(why) = degraded {
            self.happened(Happening::Degraded(why));
        }
        for n in notices {
            self.send(EngineEvent::Notice {
                severity: n.severity,
                message: n.message,
                remedy: n.remedy,
            });
        }
        if self.waking {
            self.frames.hold_queued();
            let held = self.frames.held.len();
            self.stats.residency.held_frames += held as u64;
            self.stats.residency.held_dropped += self.frames.held.dropped;
            self.happened(Happening::Reloaded {
                load_ms: self.stats.load_ms,
                replay_s: held as f64 * self.frame_ms() / 1000.0,
            });
            self.stats.residency.reloads += 1;
            self.sample_rss();
        } else {
            // Audio captured while the model first loaded is stale: start from now.
            self.frames.skip_stale();
        }
        self.waking = false;
        self.stats.latency = self.latency();
        self.stats.frame_ms = self.frame_ms();
        self.send(EngineEvent::Step(StepStats {
            latency_ms: self.stats.latency.total_ms(),
            ..Default::default()
        }));
        self.output.prefill();
        Some(State::Running)
    }

    /// Put a model in place, re-planning resampling if its rate or frame differ. A
    /// loaded model gets the newest sampling asked for; a swapped-in voice keeps the
    /// sampling its persona built it with.
    pub(super) fn install(
        &mut self,
        mut model: Box<dyn DuplexModel>,
        weights: Weights,
        sampling: bool,
    ) -> anyhow::Result<()> {
        let (rate, frame_len) = (model.sample_rate(), model.frame_len());
        self.frames.set_model_shape(rate, frame_len)?;
        self.output.set_model_shape(rate, frame_len)?;
        (self.rate, self.frame_len) = (rate, frame_len);
        self.out = StepOutput {
            pcm: vec![0.0; frame_len],
            ..Default::default()
        };
        if let Some(s) = self.sampling.as_ref().filter(|_| sampling) {
            model.set_sampling(s);
        }
        model.set_realtime(self.frames.is_realtime());
        self.model = Some(model);
        self.voice = weights.clone();
        self.send(EngineEvent::Voice(weights));
        Ok(())
    }

    /// The model failed: say so, and wait for `r` (or stop, for a file).
    pub(super) fn fail(&mut self, message: String, remedy: String) -> Option<State> {
        tracing::error!("engine fault: {message}");
        self.end_turn();
        self.model = None;
        self.stats.error = Some(message.clone());
        self.send(EngineEvent::Residency(Residency::Failed(message.clone())));
        self.send(EngineEvent::ModelFailed {
            error: message,
            remedy,
        });
        self.interactive.then_some(State::Failed)
    }
}
