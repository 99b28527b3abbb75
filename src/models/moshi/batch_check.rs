//! Batched against unbatched stepping (`serve --batch`): that each session's tokens are
//! those of its own run, and what the batch costs. Shared by `assistant bench serve`
//! (the demo and ~300M shapes on the CPU), `assistant bench gpu --section batch` (7B
//! sessions a GPU holds in real time) and the tests.

use super::batched::{BatchCore, Request};
use super::placed_lm::PlacedLm;
use super::sampling::Samplers;
use super::stepper::Stepper;
use crate::bus::Sampling;
use anyhow::{anyhow, Result};
use moshi::lm_generate_multistream::Config;
use std::time::Instant;

/// Builds the LM on the weights under test: unbatched (`None`) or with that many slots.
pub type MakeLm<'a> = dyn FnMut(Option<usize>) -> Result<PlacedLm> + 'a;

/// Greedy sampling: the same tokens for the same logits, whatever the seed.
pub fn greedy() -> Sampling {
    Sampling {
        temperature: 0.0,
        text_temperature: 0.0,
        top_k: 1,
        seed: 0,
    }
}

/// What the teacher-forced comparison found.
#[derive(Debug, Clone, PartialEq)]
pub struct Equality {
    pub sessions: usize,
    /// Session steps compared (text token, audio tokens and logits each).
    pub steps: usize,
    /// The first step whose tokens differed (`None`: all equal).
    pub first_difference: Option<String>,
    /// Steps whose tokens differed (after the first, a session's own tokens feed back,
    /// so its later steps may differ because of it).
    pub differing_steps: usize,
    /// The largest difference between a batched and an unbatched text logit, up to each
    /// session's first differing token (after it, the session's inputs differ).
    pub max_logit_diff: f32,
    /// The largest text logit seen (its magnitude), for scale.
    pub max_logit: f32,
}

impl Equality {
    pub fn tokens_equal(&self) -> bool {
        self.first_difference.is_none()
    }
}

/// A session of the comparison: where and when it runs, and what it hears.
struct Plan {
    slot: usize,
    start: usize,
    frames: usize,
    /// Late every fifth round (masked), from its second frame on.
    late: bool,
}

/// The user's codes of session `s` at frame `f`: pseudo-random, never the pad token.
fn codes(s: usize, f: usize, gen: &Config) -> Vec<u32> {
    let mut x = (s as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ (f as u64 + 1);
    (0..gen.input_audio_codebooks)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x % (gen.audio_vocab_size as u64 - 1)) as u32
        })
        .collect()
}

/// Teacher-forced, greedy: `sessions` sessions in a batch of as many slots, session i
/// joining at frame 2i, the odd ones late (masked) now and then, and one more session
/// taking slot 0 once its first session has left (the slot reset), each fed its own
/// codes for `frames` frames; against each session stepped alone on the same codes.
pub fn teacher_forced_equality(
    make: &mut MakeLm,
    gen: &Config,
    sessions: usize,
    frames: usize,
) -> Result<Equality> {
    batch_equality(make, gen, sessions, frames, Reference::Alone)
}

/// What each batched session is compared with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reference {
    /// The session stepped alone on the unbatched LM (moshi's unbatched transformer).
    Alone,
    /// The session alone in a batch of one: the same kernels, so whatever differs is
    /// what the other sessions and the batch size do to it.
    BatchOfOne,
}

/// `teacher_forced_equality` against either reference.
pub fn batch_equality(
    make: &mut MakeLm,
    gen: &Config,
    sessions: usize,
    frames: usize,
    reference: Reference,
) -> Result<Equality> {
    let sessions = sessions.max(1);
    let mut plans: Vec<Plan> = (0..sessions)
        .map(|i| Plan {
            slot: i,
            start: 2 * i,
            frames,
            late: i % 2 == 1,
        })
        .collect();
    plans.push(Plan {
        slot: 0,
        start: frames + 1,
        frames: frames / 2 + 1,
        late: false,
    });
    let sampling = greedy();
    let mut expected = Vec::with_capacity(plans.len());
    match reference {
        Reference::Alone => {
            // Each session alone: a fork of one unbatched LM.
            let alone = Stepper::new(make(None)?, gen.clone());
            for (s, p) in plans.iter().enumerate() {
                let mut st = alone.fork();
                let mut samplers = Samplers::new(&sampling);
                let mut steps = Vec::with_capacity(p.frames);
                for f in 0..p.frames {
                    let (text, logits) = st.step_logits(&codes(s, f, gen), &mut samplers)?;
                    let audio = st.last_audio_tokens().map(<[u32]>::to_vec);
                    steps.push((text, audio, logits.to_vec1::<f32>()?));
                }
                expected.push(steps);
            }
        }
        Reference::BatchOfOne => {
            let mut one = BatchCore::new(make(Some(1))?, gen.clone(), &sampling)?;
            one.keep_logits = true;
            for (s, p) in plans.iter().enumerate() {
                let mut steps = Vec::with_capacity(p.frames);
                for f in 0..p.frames {
                    let req = Request {
                        codes: codes(s, f, gen),
                        reset: f == 0,
                        sampling: (f == 0).then(|| sampling.clone()),
                    };
                    let out =
                        one.step(vec![Some(req)])?.pop().flatten().ok_or_else(|| {
                            anyhow!("internal error: a batch of one gave nothing")
                        })??;
                    steps.push((out.text, out.audio, out.logits.unwrap_or_default()));
                }
                expected.push(steps);
            }
        }
    }
    let mut core = BatchCore::new(make(Some(sessions))?, gen.clone(), &sampling)?;
    core.keep_logits = true;
    // Frames each session has had stepped.
    let mut done = vec![0usize; plans.len()];
    // Sessions whose tokens have differed: their later inputs differ too.
    let mut diverged = vec![false; plans.len()];
    let mut eq = Equality {
        sessions,
        steps: 0,
        first_difference: None,
        differing_steps: 0,
        max_logit_diff: 0.0,
        max_logit: 0.0,
    };
    let mut round = 0;
    while done.iter().zip(&plans).any(|(d, p)| *d < p.frames) {
        let mut reqs: Vec<Option<Request>> = vec![None; sessions];
        let mut who = vec![None; sessions];
        for (s, p) in plans.iter().enumerate() {
            let live = round >= p.start && done[s] < p.frames;
            let late = p.late && done[s] > 0 && round % 5 == 3;
            if live && !late {
                if reqs[p.slot].is_some() {
                    return Err(anyhow!("internal error: two sessions in slot {}", p.slot));
                }
                reqs[p.slot] = Some(Request {
                    codes: codes(s, done[s], gen),
                    reset: done[s] == 0,
                    sampling: (done[s] == 0).then(|| sampling.clone()),
                });
                who[p.slot] = Some(s);
            }
        }
        let outs = core.step(reqs)?;
        for (slot, out) in outs.into_iter().enumerate() {
            let (Some(out), Some(s)) = (out, who[slot]) else {
                continue;
            };
            let out = out?;
            let (text, audio, logits) = &expected[s][done[s]];
            let got = out.logits.as_deref().unwrap_or_default();
            for (a, b) in got.iter().zip(logits) {
                if !diverged[s] {
                    eq.max_logit_diff = eq.max_logit_diff.max((a - b).abs());
                }
                eq.max_logit = eq.max_logit.max(b.abs());
            }
            let differs = out.text != *text || out.audio != *audio;
            diverged[s] |= differs;
            eq.differing_steps += usize::from(differs);
            if eq.first_difference.is_none() && differs {
                eq.first_difference = Some(format!(
                    "session {s} (slot {slot}) frame {}: batched text {} audio {:?}, alone text {text} audio {audio:?}",
                    done[s], out.text, out.audio
                ));
            }
            eq.steps += 1;
            done[s] += 1;
        }
        round += 1;
    }
    Ok(eq)
}

/// One session stepped alone twice on the same codes, each time on an LM built afresh:
/// the largest text-logit difference and the steps whose tokens differed. Anything
/// but zero is the unbatched path's own run-to-run variation, which bounds what the
/// batched comparison can show.
pub fn alone_twice(make: &mut MakeLm, gen: &Config, frames: usize) -> Result<(f32, usize)> {
    let mut runs = Vec::with_capacity(2);
    for _ in 0..2 {
        let mut st = Stepper::new(make(None)?, gen.clone());
        let mut samplers = Samplers::new(&greedy());
        let mut steps = Vec::with_capacity(frames);
        for f in 0..frames {
            let (text, logits) = st.step_logits(&codes(0, f, gen), &mut samplers)?;
            let audio = st.last_audio_tokens().map(<[u32]>::to_vec);
            steps.push((text, audio, logits.to_vec1::<f32>()?));
        }
        runs.push(steps);
    }
    let (mut diff, mut differing) = (0f32, 0);
    for (a, b) in runs[0].iter().zip(&runs[1]) {
        differing += usize::from(a.0 != b.0 || a.1 != b.1);
        for (x, y) in a.2.iter().zip(&b.2) {
            diff = diff.max((x - y).abs());
        }
    }
    Ok((diff, differing))
}

/// Seconds of CPU this process has used (all its threads: candle's pools included).
pub fn process_cpu_seconds() -> f64 {
    // SAFETY: getrusage writes into the struct we own; a zeroed rusage is valid.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut u) } != 0 {
        return 0.0;
    }
    let t = |v: libc::timeval| v.tv_sec as f64 + v.tv_usec as f64 * 1e-6;
    t(u.ru_utime) + t(u.ru_stime)
}

/// The cost of N sessions' LM steps, batched and not.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Cost {
    pub sessions: usize,
    /// Unbatched: CPU ms per session per frame (each session steps its own fork).
    pub alone_cpu_ms: f64,
    /// Unbatched: wall ms for all N sessions' steps of one frame, one after another.
    pub alone_wall_ms: f64,
    /// Batched: CPU ms per session per frame.
    pub batch_cpu_ms: f64,
    /// Batched: wall ms of one step of all N slots.
    pub batch_wall_ms: f64,
}

/// Step N sessions for `frames` frames (after 2 warm-up frames), unbatched then
/// batched, and measure both. The LM only: each session's Mimi costs the same either way.
pub fn cost(make: &mut MakeLm, gen: &Config, sessions: usize, frames: usize) -> Result<Cost> {
    let sessions = sessions.max(1);
    let frames = frames.max(1);
    let sampling = greedy();
    let warm = 2;
    let per = (sessions * frames) as f64;
    let (alone_cpu_ms, alone_wall_ms) = {
        let one = Stepper::new(make(None)?, gen.clone());
        let mut forks: Vec<(Stepper, Samplers)> = (0..sessions)
            .map(|_| (one.fork(), Samplers::new(&sampling)))
            .collect();
        drop(one);
        let (mut cpu0, mut t0) = (0.0, Instant::now());
        for f in 0..warm + frames {
            if f == warm {
                (cpu0, t0) = (process_cpu_seconds(), Instant::now());
            }
            for (s, (st, sm)) in forks.iter_mut().enumerate() {
                st.step(&codes(s, f, gen), sm)?;
            }
        }
        (
            (process_cpu_seconds() - cpu0) * 1e3 / per,
            t0.elapsed().as_secs_f64() * 1e3 / frames as f64,
        )
    };
    let (batch_cpu_ms, batch_wall_ms) = {
        let mut core = BatchCore::new(make(Some(sessions))?, gen.clone(), &sampling)?;
        let (mut cpu0, mut t0) = (0.0, Instant::now());
        for f in 0..warm + frames {
            if f == warm {
                (cpu0, t0) = (process_cpu_seconds(), Instant::now());
            }
            let reqs = (0..sessions)
                .map(|s| {
                    Some(Request {
                        codes: codes(s, f, gen),
                        reset: f == 0,
                        sampling: None,
                    })
                })
                .collect();
            for out in core.step(reqs)?.into_iter().flatten() {
                out?;
            }
        }
        (
            (process_cpu_seconds() - cpu0) * 1e3 / per,
            t0.elapsed().as_secs_f64() * 1e3 / frames as f64,
        )
    };
    Ok(Cost {
        sessions,
        alone_cpu_ms,
        alone_wall_ms,
        batch_cpu_ms,
        batch_wall_ms,
    })
}

/// How many real-time sessions one device holds.
#[derive(Debug, Clone, PartialEq)]
pub struct Capacity {
    pub costs: Vec<Cost>,
    /// The largest N measured up to which every N's frame took at most a frame: each
    /// session alone. (A later N that happens to come in under a frame, on a noisy
    /// machine, does not count.)
    pub alone: usize,
    /// The same, batched.
    pub batched: usize,
    /// Why it stopped before the last N (out of memory), after the first.
    pub stopped: Option<String>,
}

/// The costs for each N in `ns` (ascending), until both ways have taken longer than a
/// frame (`frame_ms`) per frame, or the first N that fails (out of memory).
pub fn realtime_capacity(
    make: &mut MakeLm,
    gen: &Config,
    ns: &[usize],
    frames: usize,
    frame_ms: f64,
) -> Result<Capacity> {
    let mut cap = Capacity {
        costs: Vec::new(),
        alone: 0,
        batched: 0,
        stopped: None,
    };
    let (mut alone_ok, mut batch_ok) = (true, true);
    for &n in ns {
        let c = match cost(make, gen, n, frames) {
            Ok(c) => c,
            Err(e) if !cap.costs.is_empty() => {
                cap.stopped = Some(format!("N={n}: {e:#}"));
                break;
            }
            Err(e) => return Err(e),
        };
        alone_ok &= c.alone_wall_ms <= frame_ms;
        batch_ok &= c.batch_wall_ms <= frame_ms;
        if alone_ok {
            cap.alone = n;
        }
        if batch_ok {
            cap.batched = n;
        }
        cap.costs.push(c);
        if !alone_ok && !batch_ok {
            break;
        }
    }
    Ok(cap)
}

/// The LMs of a seeded random model (`demo::random_model`'s weights).
pub fn random_maker<'a>(
    cfg: &'a super::config::ModelConfig,
    seed: u64,
    dev: &'a moshi::candle::Device,
) -> impl FnMut(Option<usize>) -> Result<PlacedLm> + 'a {
    move |batch| {
        Ok(match batch {
            None => super::demo::random_lm(cfg, seed, Default::default(), dev)?,
            Some(n) => super::demo::random_batched_lm(cfg, seed, n, dev)?,
        })
    }
}

/// The LMs of a checkpoint directory, read again for each (q8 files share nothing
/// between reads), with the KV cache cut to `context` steps; and its generation config.
pub fn checkpoint_maker(
    dir: &std::path::Path,
    context: usize,
    dev: &moshi::candle::Device,
) -> Result<(impl FnMut(Option<usize>) -> Result<PlacedLm>, Config)> {
    let mut ck = super::checkpoint::inspect(dir).map_err(|e| anyhow!("{}", e.message))?;
    ck.config.lm.transformer.context = context;
    let gen = ck.config.gen.clone();
    let dev = dev.clone();
    let make = move |batch: Option<usize>| {
        ck.batch = batch.is_some();
        ck.sessions = batch.unwrap_or(1);
        let cancel = crate::bus::Cancel::new();
        let (_, lm, _) = super::checkpoint::load_parts(&ck, &dev, &mut |_| {}, &cancel)
            .map_err(|e| anyhow!("{}", e.message))?;
        Ok(lm)
    };
    Ok((make, gen))
}
