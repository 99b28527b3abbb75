//! Loading a persona's voice (other weights) in the background while the
//! current voice keeps talking, then handing it to the engine, which swaps it
//! in at a frame boundary (`Command::SwapModel`).
//!
//! Why another thread: loading takes seconds to minutes and the engine thread
//! must keep stepping the current model meanwhile. The model is `Send`; on the
//! CPU, tensors built on one thread are used on another without ceremony. On
//! CUDA, candle binds its context to whichever thread uses the device, so a
//! model built here also steps on the engine thread; this path has been run on
//! the CPU only, and a GPU user who hits a problem can pin the voice with
//! `--model-dir` (personas then change look and sampling only).

use super::command::Command;
use super::load::LoadFailure;
use crate::bus::{Cancel, EngineEvent, LoadProgress, Sampling, Weights};
use crate::models::duplex::DuplexModel;
use crossbeam_channel::Sender;
use std::sync::atomic::{AtomicU64, Ordering::SeqCst};
use std::sync::{Arc, Mutex};

/// Builds a model for some weights with some sampling, reporting progress and
/// polling the cancel flag.
pub type LoadFn = dyn Fn(
        &Weights,
        &Sampling,
        &mut dyn FnMut(LoadProgress),
        &Cancel,
    ) -> Result<Box<dyn DuplexModel>, LoadFailure>
    + Send
    + Sync;

#[derive(Clone)]
pub struct VoiceLoader {
    load: Arc<LoadFn>,
    /// What `Weights::Default` means in this run (the command line's choice).
    default: Weights,
    /// The newest load asked for; an older one that finishes is dropped.
    wanted: Arc<AtomicU64>,
    /// The flag of the load in flight: a newer choice stops it within a second.
    in_flight: Arc<Mutex<Option<Cancel>>>,
}

impl std::fmt::Debug for VoiceLoader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "VoiceLoader(default: {:?})", self.default)
    }
}

impl VoiceLoader {
    pub fn new(default: Weights, load: Arc<LoadFn>) -> Self {
        Self {
            load,
            default,
            wanted: Arc::new(AtomicU64::new(0)),
            in_flight: Arc::new(Mutex::new(None)),
        }
    }

    /// The weights a persona's voice really names in this run.
    pub fn resolve(&self, w: &Weights) -> Weights {
        match w {
            Weights::Default => self.default.clone(),
            other => other.clone(),
        }
    }

    /// Any load in flight is no longer wanted: stop it.
    pub fn cancel(&self, id: u64) {
        self.wanted.store(id, SeqCst);
        if let Some(c) = self
            .in_flight
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
        {
            c.cancel();
        }
    }

    /// Load `weights` on a loader thread, stopping any older load. Progress goes to
    /// `events` as `Loading`; the model goes to the engine as `SwapModel` (the engine
    /// then says `ModelReady`, or holds it while no model runs); a failure comes back
    /// as `VoiceFailed`.
    pub fn start(
        &self,
        id: u64,
        persona: String,
        weights: Weights,
        sampling: Sampling,
        events: Sender<EngineEvent>,
        commands: Sender<Command>,
    ) {
        self.cancel(id);
        let cancel = Cancel::new();
        *self.in_flight.lock().unwrap_or_else(|p| p.into_inner()) = Some(cancel.clone());
        let (load, wanted) = (self.load.clone(), self.wanted.clone());
        let stage_prefix = format!("{persona}'s voice: ");
        let fail_events = events.clone();
        let fail_persona = persona.clone();
        let spawned = std::thread::Builder::new()
            .name("voice-loader".into())
            .spawn(move || {
                let mut progress = |mut p: LoadProgress| {
                    if wanted.load(SeqCst) == id {
                        p.stage = format!("{stage_prefix}{}", p.stage);
                        let _ = events.send(EngineEvent::Loading(p));
                    }
                };
                let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    load(&weights, &sampling, &mut progress, &cancel)
                }))
                .unwrap_or_else(|_| {
                    Err(LoadFailure {
                        message: "loading the voice panicked".into(),
                        remedy: "see the log file".into(),
                    })
                });
                if wanted.load(SeqCst) != id || cancel.is_cancelled() {
                    return; // another persona was picked meanwhile
                }
                match result {
                    Ok(model) => {
                        let _ = commands.send(Command::SwapModel { model, weights });
                    }
                    Err(f) => {
                        let _ = events.send(EngineEvent::VoiceFailed {
                            persona,
                            error: f.message,
                            remedy: f.remedy,
                        });
                    }
                }
            });
        if let Err(e) = spawned {
            let _ = fail_events.send(EngineEvent::VoiceFailed {
                persona: fail_persona,
                error: format!("cannot start a loader thread: {e}"),
                remedy: "free some memory and try again".into(),
            });
        }
    }
}
