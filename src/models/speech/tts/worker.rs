//! A synthesiser on a thread of its own. On a CPU a synthesiser's step is slow and
//! uneven (Pocket TTS reads a new chunk's text in one step of up to 250 ms): on the
//! engine thread that step holds up the microphone's next frame and the speaker's
//! next one. Here the synthesiser runs ahead of playback on its own thread, a few
//! frames at most, and the engine takes what is ready; what is not ready plays as
//! silence instead of stalling everything else.
//!
//! When the input is a file read as fast as the model steps (no clock to keep), every
//! call goes to the synthesiser directly instead, so a run's audio does not depend on
//! thread timing.

use crate::models::parts::{TextToSpeech, TtsStep, TTS_FRAME};
use anyhow::Result;
use crossbeam_channel::{Receiver, SendTimeoutError, Sender, TryRecvError};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

/// Frames the thread may make before the engine takes them (on top of any lead the
/// turn machine keeps).
const AHEAD: usize = 2;

enum Command {
    /// Utterance `n` has begun (the synthesiser was started by the caller).
    Start(u64),
    Text(u64, String),
    Finish(u64),
    /// Utterance `n` was cancelled.
    Cancel(u64),
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
    /// Frames made but not yet played, handed back for reuse.
    spare: Sender<Vec<f32>>,
    /// The input keeps a clock: take what is ready. Otherwise call directly.
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
        let (made_tx, made_rx) = crossbeam_channel::bounded(AHEAD);
        let (spare_tx, spare_rx) = crossbeam_channel::bounded(AHEAD * 2 + 2);
        let (inner2, utt2) = (inner.clone(), utt.clone());
        let thread = std::thread::Builder::new()
            .name("synthesiser".into())
            .spawn(move || work(inner2, utt2, cmd_rx, made_tx, spare_rx))?;
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
}

/// The thread: apply commands; while the utterance in play has text to speak, make its
/// frames, at most `AHEAD` waiting to be taken.
fn work(
    inner: Shared,
    utt: Arc<AtomicU64>,
    commands: Receiver<Command>,
    made: Sender<Made>,
    spare: Receiver<Vec<f32>>,
) {
    // The utterance this thread works on, and whether it may have a frame to make.
    let (mut cur, mut active) = (0u64, false);
    loop {
        let first = if active {
            match commands.try_recv() {
                Ok(c) => Some(c),
                Err(TryRecvError::Empty) => None,
                Err(TryRecvError::Disconnected) => return,
            }
        } else {
            match commands.recv() {
                Ok(c) => Some(c),
                Err(_) => return,
            }
        };
        let mut apply = |c: Command| match c {
            Command::Start(n) => {
                cur = n;
                active = false;
            }
            Command::Text(n, t) if n == cur => {
                lock(&inner).push_text(&t);
                active = true;
            }
            Command::Finish(n) if n == cur => {
                lock(&inner).finish();
                active = true;
            }
            Command::Cancel(n) => {
                let mut tts = lock(&inner);
                // Unless a newer utterance has begun since.
                if utt.load(Ordering::Acquire) == n {
                    tts.cancel();
                }
                active = false;
            }
            _ => {}
        };
        if let Some(c) = first {
            apply(c);
        }
        while let Ok(c) = commands.try_recv() {
            apply(c);
        }
        if !active {
            continue;
        }
        let mut pcm = spare.try_recv().unwrap_or_default();
        pcm.clear();
        pcm.resize(TTS_FRAME, 0.0);
        let step = {
            let mut tts = lock(&inner);
            if utt.load(Ordering::Acquire) != cur {
                // Cancelled or restarted: its commands are on their way.
                active = false;
                continue;
            }
            tts.step(&mut pcm)
        };
        match &step {
            // Nothing to say until more text comes.
            Ok(TtsStep::Waiting) => {
                active = false;
                continue;
            }
            Ok(TtsStep::Done) | Err(_) => active = false,
            Ok(TtsStep::Audio { .. }) => {}
        }
        let mut m = Made {
            utt: cur,
            pcm,
            step,
        };
        // Wait for room, unless the utterance is dropped meanwhile.
        loop {
            match made.send_timeout(m, Duration::from_millis(20)) {
                Ok(()) => break,
                Err(SendTimeoutError::Disconnected(_)) => return,
                Err(SendTimeoutError::Timeout(back)) => {
                    if utt.load(Ordering::Acquire) != cur {
                        break;
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
        self.realtime = realtime;
    }

    fn start(&mut self) -> Result<()> {
        // A new utterance number first, so the thread stops stepping the old one.
        let n = self.utt.fetch_add(1, Ordering::AcqRel) + 1;
        self.drain();
        let r = lock(&self.inner).start();
        self.send(Command::Start(n));
        r
    }

    fn push_text(&mut self, text: &str) {
        if self.realtime {
            self.send(Command::Text(self.current(), text.to_string()));
        } else {
            lock(&self.inner).push_text(text);
        }
    }

    fn finish(&mut self) {
        if self.realtime {
            self.send(Command::Finish(self.current()));
        } else {
            lock(&self.inner).finish();
        }
    }

    fn step(&mut self, out: &mut [f32]) -> Result<TtsStep> {
        if !self.realtime {
            return lock(&self.inner).step(out);
        }
        loop {
            match self.frames.try_recv() {
                Ok(m) if m.utt != self.current() => {
                    let _ = self.spare.try_send(m.pcm);
                }
                Ok(m) => {
                    let n = out.len().min(m.pcm.len());
                    out[..n].copy_from_slice(&m.pcm[..n]);
                    let _ = self.spare.try_send(m.pcm);
                    return m.step;
                }
                // Not ready: this frame is silence, and the reply goes on after it.
                Err(_) if self.thread.as_ref().is_some_and(|t| !t.is_finished()) => {
                    return Ok(TtsStep::Waiting)
                }
                Err(_) => anyhow::bail!("the synthesiser's thread stopped"),
            }
        }
    }

    fn cancel(&mut self) {
        let n = self.utt.fetch_add(1, Ordering::AcqRel) + 1;
        self.drain();
        if self.realtime {
            self.send(Command::Cancel(n));
        } else {
            lock(&self.inner).cancel();
        }
    }
}

impl Drop for TtsThread {
    fn drop(&mut self) {
        // Closing the command channel ends the thread; a frame it is making is
        // dropped once made (the frames channel closes with us).
        self.utt.fetch_add(1, Ordering::AcqRel);
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
        fail_start: bool,
    }

    fn words(gate: Option<Receiver<()>>) -> Words {
        Words {
            utterances: 0,
            words: Default::default(),
            made: 0,
            finished: false,
            gate,
            fail_start: false,
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
            if let Some(g) = &self.gate {
                g.recv().unwrap();
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
        let mut t = TtsThread::spawn(Box::new(words(Some(gate)))).unwrap();
        t.set_realtime(true);
        t.start().unwrap();
        t.push_text("one two");
        t.finish();
        let mut out = vec![0.0; TTS_FRAME];
        // The synthesiser is held inside its first step: the engine's step returns
        // at once, silent.
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
        // Nothing taken: the thread makes AHEAD frames and one more it waits to hand
        // over, and then no more.
        let deadline = Instant::now() + Duration::from_secs(5);
        while permit.len() > 40 - (AHEAD + 1) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(1));
        }
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(
            permit.len(),
            40 - (AHEAD + 1),
            "steps taken beyond the lead"
        );
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
    fn without_a_clock_every_call_is_direct_and_a_start_error_is_returned() {
        let mut t = TtsThread::spawn(Box::new(words(None))).unwrap();
        t.start().unwrap();
        t.push_text("a b");
        let mut out = vec![0.0; TTS_FRAME];
        // No waiting on a thread: each step is the synthesiser's own, in order.
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
