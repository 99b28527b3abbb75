//! A synthesiser on a thread of its own. On a CPU a synthesiser's step is slow and
//! uneven (Pocket TTS reads a new chunk's text in one step of up to 250 ms): on the
//! engine thread that step holds up the microphone's next frame and the speaker's
//! next one. Here the synthesiser runs ahead of playback on its own thread, a few
//! frames at most, and the engine takes what is ready; what is not ready plays as
//! silence instead of stalling everything else.
//!
//! Without a clock (a file read as fast as the model steps, or the silence fed after a
//! real-time input ended mid-reply) the thread makes a frame only when asked and the
//! engine waits for it, so the frames are those of a direct call, whatever the
//! timing. Commands and requests share one queue, so the synthesiser sees text, ends
//! and steps in the order the turn machine gave them.

use crate::models::parts::{TextToSpeech, TtsStep, TTS_FRAME};
use anyhow::Result;
use crossbeam_channel::{Receiver, RecvTimeoutError, SendTimeoutError, Sender};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

/// Frames the thread may make before the engine takes them (on top of any lead the
/// turn machine keeps).
const AHEAD: usize = 2;
/// While a synthesiser says `Waiting` (for text, or, as Kyutai's does after a bounded
/// number of model steps, for another call), the thread calls it again after this or
/// at the next command, whichever comes first.
const RETRY: Duration = Duration::from_millis(10);

enum Command {
    /// Utterance `n` has begun (the synthesiser was started by the caller).
    Start(u64),
    Text(u64, String),
    Finish(u64),
    /// Utterance `n` was cancelled.
    Cancel(u64),
    /// Run ahead on its own (a clock), or make a frame only when asked.
    Ahead(bool),
    /// Make one frame of utterance `n` and send it, whatever it is.
    Step(u64),
}

/// One frame made for utterance `utt`.
struct Made {
    utt: u64,
    pcm: Vec<f32>,
    step: Result<TtsStep>,
}

type Shared = Arc<Mutex<Box<dyn TextToSpeech>>>;

pub struct TtsThread {
    name: String,
    inner: Shared,
    /// The utterance in play: frames and commands of older ones are dropped.
    utt: Arc<AtomicU64>,
    commands: Option<Sender<Command>>,
    frames: Receiver<Made>,
    /// Frames taken, handed back for reuse.
    spare: Sender<Vec<f32>>,
    /// The input keeps a clock: take what is ready. Otherwise ask and wait.
    realtime: bool,
    thread: Option<JoinHandle<()>>,
}

fn lock(inner: &Shared) -> MutexGuard<'_, Box<dyn TextToSpeech>> {
    // A panic in a step poisons the lock; the synthesiser is still usable.
    inner.lock().unwrap_or_else(|p| p.into_inner())
}

impl TtsThread {
    pub fn spawn(tts: Box<dyn TextToSpeech>) -> Result<Self> {
        let name = tts.name();
        let inner: Shared = Arc::new(Mutex::new(tts));
        let utt = Arc::new(AtomicU64::new(0));
        let (cmd_tx, cmd_rx) = crossbeam_channel::unbounded();
        // Room for the lead and for the one frame a request adds.
        let (made_tx, made_rx) = crossbeam_channel::bounded(AHEAD + 1);
        let (spare_tx, spare_rx) = crossbeam_channel::bounded(AHEAD * 2 + 2);
        let (inner2, utt2) = (inner.clone(), utt.clone());
        let thread = std::thread::Builder::new()
            .name("synthesiser".into())
            .spawn(move || {
                Worker {
                    inner: inner2,
                    utt: utt2,
                    made: made_tx,
                    spare: spare_rx,
                    cur: 0,
                    active: false,
                    ahead: false,
                    gone: false,
                }
                .run(cmd_rx)
            })?;
        Ok(Self {
            name,
            inner,
            utt,
            commands: Some(cmd_tx),
            frames: made_rx,
            spare: spare_tx,
            realtime: false,
            thread: Some(thread),
        })
    }

    fn send(&self, c: Command) {
        if let Some(tx) = &self.commands {
            let _ = tx.send(c);
        }
    }

    fn current(&self) -> u64 {
        self.utt.load(Ordering::Acquire)
    }

    /// Drop the frames made for an utterance no longer in play.
    fn drain(&self) {
        while let Ok(m) = self.frames.try_recv() {
            let _ = self.spare.try_send(m.pcm);
        }
    }

    fn thread_alive(&self) -> bool {
        self.thread.as_ref().is_some_and(|t| !t.is_finished())
    }

    fn take(&self, m: Made, out: &mut [f32]) -> Result<TtsStep> {
        let n = out.len().min(m.pcm.len());
        out[..n].copy_from_slice(&m.pcm[..n]);
        let _ = self.spare.try_send(m.pcm);
        m.step
    }
}

/// The thread's side.
struct Worker {
    inner: Shared,
    utt: Arc<AtomicU64>,
    made: Sender<Made>,
    spare: Receiver<Vec<f32>>,
    /// The utterance this thread works on.
    cur: u64,
    /// It has text or an end to work on (running ahead only).
    active: bool,
    /// Running ahead on its own (the input keeps a clock).
    ahead: bool,
    /// The engine has dropped its end of the frames channel.
    gone: bool,
}

impl Worker {
    fn run(mut self, commands: Receiver<Command>) {
        loop {
            let next = if self.ahead && self.active {
                commands.recv_timeout(RETRY)
            } else {
                commands.recv().map_err(|_| RecvTimeoutError::Disconnected)
            };
            match next {
                Ok(c) => {
                    // Every command waiting, before the next frame.
                    self.apply(c);
                    while let Ok(c) = commands.try_recv() {
                        if self.gone {
                            break;
                        }
                        self.apply(c);
                    }
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => return,
            }
            if self.gone {
                return;
            }
            // Ahead: frames until the lead is full (the send waits for room) or the
            // synthesiser waits; each `Waiting` is tried again after `RETRY`.
            while self.ahead && self.active && !self.gone {
                match self.make(false) {
                    Some(TtsStep::Audio { .. }) if commands.is_empty() => {}
                    _ => break,
                }
            }
        }
    }

    /// Apply one command (`gone` says whether the engine is still there).
    fn apply(&mut self, c: Command) {
        match c {
            Command::Start(n) => {
                self.cur = n;
                self.active = false;
            }
            Command::Text(n, t) if n == self.cur => {
                lock(&self.inner).push_text(&t);
                self.active = true;
            }
            Command::Finish(n) if n == self.cur => {
                lock(&self.inner).finish();
                self.active = true;
            }
            Command::Cancel(n) => {
                let mut tts = lock(&self.inner);
                // Unless a newer utterance has begun since.
                if self.utt.load(Ordering::Acquire) == n {
                    tts.cancel();
                }
                self.active = false;
            }
            Command::Ahead(on) => self.ahead = on,
            Command::Step(n) if n == self.cur => {
                self.make(true);
            }
            // A request for an utterance that was cancelled and not begun again.
            Command::Step(n) => {
                let m = Made {
                    utt: n,
                    pcm: Vec::new(),
                    step: Ok(TtsStep::Waiting),
                };
                self.gone |= self.made.send(m).is_err();
            }
            _ => {}
        }
    }

    /// Make one frame and send it (a `Waiting` only when `asked`). What it was, or
    /// `None` when nothing was sent.
    fn make(&mut self, asked: bool) -> Option<TtsStep> {
        let mut pcm = self.spare.try_recv().unwrap_or_default();
        pcm.clear();
        pcm.resize(TTS_FRAME, 0.0);
        let step = {
            let mut tts = lock(&self.inner);
            if self.utt.load(Ordering::Acquire) != self.cur {
                // Cancelled or restarted: its commands are on their way.
                self.active = false;
                if !asked {
                    return None;
                }
                Ok(TtsStep::Waiting)
            } else {
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| tts.step(&mut pcm)))
                    .unwrap_or_else(|p| {
                        let why = p
                            .downcast_ref::<&str>()
                            .map(|s| s.to_string())
                            .or_else(|| p.downcast_ref::<String>().cloned())
                            .unwrap_or_else(|| "a panic".into());
                        Err(anyhow::anyhow!("the synthesiser crashed: {why}"))
                    })
            }
        };
        let kind = match &step {
            Ok(s) => *s,
            Err(_) => TtsStep::Done,
        };
        match kind {
            TtsStep::Waiting if !asked => return Some(kind),
            TtsStep::Done => self.active = false,
            _ => {}
        }
        let mut m = Made {
            utt: self.cur,
            pcm,
            step,
        };
        // Wait for room, unless the utterance is dropped meanwhile.
        loop {
            match self.made.send_timeout(m, Duration::from_millis(20)) {
                Ok(()) => return Some(kind),
                Err(SendTimeoutError::Disconnected(_)) => {
                    self.gone = true;
                    return None;
                }
                Err(SendTimeoutError::Timeout(back)) => {
                    if self.utt.load(Ordering::Acquire) != self.cur {
                        return None;
                    }
                    m = back;
                }
            }
        }
    }
}

impl TextToSpeech for TtsThread {
    fn name(&self) -> String {
        self.name.clone()
    }

    fn set_voice(&mut self, voice: &str) -> Result<()> {
        lock(&self.inner).set_voice(voice)
    }

    fn takes_voice(&self, voice: &str) -> bool {
        lock(&self.inner).takes_voice(voice)
    }

    fn set_realtime(&mut self, realtime: bool) {
        if realtime != self.realtime {
            self.realtime = realtime;
            self.send(Command::Ahead(realtime));
        }
    }

    fn start(&mut self) -> Result<()> {
        // A new utterance number first, so the thread stops stepping the old one.
        let n = self.utt.fetch_add(1, Ordering::AcqRel) + 1;
        self.drain();
        // Synchronous, so a synthesiser that cannot start says so now; it waits out
        // the thread's step if one is under way (the old utterance's last).
        let r = lock(&self.inner).start();
        self.send(Command::Start(n));
        r
    }

    fn push_text(&mut self, text: &str) {
        self.send(Command::Text(self.current(), text.to_string()));
    }

    fn finish(&mut self) {
        self.send(Command::Finish(self.current()));
    }

    fn step(&mut self, out: &mut [f32]) -> Result<TtsStep> {
        let cur = self.current();
        // Frames made ahead come first, in order.
        while let Ok(m) = self.frames.try_recv() {
            if m.utt == cur {
                return self.take(m, out);
            }
            let _ = self.spare.try_send(m.pcm);
        }
        if self.realtime {
            // Not ready: this frame is silence, and the reply goes on after it.
            anyhow::ensure!(self.thread_alive(), "the synthesiser's thread stopped");
            return Ok(TtsStep::Waiting);
        }
        self.send(Command::Step(cur));
        loop {
            match self.frames.recv_timeout(Duration::from_millis(200)) {
                Ok(m) if m.utt == cur => return self.take(m, out),
                Ok(m) => {
                    let _ = self.spare.try_send(m.pcm);
                }
                Err(RecvTimeoutError::Timeout) if self.thread_alive() => {}
                Err(_) => anyhow::bail!("the synthesiser's thread stopped"),
            }
        }
    }

    fn cancel(&mut self) {
        let n = self.utt.fetch_add(1, Ordering::AcqRel) + 1;
        self.drain();
        self.send(Command::Cancel(n));
    }
}

impl Drop for TtsThread {
    fn drop(&mut self) {
        // Closing the command queue ends the thread; a frame it is making is dropped
        // once made (the frames channel closes with us).
        self.utt.store(u64::MAX, Ordering::Release);
        self.commands = None;
        if let Some(t) = self.thread.take() {
            // Bounded: a step is at most a few hundred ms.
            let deadline = std::time::Instant::now() + Duration::from_secs(5);
            while !t.is_finished() && std::time::Instant::now() < deadline {
                self.drain();
                std::thread::sleep(Duration::from_millis(5));
            }
            if t.is_finished() {
                let _ = t.join();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    /// Speaks each utterance's words as one frame a word (the frame's first sample is
    /// the utterance's number and the word's), then `Done`; each step first waits for
    /// a permit when `gate` is set.
    struct Words {
        utterances: u64,
        words: std::collections::VecDeque<String>,
        made: u64,
        finished: bool,
        gate: Option<Receiver<()>>,
        /// Told when a step begins (before the gate).
        entered: Option<Sender<()>>,
        fail_start: bool,
        /// Say `Waiting` every other call even with words to speak (as Kyutai's does
        /// after a bounded number of model steps).
        stutter: bool,
        calls: u64,
    }

    fn words(gate: Option<Receiver<()>>) -> Words {
        Words {
            utterances: 0,
            words: Default::default(),
            made: 0,
            finished: false,
            gate,
            entered: None,
            fail_start: false,
            stutter: false,
            calls: 0,
        }
    }

    impl TextToSpeech for Words {
        fn name(&self) -> String {
            "words".into()
        }
        fn set_voice(&mut self, _voice: &str) -> Result<()> {
            Ok(())
        }
        fn start(&mut self) -> Result<()> {
            anyhow::ensure!(!self.fail_start, "no voice state");
            self.utterances += 1;
            (self.made, self.finished) = (0, false);
            self.words.clear();
            Ok(())
        }
        fn push_text(&mut self, text: &str) {
            self.words
                .extend(text.split_whitespace().map(str::to_string));
        }
        fn finish(&mut self) {
            self.finished = true;
        }
        fn step(&mut self, out: &mut [f32]) -> Result<TtsStep> {
            if let Some(e) = &self.entered {
                let _ = e.send(());
            }
            if let Some(g) = &self.gate {
                g.recv().unwrap();
            }
            self.calls += 1;
            if self.stutter && self.calls % 2 == 1 {
                return Ok(TtsStep::Waiting);
            }
            if self.words.pop_front().is_some() {
                self.made += 1;
                out[0] = (self.utterances * 1000 + self.made) as f32;
                return Ok(TtsStep::Audio {
                    words_started: self.made as usize,
                });
            }
            Ok(if self.finished {
                TtsStep::Done
            } else {
                TtsStep::Waiting
            })
        }
        fn cancel(&mut self) {
            self.words.clear();
            self.finished = true;
        }
    }

    /// Step until something other than `Waiting` comes, up to 5 s.
    fn next(t: &mut TtsThread, out: &mut [f32]) -> TtsStep {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            out.fill(0.0);
            match t.step(out).unwrap() {
                TtsStep::Waiting if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(1))
                }
                s => return s,
            }
        }
    }

    #[test]
    fn with_a_clock_a_step_the_synthesiser_is_still_making_is_silence_not_a_wait() {
        let (permit, gate) = crossbeam_channel::unbounded();
        let (entered_tx, entered) = crossbeam_channel::unbounded();
        let mut w = words(Some(gate));
        w.entered = Some(entered_tx);
        let mut t = TtsThread::spawn(Box::new(w)).unwrap();
        t.set_realtime(true);
        t.start().unwrap();
        t.push_text("one two");
        t.finish();
        let mut out = vec![0.0; TTS_FRAME];
        // The synthesiser is held inside its first step: the engine's step returns
        // at once, silent.
        entered.recv_timeout(Duration::from_secs(5)).unwrap();
        for _ in 0..3 {
            assert!(matches!(t.step(&mut out).unwrap(), TtsStep::Waiting));
            assert!(out.iter().all(|&x| x == 0.0));
        }
        for _ in 0..3 {
            permit.send(()).unwrap();
        }
        assert!(matches!(
            next(&mut t, &mut out),
            TtsStep::Audio { words_started: 1 }
        ));
        assert_eq!(out[0], 1001.0);
        assert!(matches!(
            next(&mut t, &mut out),
            TtsStep::Audio { words_started: 2 }
        ));
        assert_eq!(out[0], 1002.0);
        assert!(matches!(next(&mut t, &mut out), TtsStep::Done));
    }

    #[test]
    fn it_runs_a_bounded_lead_ahead_and_a_cancel_drops_it() {
        let (permit, gate) = crossbeam_channel::unbounded();
        let mut t = TtsThread::spawn(Box::new(words(Some(gate)))).unwrap();
        t.set_realtime(true);
        t.start().unwrap();
        t.push_text(&"word ".repeat(20));
        for _ in 0..40 {
            permit.send(()).unwrap();
        }
        // Nothing taken: the thread fills the frames channel (AHEAD + 1) and makes one
        // more it waits to hand over, and then no more.
        let lead = AHEAD + 2;
        let deadline = Instant::now() + Duration::from_secs(5);
        while permit.len() > 40 - lead && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(1));
        }
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(permit.len(), 40 - lead, "steps taken beyond the lead");
        t.cancel();
        let mut out = vec![0.0; TTS_FRAME];
        for _ in 0..5 {
            assert!(matches!(t.step(&mut out).unwrap(), TtsStep::Waiting));
        }
        // The next utterance's frames, none of the old one's.
        t.start().unwrap();
        t.push_text("again");
        t.finish();
        assert!(matches!(next(&mut t, &mut out), TtsStep::Audio { .. }));
        assert_eq!(
            out[0], 2001.0,
            "a frame of the cancelled utterance came out"
        );
        assert!(matches!(next(&mut t, &mut out), TtsStep::Done));
    }

    #[test]
    fn a_synthesiser_that_says_waiting_with_work_left_is_called_again_and_ends() {
        let mut w = words(None);
        w.stutter = true;
        let mut t = TtsThread::spawn(Box::new(w)).unwrap();
        t.set_realtime(true);
        t.start().unwrap();
        t.push_text("a b c");
        t.finish();
        let mut out = vec![0.0; TTS_FRAME];
        let mut got = Vec::new();
        loop {
            match next(&mut t, &mut out) {
                TtsStep::Audio { .. } => got.push(out[0]),
                TtsStep::Done => break,
                TtsStep::Waiting => panic!("the reply stalled after {got:?}"),
            }
        }
        assert_eq!(got, [1001.0, 1002.0, 1003.0]);
    }

    #[test]
    fn losing_the_clock_mid_reply_gives_every_frame_in_order_without_a_hole() {
        let (permit, gate) = crossbeam_channel::unbounded();
        let mut t = TtsThread::spawn(Box::new(words(Some(gate)))).unwrap();
        t.set_realtime(true);
        t.start().unwrap();
        t.push_text("a b c d e f");
        for _ in 0..100 {
            permit.send(()).unwrap();
        }
        let mut out = vec![0.0; TTS_FRAME];
        assert!(matches!(next(&mut t, &mut out), TtsStep::Audio { .. }));
        let mut got = vec![out[0]];
        // The input ends: the engine feeds silence as fast as it can, and each step
        // must be a frame of the reply, not silence because the thread was not ready.
        t.set_realtime(false);
        t.finish();
        loop {
            out.fill(0.0);
            match t.step(&mut out).unwrap() {
                TtsStep::Audio { .. } => got.push(out[0]),
                TtsStep::Done => break,
                TtsStep::Waiting => panic!("a hole after {got:?}"),
            }
        }
        assert_eq!(got, [1001.0, 1002.0, 1003.0, 1004.0, 1005.0, 1006.0]);
    }

    #[test]
    fn without_a_clock_each_step_is_the_synthesisers_next_and_a_start_error_is_returned() {
        let mut t = TtsThread::spawn(Box::new(words(None))).unwrap();
        t.start().unwrap();
        t.push_text("a b");
        let mut out = vec![0.0; TTS_FRAME];
        // Each step is the synthesiser's own, in order, as a direct call's.
        assert!(matches!(t.step(&mut out).unwrap(), TtsStep::Audio { .. }));
        assert_eq!(out[0], 1001.0);
        assert!(matches!(t.step(&mut out).unwrap(), TtsStep::Audio { .. }));
        assert!(matches!(t.step(&mut out).unwrap(), TtsStep::Waiting));
        t.finish();
        assert!(matches!(t.step(&mut out).unwrap(), TtsStep::Done));

        let mut broken = words(None);
        broken.fail_start = true;
        let mut t = TtsThread::spawn(Box::new(broken)).unwrap();
        t.set_realtime(true);
        let e = t.start().unwrap_err();
        assert!(format!("{e:#}").contains("no voice state"), "{e:#}");
    }
}
