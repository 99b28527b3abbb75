//! The UI thread's main loop, generic over the ratatui backend, and the threads
//! that feed its one channel on a real terminal.

use super::context::UiContext;
use super::event::AppEvent;
use super::render::render;
use super::state::{Effect, Switch, UiState};
use super::sysmon::MemorySampler;
use super::terminal;
use crate::bus::EngineEvent;
use crate::engine::Command;
use anyhow::{anyhow, Context, Result};
use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use ratatui::backend::Backend;
use ratatui::crossterm::event;
use ratatui::Terminal;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Tick while audio flows (about 30 Hz), which is also the fastest redraw.
pub const FAST_TICK: Duration = Duration::from_millis(33);
/// Tick while nothing moves: only to notice audio starting.
pub const SLOW_TICK: Duration = Duration::from_millis(250);
/// How often resident memory is sampled.
pub const MEMORY_EVERY: Duration = Duration::from_secs(2);
/// Audio counts as flowing this long after the last step or non-zero peak.
const AUDIO_HOLD: Duration = Duration::from_secs(1);
/// Events handled before the screen gets a chance to redraw.
const MAX_BATCH: usize = 256;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitReason {
    /// The user quit (q or Ctrl-C); `Command::Shutdown` was sent.
    Quit,
    /// Every sender of the input channel is gone.
    Disconnected,
}

/// How a run of the loop went, for tests and the benchmark.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoopReport {
    pub reason: ExitReason,
    /// Frames drawn.
    pub draws: u64,
    /// Times the audio meters were sampled.
    pub level_samples: u64,
}

/// Runs the UI until the user quits or the inputs close.
pub fn run_main_loop<B: Backend>(
    terminal: &mut Terminal<B>,
    inputs: Receiver<AppEvent>,
    commands: Sender<Command>,
    ctx: UiContext,
) -> Result<ExitReason> {
    run_main_loop_report(terminal, inputs, commands, ctx).map(|r| r.reason)
}

/// [`run_main_loop`], also saying how much it drew.
pub fn run_main_loop_report<B: Backend>(
    terminal: &mut Terminal<B>,
    inputs: Receiver<AppEvent>,
    commands: Sender<Command>,
    ctx: UiContext,
) -> Result<LoopReport> {
    MainLoop::new(terminal, ctx)?.run(&inputs, &commands)
}

struct MainLoop<'t, B: Backend> {
    terminal: &'t mut Terminal<B>,
    ctx: UiContext,
    state: UiState,
    memory: MemorySampler,
    dirty: bool,
    last_draw: Option<Instant>,
    last_audio: Option<Instant>,
    draws: u64,
    level_samples: u64,
    /// The device picker's input level probes, while it is open.
    probes: Option<crate::audio::probe::Probes>,
}

fn backend_err<E: std::fmt::Display>(e: E) -> anyhow::Error {
    anyhow!("terminal: {e}")
}

impl<'t, B: Backend> MainLoop<'t, B> {
    fn new(terminal: &'t mut Terminal<B>, ctx: UiContext) -> Result<Self> {
        let mut state = UiState::new(&ctx);
        let size = terminal.size().map_err(backend_err)?;
        state.apply(AppEvent::Resize(size.width, size.height));
        let mut memory = MemorySampler::default();
        if let Some(m) = memory.sample() {
            state.apply(AppEvent::Memory(m));
        }
        Ok(Self {
            terminal,
            ctx,
            state,
            memory,
            dirty: true,
            last_draw: None,
            last_audio: None,
            draws: 0,
            level_samples: 0,
            probes: None,
        })
    }

    fn report(&self, reason: ExitReason) -> LoopReport {
        LoopReport {
            reason,
            draws: self.draws,
            level_samples: self.level_samples,
        }
    }

    fn run(
        mut self,
        inputs: &Receiver<AppEvent>,
        commands: &Sender<Command>,
    ) -> Result<LoopReport> {
        let start = Instant::now();
        let mut next_tick = start + SLOW_TICK;
        let mut next_memory = start + MEMORY_EVERY;
        loop {
            let now = Instant::now();
            let draw_due = self.last_draw.map_or(now, |t| t + FAST_TICK);
            if self.dirty && now >= draw_due {
                let state = &self.state;
                self.terminal
                    .draw(|f| render(state, f))
                    .map_err(backend_err)?;
                self.draws += 1;
                self.last_draw = Some(now);
                self.dirty = false;
            }
            // Sleep until the next tick, or until a pending redraw is allowed.
            let mut deadline = next_tick.min(next_memory);
            if self.dirty {
                deadline = deadline.min(draw_due);
            }
            match inputs.recv_deadline(deadline) {
                Ok(ev) => {
                    let mut batch = std::iter::once(ev).chain(inputs.try_iter().take(MAX_BATCH));
                    if let Some(reason) = batch
                        .try_fold((), |(), ev| match self.handle(ev, commands) {
                            Some(r) => Err(r),
                            None => Ok(()),
                        })
                        .err()
                    {
                        return Ok(self.report(reason));
                    }
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => {
                    return Ok(self.report(ExitReason::Disconnected))
                }
            }
            let now = Instant::now();
            if now >= next_tick {
                self.sample_levels(now);
                let flowing = self.last_audio.is_some_and(|t| now - t < AUDIO_HOLD);
                next_tick = now + if flowing { FAST_TICK } else { SLOW_TICK };
            }
            if now >= next_memory {
                if let Some(m) = self.memory.sample() {
                    self.dirty |= self.state.apply(AppEvent::Memory(m)).redraw;
                }
                next_memory = now + MEMORY_EVERY;
            }
        }
    }

    fn sample_levels(&mut self, now: Instant) {
        let mic = self.ctx.meters.take_mic_peak();
        let out = self.ctx.meters.take_out_peak();
        if mic > 0.0 || out > 0.0 {
            self.last_audio = Some(now);
        }
        self.level_samples += 1;
        self.dirty |= self.state.apply(AppEvent::Levels { mic, out }).redraw;
        if self.state.picker.is_none() {
            self.probes = None;
        }
        if let Some(p) = &self.probes {
            self.dirty |= self.state.apply(AppEvent::ProbeLevels(p.levels())).redraw;
        }
    }

    /// Applies one event; `Some` when the loop must end.
    fn handle(&mut self, ev: AppEvent, commands: &Sender<Command>) -> Option<ExitReason> {
        match &ev {
            AppEvent::Tick => {
                self.sample_levels(Instant::now());
                return None;
            }
            AppEvent::Engine(EngineEvent::Step(_)) => self.last_audio = Some(Instant::now()),
            _ => {}
        }
        let update = self.state.apply(ev);
        self.dirty |= update.redraw;
        match update.effect {
            None => None,
            Some(Effect::Send(cmd)) => {
                if commands.send(cmd).is_err() {
                    tracing::warn!("engine is gone; command dropped");
                }
                None
            }
            Some(Effect::Choose(pick)) => {
                match &self.ctx.picks {
                    Some(picks) if picks.send(pick).is_ok() => {}
                    _ => tracing::warn!("the chooser's pick has nowhere to go"),
                }
                None
            }
            Some(Effect::Consent(yes)) => {
                if let Some(t) = &self.ctx.tools {
                    t.desk.answer(yes, "key");
                }
                None
            }
            Some(Effect::Settings { path, saved, apply }) => {
                if let Some(cmd) = apply {
                    let _ = commands.send(cmd);
                }
                if let Err(e) = saved.save(&path) {
                    self.dirty |= self
                        .state
                        .apply(AppEvent::Engine(EngineEvent::warning(
                            format!("settings not saved: {e:#}"),
                            Some("check the config directory's permissions".into()),
                        )))
                        .redraw;
                }
                None
            }
            Some(Effect::ListDevices) => {
                // Asking the sound system takes a moment (ALSA opens each card):
                // the picker shows "asking" until the list is in.
                let list = crate::audio::device::list_devices();
                // Every input but the one in use (its level is the main meter's).
                let current = match &self.state.input {
                    Some(crate::bus::Endpoint::Device(n)) => Some(n.clone()),
                    _ => None,
                };
                let inputs: Vec<(usize, String)> = list
                    .iter()
                    .enumerate()
                    .filter(|(_, d)| d.side == crate::bus::DeviceSide::Microphone)
                    .filter(|(_, d)| Some(&d.name) != current.as_ref())
                    .map(|(i, d)| (i, d.selector.clone()))
                    .collect();
                self.dirty |= self.state.apply(AppEvent::Devices(list)).redraw;
                self.probes = Some(crate::audio::probe::Probes::start(inputs));
                None
            }
            Some(Effect::SwitchDevice(side, selector)) => {
                match &self.ctx.devices {
                    Some(d) => d.switch(side, selector),
                    None => {
                        if let Some(e) = &self.ctx.events {
                            let _ = e.send(EngineEvent::Device(
                                crate::bus::DeviceStatus::SwitchFailed {
                                    side,
                                    wanted: selector,
                                    reason: "no device is in use in this run (files only)".into(),
                                },
                            ));
                        }
                    }
                }
                None
            }
            Some(Effect::Persona(switch)) => {
                self.switch_persona(switch, commands);
                None
            }
            Some(Effect::Quit) => {
                self.ctx.shutdown.cancel();
                let _ = commands.send(Command::Shutdown);
                Some(ExitReason::Quit)
            }
        }
    }
}

impl<B: Backend> MainLoop<'_, B> {
    /// Tell the engine (sampling from the next step; a fresh conversation for
    /// a persona that greets), the journal, and the voice loader.
    fn switch_persona(&mut self, s: Switch, commands: &Sender<Command>) {
        if let Some(tb) = self.ctx.tools.as_ref().and_then(|t| t.toolbox.0.as_ref()) {
            tb.set_persona_tools(s.tools.clone());
        }
        let _ = commands.send(Command::SetSampling(s.sampling.clone()));
        let _ = commands.send(Command::SetWakeActive(s.wake.clone()));
        match s.prompt {
            // Priming starts a fresh conversation; a model without prompts only resets
            // for a persona that greets.
            Some(prompt) => {
                let _ = commands.send(Command::Prime {
                    prompt,
                    fresh: s.reset,
                });
            }
            None if s.reset => {
                let _ = commands.send(Command::Reset);
            }
            None => {}
        }
        if let Some(events) = &self.ctx.events {
            let _ = events.send(EngineEvent::PersonaSwitched {
                name: s.name.clone(),
            });
        }
        if let Some(voices) = &self.ctx.voices {
            match (s.load, &self.ctx.events) {
                (Some(weights), Some(events)) => voices.start(
                    s.id,
                    s.name,
                    weights,
                    s.sampling,
                    events.clone(),
                    commands.clone(),
                ),
                _ => voices.cancel(s.id),
            }
        }
    }
}

/// Reads terminal input on its own thread and sends it into the UI's channel.
pub struct InputThread {
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<()>>,
}

/// How long a read waits before checking whether to stop.
const INPUT_POLL: Duration = Duration::from_millis(100);

pub fn spawn_input_thread(tx: Sender<AppEvent>) -> std::io::Result<InputThread> {
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    let handle = std::thread::Builder::new()
        .name("ui-input".into())
        .spawn(move || {
            while !flag.load(Relaxed) {
                match event::poll(INPUT_POLL) {
                    Ok(false) => continue,
                    Ok(true) => {}
                    Err(e) => {
                        tracing::error!("terminal input: {e}");
                        break;
                    }
                }
                match event::read() {
                    Ok(e) => {
                        if let Some(ev) = AppEvent::from_terminal(e) {
                            if tx.send(ev).is_err() {
                                break;
                            }
                        }
                    }
                    Err(e) => {
                        tracing::error!("terminal input: {e}");
                        break;
                    }
                }
            }
        })?;
    Ok(InputThread {
        stop,
        handle: Some(handle),
    })
}

impl InputThread {
    /// Stops reading (within one poll interval) and waits for the thread.
    pub fn stop(mut self) {
        self.halt();
    }

    fn halt(&mut self) {
        self.stop.store(true, Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

impl Drop for InputThread {
    fn drop(&mut self) {
        self.halt();
    }
}

/// Moves engine events into the UI's channel until either side closes.
pub fn forward_engine_events(
    events: Receiver<EngineEvent>,
    tx: Sender<AppEvent>,
) -> std::io::Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name("ui-engine-events".into())
        .spawn(move || {
            for e in events {
                if tx.send(AppEvent::Engine(e)).is_err() {
                    break;
                }
            }
        })
}

/// Runs the TUI on the real terminal: takes it over, runs the loop, gives it back
/// (also on error). However it ends, `Command::Shutdown` has been sent: the UI
/// ending ends the session.
pub fn run(
    ctx: UiContext,
    engine_events: Receiver<EngineEvent>,
    commands: Sender<Command>,
) -> Result<ExitReason> {
    let (tx, rx) = crossbeam_channel::unbounded();
    let shutdown = commands.clone();
    let cancel = ctx.shutdown.clone();
    let result = (|| {
        forward_engine_events(engine_events, tx.clone())?;
        let mut guard = terminal::enter()
            .context("cannot take over the terminal for the TUI (use --headless without one)")?;
        let input = spawn_input_thread(tx)?;
        let result = run_main_loop(&mut guard.terminal, rx, commands, ctx);
        input.stop();
        drop(guard);
        result
    })();
    let restored = terminal::restore();
    if !matches!(result, Ok(ExitReason::Quit)) {
        // Quitting sent it already.
        cancel.cancel();
        let _ = shutdown.send(Command::Shutdown);
    }
    let reason = result?;
    restored?;
    Ok(reason)
}
