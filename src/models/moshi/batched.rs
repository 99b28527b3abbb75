//! `serve --batch`: the sessions' LM steps in one batched forward pass.
//!
//! One `PlacedLm` with moshi's batched temporal transformer holds a KV cache slot per
//! session (one copy of the weights). Each session keeps its Mimi, text assembly and
//! prompt on its own thread and hands its frame's codes to the stepper (`Hub`), which
//! owns the LM, the token histories and the samplers of every slot and steps all the
//! slots that have a frame together.
//!
//! Timing: the stepper steps as soon as every punctual session has handed in its frame,
//! or `GATHER` after the first one did. A session whose frame has not come by then is
//! masked for that step (its cache and tokens do not move: it steps with the next
//! batch), and is not waited for again until it is on time: a slow or stalled client
//! costs the others one gather window once, never real time. Masking rather than
//! stepping it on silence keeps each session's tokens exactly those of its own run
//! (`BatchCore` is what the token-equality check drives).

use super::placed_lm::PlacedLm;
use super::sampling::Samplers;
use super::stepper::Tokens;
use crate::bus::Sampling;
pub use crate::models::duplex::BatchStats;
use anyhow::{anyhow, bail, Result};
use moshi::candle::{IndexOp, Tensor};
use moshi::lm_generate_multistream::Config;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// How long the stepper waits for the other sessions' frames after the first one came.
pub const GATHER: Duration = Duration::from_millis(40);
/// How long a session waits for its step before it fails (the stepper is stuck).
const ANSWER_WAIT: Duration = Duration::from_secs(20);

/// One session's frame for the batch.
#[derive(Debug, Clone)]
pub struct Request {
    /// The user's audio codes of this frame.
    pub codes: Vec<u32>,
    /// Forget the conversation first (a new session, or `reset`).
    pub reset: bool,
    /// New samplers from this step on.
    pub sampling: Option<Sampling>,
}

/// What one slot's step gave.
#[derive(Debug, Clone, PartialEq)]
pub struct SlotOut {
    pub text: u32,
    /// The model's audio codes completed by this step (`None` while the delay fills).
    pub audio: Option<Vec<u32>>,
    /// The text logits, when the core keeps them (equality checks).
    pub logits: Option<Vec<f32>>,
}

struct SlotState {
    tokens: Tokens,
    samplers: Samplers,
}

/// The batched LM and every slot's tokens and samplers, stepped by one thread.
pub struct BatchCore {
    lm: PlacedLm,
    slots: Vec<SlotState>,
    /// Keep each step's text logits in its `SlotOut`.
    pub keep_logits: bool,
}

impl BatchCore {
    pub fn new(lm: PlacedLm, gen: Config, sampling: &Sampling) -> Result<Self> {
        let n = lm
            .batch_size()
            .ok_or_else(|| anyhow!("internal error: BatchCore needs a batched LM"))?;
        let slots = (0..n)
            .map(|_| SlotState {
                tokens: Tokens::new(gen.clone()),
                samplers: Samplers::new(sampling),
            })
            .collect();
        Ok(Self {
            lm,
            slots,
            keep_logits: false,
        })
    }

    pub fn slots(&self) -> usize {
        self.slots.len()
    }

    /// Step every slot with a request together; the others are masked. Each slot's
    /// result is its own: one slot's failure does not fail the others.
    pub fn step(&mut self, reqs: Vec<Option<Request>>) -> Result<Vec<Option<Result<SlotOut>>>> {
        if reqs.len() != self.slots.len() {
            bail!("{} requests for {} slots", reqs.len(), self.slots.len());
        }
        let mut inputs = Vec::with_capacity(reqs.len());
        let mut failed: Vec<Option<anyhow::Error>> = (0..reqs.len()).map(|_| None).collect();
        for (i, req) in reqs.iter().enumerate() {
            let Some(req) = req else {
                inputs.push(None);
                continue;
            };
            let slot = &mut self.slots[i];
            if let Some(s) = &req.sampling {
                slot.samplers = Samplers::new(s);
            }
            if req.reset {
                self.lm.reset_slot(i)?;
                slot.tokens.reset();
            }
            match slot.tokens.inputs(&req.codes) {
                Ok(x) => inputs.push(Some(x)),
                Err(e) => {
                    failed[i] = Some(e.into());
                    inputs.push(None);
                }
            }
        }
        if inputs.iter().all(Option::is_none) {
            return Ok(failed.into_iter().map(|e| e.map(Err)).collect());
        }
        let (logits, ys) = self.lm.forward_batch(&inputs)?;
        let mut outs = Vec::with_capacity(inputs.len());
        for (i, input) in inputs.iter().enumerate() {
            if input.is_none() {
                outs.push(failed[i].take().map(Err));
                continue;
            }
            let slot = &mut self.slots[i];
            let one = |t: &Tensor| t.i(i..i + 1);
            let out = (|| -> Result<SlotOut> {
                let l = one(&logits)?;
                let text = slot
                    .tokens
                    .sample(&mut self.lm, &l, &one(&ys)?, &mut slot.samplers)?;
                Ok(SlotOut {
                    text,
                    audio: slot.tokens.last_audio_tokens().map(<[u32]>::to_vec),
                    logits: if self.keep_logits {
                        Some(l.flatten_all()?.to_vec1()?)
                    } else {
                        None
                    },
                })
            })();
            outs.push(Some(out));
        }
        Ok(outs)
    }
}

#[derive(Default)]
struct Cell {
    taken: bool,
    /// Bumped at each join, so a late answer never reaches the slot's next session.
    generation: u64,
    /// On time at the last step: the stepper waits for its frame.
    punctual: bool,
    request: Option<(u64, Request)>,
    reply: Option<Result<SlotOut, String>>,
}

struct State {
    cells: Vec<Cell>,
    /// The template and the slots: the stepper stops when none is left.
    holders: usize,
    closed: bool,
    stats: BatchStats,
}

/// The stepper thread's side: sessions hand in frames, it answers each.
pub struct Hub {
    state: Mutex<State>,
    work: Condvar,
    done: Condvar,
}

impl Hub {
    /// Start the stepper thread on `core`; the returned handle is the template's hold.
    pub fn start(core: BatchCore) -> Result<Arc<Hub>> {
        let hub = Arc::new(Hub {
            state: Mutex::new(State {
                cells: (0..core.slots()).map(|_| Cell::default()).collect(),
                holders: 1,
                closed: false,
                stats: BatchStats::new(core.slots()),
            }),
            work: Condvar::new(),
            done: Condvar::new(),
        });
        let h = hub.clone();
        std::thread::Builder::new()
            .name("batch-stepper".into())
            .spawn(move || h.run(core))?;
        Ok(hub)
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic in a session cannot leave the cells half-written: recover the guard.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn slots(&self) -> usize {
        self.lock().cells.len()
    }

    pub fn stats(&self) -> BatchStats {
        self.lock().stats.clone()
    }

    /// Sessions holding a slot now.
    pub fn active(&self) -> usize {
        self.lock().cells.iter().filter(|c| c.taken).count()
    }

    fn run(&self, mut core: BatchCore) {
        let mut st = self.lock();
        loop {
            if st.closed {
                return;
            }
            if !st.cells.iter().any(|c| c.taken && c.request.is_some()) {
                st = self.work.wait(st).unwrap_or_else(|e| e.into_inner());
                continue;
            }
            let until = Instant::now() + GATHER;
            loop {
                let all = st
                    .cells
                    .iter()
                    .all(|c| !c.taken || !c.punctual || c.request.is_some());
                let now = Instant::now();
                if all || st.closed {
                    break;
                }
                if now >= until {
                    st.stats.waited_out += 1;
                    break;
                }
                st = self
                    .work
                    .wait_timeout(st, until - now)
                    .unwrap_or_else(|e| e.into_inner())
                    .0;
            }
            let mut generations = Vec::with_capacity(st.cells.len());
            let mut reqs = Vec::with_capacity(st.cells.len());
            let mut late = 0;
            for c in st.cells.iter_mut() {
                let r = if c.taken { c.request.take() } else { None };
                c.punctual = r.is_some();
                late += usize::from(c.taken && r.is_none());
                generations.push(r.as_ref().map(|(g, _)| *g));
                reqs.push(r.map(|(_, r)| r));
            }
            drop(st);
            let t0 = Instant::now();
            let outs = core.step(reqs);
            let took = t0.elapsed().as_secs_f64();
            st = self.lock();
            let stepped = generations.iter().flatten().count();
            st.stats.record(stepped, late, took);
            match outs {
                Ok(outs) => {
                    for (i, out) in outs.into_iter().enumerate() {
                        let (Some(out), Some(g)) = (out, generations[i]) else {
                            continue;
                        };
                        let cell = &mut st.cells[i];
                        if cell.taken && cell.generation == g {
                            cell.reply = Some(out.map_err(|e| format!("{e:#}")));
                        }
                    }
                }
                Err(e) => {
                    let e = format!("the batched step failed: {e:#}");
                    tracing::error!("{e}");
                    for (i, g) in generations.iter().enumerate() {
                        let cell = &mut st.cells[i];
                        if g.is_some() && cell.taken && Some(cell.generation) == *g {
                            cell.reply = Some(Err(e.clone()));
                        }
                    }
                }
            }
            self.done.notify_all();
        }
    }

    /// A free slot for a new session, waiting up to `wait` for one (a session that
    /// just ended may still be letting go of its slot); `None`: all are taken.
    pub fn join(self: &Arc<Self>, wait: Duration) -> Option<Slot> {
        let until = Instant::now() + wait;
        let mut st = self.lock();
        loop {
            if st.closed {
                return None;
            }
            if let Some(i) = st.cells.iter().position(|c| !c.taken) {
                let c = &mut st.cells[i];
                c.taken = true;
                c.generation += 1;
                c.punctual = true;
                c.request = None;
                c.reply = None;
                let generation = c.generation;
                st.holders += 1;
                return Some(Slot {
                    hub: self.clone(),
                    index: i,
                    generation,
                    reset_next: true,
                    sampling_next: None,
                    steps: 0,
                });
            }
            let now = Instant::now();
            if now >= until {
                return None;
            }
            st = self
                .done
                .wait_timeout(st, (until - now).min(Duration::from_millis(20)))
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    /// Give up one hold (the template's or a slot's); the last one stops the stepper.
    pub fn release(&self) {
        let mut st = self.lock();
        st.holders = st.holders.saturating_sub(1);
        if st.holders == 0 {
            st.closed = true;
            self.work.notify_all();
        }
        self.done.notify_all();
    }
}

/// A session's place in the batch. Dropping it frees the slot.
pub struct Slot {
    hub: Arc<Hub>,
    index: usize,
    generation: u64,
    reset_next: bool,
    sampling_next: Option<Sampling>,
    steps: usize,
}

impl Slot {
    pub fn index(&self) -> usize {
        self.index
    }

    /// Steps since the start or the last reset.
    pub fn steps(&self) -> usize {
        self.steps
    }

    pub fn hub(&self) -> &Arc<Hub> {
        &self.hub
    }

    /// Forget the conversation at the next step, with these samplers.
    pub fn reset(&mut self, sampling: &Sampling) {
        self.reset_next = true;
        self.sampling_next = Some(sampling.clone());
        self.steps = 0;
    }

    /// New samplers from the next step on.
    pub fn set_sampling(&mut self, sampling: &Sampling) {
        self.sampling_next = Some(sampling.clone());
    }

    /// Hand in this frame's codes and wait for the batch to step them.
    pub fn step(&mut self, codes: &[u32]) -> Result<SlotOut> {
        let req = Request {
            codes: codes.to_vec(),
            reset: self.reset_next,
            sampling: self.sampling_next.clone(),
        };
        let hub = self.hub.clone();
        let mut st = hub.lock();
        if st.closed {
            bail!("the batch stepper has stopped");
        }
        st.cells[self.index].request = Some((self.generation, req));
        hub.work.notify_all();
        let until = Instant::now() + ANSWER_WAIT;
        loop {
            if let Some(reply) = st.cells[self.index].reply.take() {
                self.reset_next = false;
                self.sampling_next = None;
                self.steps += 1;
                return reply.map_err(|e| anyhow!(e));
            }
            let now = Instant::now();
            if st.closed || now >= until {
                st.cells[self.index].request = None;
                bail!(
                    "the batch stepper did not step this session within {} s",
                    ANSWER_WAIT.as_secs()
                );
            }
            st = hub
                .done
                .wait_timeout(st, until - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        {
            let mut st = self.hub.lock();
            let c = &mut st.cells[self.index];
            if c.generation == self.generation {
                c.taken = false;
                c.request = None;
                c.reply = None;
            }
        }
        // Whoever waits on the gather no longer waits for this slot.
        self.hub.work.notify_all();
        self.hub.release();
    }
}

/// The template's hold on the hub: while it lives, sessions can join.
pub struct HubHold(pub Arc<Hub>);

impl Drop for HubHold {
    fn drop(&mut self) {
        self.0.release();
    }
}
