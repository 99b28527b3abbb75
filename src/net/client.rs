//! `assistant --connect URL`: the "model" is a session on a server speaking Kyutai's
//! protocol. [`RemoteModel`] is a [`DuplexModel`]: its `step` hands the frame to a
//! network thread (which encodes it to Ogg/Opus and sends it) and returns whatever
//! audio and text the server has sent back, so the whole local path (devices, rings,
//! echo cancellation, TUI, journal, files) is the one a local model uses.
//!
//! Playback is by stream position: step `n` plays the server's audio at positions
//! `[n*1920 - delay, (n+1)*1920 - delay)`, where `delay` starts at 0 (the answer to the
//! frame just sent). Two pacings:
//! - **real time** (a microphone, or a paced file): `step` waits at most one Opus frame
//!   (40 ms) for that audio: the jitter buffer. When it is late, the step plays
//!   silence and `delay` grows by one Opus frame (960 samples), up to 8; it never grows
//!   otherwise, and audio older than the position played is dropped, as the local engine
//!   drops input, so delay cannot pile up. On a LAN the remote path then adds the round
//!   trip and the codec, not a whole frame.
//! - **lock step** (a file read as fast as possible): `step` waits for the answer to the
//!   frame it sent, so the file goes through at the speed of the round trip.
//!
//! Nothing waits forever: connecting, the handshake, a lock-step answer and every
//! reconnection have a deadline, and each wait also ends on the user's quit (the
//! options' `cancel`). A link is alive while something arrives: the client pings every
//! second (Kyutai's servers, ours and the Python one answer WebSocket pings), and a link
//! with nothing received for `dead_after` (3 s) counts as dropped and is reconnected.
//! The queues between the engine and the network thread are bounded (`queues`).
//!
//! Here: the model and its step. Beside it: `options` (options, errors, figures),
//! `handshake` (opening a session), `transport` (the network thread and reconnection),
//! `jitter` (the jitter buffer) and `queues`.

mod handshake;
mod jitter;
mod options;
mod queues;
mod transport;

pub use handshake::chat_url;
pub use options::{ConnectError, ConnectOptions, ConnectPhase, NetStats, Reconnect, ServerInfo};
pub use transport::{connect, connect_with};

use crate::bus::{Cancel, Happening, LinkStats};
use crate::models::duplex::{DuplexModel, ModelInfo, StepOutput};
use queues::{Inbox, Outbox, Samples, Waited};
use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

const FRAME_LEN: usize = 1920;
const RATE: u32 = 24_000;
/// One Opus frame (40 ms): the jitter buffer's unit, and the longest a real-time step waits.
const OPUS_FRAME: usize = 960;
/// Largest delay the jitter buffer grows to, in Opus frames (320 ms).
pub const MAX_JITTER: usize = 8;
/// Largest lag, in 80 ms frames, a lock-step client lets a server's answers have.
pub const MAX_LOCKSTEP_LAG: usize = 8;
/// Frames the send queue holds (2 s); beyond that the oldest is dropped.
const SEND_QUEUE_FRAMES: usize = 25;
/// Audio the receive queue holds (2 s); beyond that the oldest is dropped.
const RECEIVE_QUEUE_SAMPLES: usize = 2 * RATE as usize;
/// How often a blocking wait on the engine thread looks at the quit flag.
const QUIT_POLL: Duration = Duration::from_millis(20);
/// How long a quit waits for the close frame to go out, and drop for the thread.
const CLOSE_GRACE: Duration = Duration::from_millis(250);

/// What the network thread hands the model.
enum Incoming {
    Audio(Vec<f32>, Instant),
    Text(String),
    /// The session's first frame is frame `seq` of the stream.
    SessionStart(u64),
    /// The connection dropped; retrying.
    Lost {
        why: String,
        attempt: u32,
        of: u32,
        retry_in: Duration,
    },
    /// A new session after a drop.
    Back {
        info: ServerInfo,
        outage: Duration,
    },
    /// The session is over for good (the server left and retries ran out).
    Closed(String),
}

impl Samples for Incoming {
    fn samples(&self) -> usize {
        match self {
            Incoming::Audio(pcm, _) => pcm.len(),
            _ => 0,
        }
    }
}

/// A frame to send: its number in the stream, and its samples.
type Frame = (u64, Vec<f32>);

/// A session on a remote server, stepped like a local model.
pub struct RemoteModel {
    info: ServerInfo,
    lockstep: bool,
    answer_timeout: Duration,
    lag_probe: Duration,
    cancel: Cancel,
    to_net: Arc<Outbox<Frame>>,
    from_net: Arc<Inbox<Incoming>>,
    /// Received samples from stream position `buf_start` on.
    buffer: VecDeque<f32>,
    buf_start: u64,
    text: String,
    /// Numbers and send times of frames whose answer has not fully arrived.
    sent_at: VecDeque<(u64, Instant)>,
    /// Samples received toward the oldest unanswered frame.
    partial: usize,
    /// Samples sent so far (the stream position of the next frame).
    sent: u64,
    /// How far playback lags what was sent, in samples (a multiple of 960).
    delay: u64,
    closed: Option<String>,
    /// False while the connection is down and retried.
    link_up: bool,
    /// When an answer last came too late (real time).
    last_late: Option<Instant>,
    /// Connection news for the engine to pass on.
    happenings: VecDeque<Happening>,
    stats: Arc<NetStats>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl RemoteModel {
    pub fn server(&self) -> &ServerInfo {
        &self.info
    }

    pub fn stats(&self) -> Arc<NetStats> {
        self.stats.clone()
    }

    /// Lock step with the connection down: wait until it is back, given up (each
    /// attempt has its deadline, and there are finitely many), or the user quits.
    fn wait_for_link(&mut self) -> anyhow::Result<()> {
        while !self.link_up && !self.cancel.is_cancelled() {
            if self.closed.is_some() {
                return Err(self.gone());
            }
            match self.from_net.recv_timeout(QUIT_POLL) {
                Waited::Item(ev) => self.take(ev),
                Waited::Timeout => {}
                Waited::Gone => return Err(self.gone()),
            }
        }
        if self.closed.is_some() {
            return Err(self.gone());
        }
        Ok(())
    }

    fn drain(&mut self) {
        while let Some(ev) = self.from_net.try_recv() {
            self.take(ev);
        }
        // Audio the bounded queues dropped: counted, and shown as a server behind.
        let s = &self.stats;
        let dropped = self.to_net.dropped.load(Ordering::Relaxed)
            + self.from_net.dropped.load(Ordering::Relaxed);
        let before =
            s.send_dropped.load(Ordering::Relaxed) + s.receive_dropped.load(Ordering::Relaxed);
        if dropped > before {
            s.send_dropped.store(
                self.to_net.dropped.load(Ordering::Relaxed),
                Ordering::Relaxed,
            );
            s.receive_dropped.store(
                self.from_net.dropped.load(Ordering::Relaxed),
                Ordering::Relaxed,
            );
            self.last_late = Some(Instant::now());
        }
    }

    fn gone(&self) -> anyhow::Error {
        anyhow::anyhow!(
            "{}: {}",
            self.info.url,
            self.closed.as_deref().unwrap_or("the session ended")
        )
    }
}

impl DuplexModel for RemoteModel {
    fn info(&self) -> ModelInfo {
        ModelInfo {
            name: match self.info.model() {
                Some(m) => format!("{m} at {}", self.info.url),
                None => format!("remote {}", self.info.url),
            },
            device: "remote".into(),
            dtype: "opus".into(),
        }
    }
    fn sample_rate(&self) -> u32 {
        RATE
    }
    fn frame_len(&self) -> usize {
        FRAME_LEN
    }
    fn delay_frames(&self) -> usize {
        (self.delay as usize).div_ceil(FRAME_LEN)
    }
    fn step(&mut self, pcm_in: &[f32], out: &mut StepOutput) -> anyhow::Result<()> {
        anyhow::ensure!(
            pcm_in.len() == FRAME_LEN,
            "remote model: frame of {} samples, expected {FRAME_LEN}",
            pcm_in.len()
        );
        self.drain();
        if let Some(why) = &self.closed {
            anyhow::bail!("{}: {why}", self.info.url);
        }
        let seq = self.sent / FRAME_LEN as u64;
        // Stamped before the send: on a busy machine the answer can arrive before this
        // thread runs again, and a later stamp would make the round trip 0.
        let sent_at = Instant::now();
        if !self.to_net.push((seq, pcm_in.to_vec())) {
            return Err(self.gone());
        }
        self.sent_at.push_back((seq, sent_at));
        self.stats.frames_sent.fetch_add(1, Ordering::Relaxed);
        self.sent += FRAME_LEN as u64;
        let end = self.sent.saturating_sub(self.delay);
        if !self.link_up {
            // Down: silence. A file in lock step waits for the link (this frame is
            // lost with the old session); real time plays on.
            if self.lockstep {
                self.wait_for_link()?;
            }
        } else if self.lockstep {
            let probe = self.lag_probe.min(self.answer_timeout);
            if !self.play(end, probe, &mut out.pcm)?
                && self.delay < (MAX_LOCKSTEP_LAG * FRAME_LEN) as u64
            {
                // No answer yet: the server holds answers back (moshi-server sends no
                // audio during its model's acoustic delay). Play one frame further
                // behind from now on, and keep sending.
                self.delay += FRAME_LEN as u64;
                self.stats
                    .jitter_opus_frames
                    .store(self.delay / OPUS_FRAME as u64, Ordering::Relaxed);
            } else if !self.play(end, self.answer_timeout, &mut out.pcm)? {
                anyhow::bail!(
                    "{}: no audio from the server for {:.0} s",
                    self.info.url,
                    self.answer_timeout.as_secs_f64()
                );
            }
        } else {
            let wait = Duration::from_millis(40);
            if !self.play(end, wait, &mut out.pcm)? {
                // Late: silence now, and one more Opus frame of buffer from now on.
                self.stats.underruns.fetch_add(1, Ordering::Relaxed);
                self.last_late = Some(Instant::now());
                if self.delay < (MAX_JITTER * OPUS_FRAME) as u64 {
                    self.delay += OPUS_FRAME as u64;
                    self.stats
                        .jitter_opus_frames
                        .store(self.delay / OPUS_FRAME as u64, Ordering::Relaxed);
                }
            }
        }
        if !self.text.is_empty() {
            out.text = Some(std::mem::take(&mut self.text));
        }
        Ok(())
    }
    fn reset(&mut self) {
        // The server keeps its conversation; the text queued here is dropped.
        self.text.clear();
    }
    fn link(&self) -> Option<LinkStats> {
        let rtt = self.stats.rtt_last_us.load(Ordering::Relaxed);
        let frame_us = (FRAME_LEN as u64 * 1_000_000) / RATE as u64;
        let keeping_pace = self.link_up
            && if self.lockstep {
                rtt <= frame_us
            } else {
                self.last_late
                    .is_none_or(|t| t.elapsed() > Duration::from_secs(2))
            };
        Some(LinkStats {
            rtt_ms: rtt as f64 / 1000.0,
            jitter_ms: (self.delay * 1000 / RATE as u64) as u32,
            keeping_pace,
            connected: self.link_up,
        })
    }
    fn take_happening(&mut self) -> Option<Happening> {
        self.happenings.pop_front()
    }
}

impl Drop for RemoteModel {
    fn drop(&mut self) {
        // Closing the queues makes the network thread end whatever it waits on (a send,
        // a connect, a backoff): it sends a close frame if the socket takes it within
        // CLOSE_GRACE. Waited for no longer than that; a thread still running then is
        // left to end on its own.
        self.to_net.close();
        self.from_net.close_reader();
        if let Some(t) = self.thread.take() {
            let until = Instant::now() + CLOSE_GRACE + Duration::from_millis(50);
            while !t.is_finished() && Instant::now() < until {
                std::thread::sleep(Duration::from_millis(2));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::protocol::{Handshake, SessionParams};

    /// The network thread's end of a fake model's inbox.
    struct Tx(Arc<Inbox<Incoming>>);

    impl Tx {
        fn send(&self, ev: Incoming) -> Result<(), ()> {
            self.0.push(ev).then_some(()).ok_or(())
        }
    }

    /// A model wired to queues instead of a network thread.
    fn fake(lockstep: bool) -> (RemoteModel, Tx, Arc<Outbox<Frame>>) {
        let to_net = Arc::new(Outbox::new(SEND_QUEUE_FRAMES));
        let from_net = Arc::new(Inbox::new(RECEIVE_QUEUE_SAMPLES));
        let (tx, frames) = (Tx(from_net.clone()), to_net.clone());
        let m = RemoteModel {
            info: ServerInfo {
                url: "ws://test/api/chat".into(),
                handshake: Handshake::Short,
                metadata: Some(serde_json::json!({"model": "fake"})),
                unchecked_certificate: false,
            },
            lockstep,
            answer_timeout: Duration::from_millis(200),
            lag_probe: Duration::from_millis(100),
            cancel: Cancel::new(),
            to_net,
            from_net,
            buffer: VecDeque::new(),
            buf_start: 0,
            text: String::new(),
            sent_at: VecDeque::new(),
            partial: 0,
            sent: 0,
            delay: 0,
            closed: None,
            link_up: true,
            last_late: None,
            happenings: VecDeque::new(),
            stats: Arc::new(NetStats::default()),
            thread: None,
        };
        (m, tx, frames)
    }

    fn frame(v: f32) -> Incoming {
        Incoming::Audio(vec![v; FRAME_LEN], Instant::now())
    }

    fn step(m: &mut RemoteModel) -> anyhow::Result<StepOutput> {
        let mut out = StepOutput::default();
        out.clear(FRAME_LEN);
        m.step(&[0.0; FRAME_LEN], &mut out)?;
        Ok(out)
    }

    #[test]
    fn jitter_buffer_grows_by_one_opus_frame_when_late_and_drops_stale_audio() {
        let (mut m, tx, sent) = fake(false);
        let jitter = |m: &RemoteModel| m.stats.jitter_opus_frames.load(Ordering::Relaxed);
        // The answer is there in time (text first): played at once, no added delay.
        tx.send(Incoming::Text(" hi".into())).unwrap();
        tx.send(frame(1.0)).unwrap();
        let out = step(&mut m).unwrap();
        assert_eq!((out.pcm[0], out.text.as_deref()), (1.0, Some(" hi")));
        assert_eq!(sent.try_recv().unwrap().1.len(), FRAME_LEN);
        assert_eq!(m.delay_frames(), 0);
        // Late by more than one Opus frame: silence, and the buffer grows by 40 ms.
        let t = Instant::now();
        assert_eq!(step(&mut m).unwrap().pcm[0], 0.0);
        assert!(t.elapsed() >= Duration::from_millis(40));
        assert_eq!(
            (m.stats.underruns.load(Ordering::Relaxed), jitter(&m)),
            (1, 1)
        );
        // Then play lags by 960 samples: the late audio's first half is stale.
        tx.send(frame(2.0)).unwrap();
        tx.send(frame(3.0)).unwrap();
        let out = step(&mut m).unwrap();
        assert_eq!((out.pcm[0], out.pcm[959], out.pcm[960]), (2.0, 2.0, 3.0));
        assert_eq!(m.stats.dropped_frames.load(Ordering::Relaxed), 1);
        // Late again: 80 ms of buffer now.
        assert_eq!(step(&mut m).unwrap().pcm[0], 0.0);
        assert_eq!(jitter(&m), 2);
        assert_eq!(m.delay_frames(), 1);
        tx.send(frame(4.0)).unwrap();
        assert_eq!(step(&mut m).unwrap().pcm, vec![4.0; FRAME_LEN]);
        // A burst after a stall plays in order, without waiting.
        for v in [5.0, 6.0, 7.0] {
            tx.send(frame(v)).unwrap();
        }
        let t = Instant::now();
        for v in [5.0, 6.0, 7.0] {
            assert_eq!(step(&mut m).unwrap().pcm[FRAME_LEN - 1], v);
        }
        assert!(t.elapsed() < Duration::from_millis(40));
        assert_eq!(m.stats.underruns.load(Ordering::Relaxed), 2);
    }

    #[test]
    fn lockstep_waits_for_the_answer_and_names_a_silent_or_gone_server() {
        let (mut m, tx, _sent) = fake(true);
        let t = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(30));
            tx.send(Incoming::Audio(vec![0.5; 960], Instant::now()))
                .unwrap();
            tx.send(Incoming::Audio(vec![0.5; 960], Instant::now()))
                .unwrap();
            tx
        });
        assert_eq!(step(&mut m).unwrap().pcm[FRAME_LEN - 1], 0.5);
        let tx = t.join().unwrap();
        // The round trip: from the frame's send to its answer's arrival.
        let rtt = m.stats.rtt_last_us.load(Ordering::Relaxed);
        assert!((25_000..1_000_000).contains(&rtt), "{rtt} µs");
        // A silent server: the lag grows one frame per probe, then the step gives up.
        for k in 1..=MAX_LOCKSTEP_LAG {
            assert_eq!(step(&mut m).unwrap().pcm, vec![0.0; FRAME_LEN]);
            assert_eq!(m.delay_frames(), k);
        }
        let e = step(&mut m).unwrap_err().to_string();
        assert!(e.contains("no audio from the server"), "{e}");
        tx.send(Incoming::Closed("the server closed the connection".into()))
            .unwrap();
        let e = step(&mut m).unwrap_err().to_string();
        assert!(e.contains("ws://test/api/chat: the server closed"), "{e}");
    }

    #[test]
    fn a_quit_ends_every_wait_of_a_step_at_once() {
        // Lock step, the server silent: without a quit the step waits for its answer.
        let (mut m, _tx, _sent) = fake(true);
        m.answer_timeout = Duration::from_secs(60);
        m.lag_probe = Duration::from_secs(60);
        let quit = m.cancel.clone();
        let t = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(100));
            quit.cancel();
        });
        let start = Instant::now();
        assert_eq!(step(&mut m).unwrap().pcm, vec![0.0; FRAME_LEN]);
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "{:?}",
            start.elapsed()
        );
        t.join().unwrap();
        // Lock step with the link down: the wait for it to come back ends on a quit too.
        let (mut m, tx, _sent) = fake(true);
        tx.send(Incoming::Lost {
            why: "test".into(),
            attempt: 1,
            of: 8,
            retry_in: Duration::from_secs(4),
        })
        .unwrap();
        let quit = m.cancel.clone();
        let t = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(100));
            quit.cancel();
        });
        let start = Instant::now();
        step(&mut m).unwrap();
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "{:?}",
            start.elapsed()
        );
        t.join().unwrap();
        // The network thread gone while a step waits: the step ends with the reason.
        let (mut m, tx, _sent) = fake(true);
        m.answer_timeout = Duration::from_secs(60);
        m.lag_probe = Duration::from_secs(60);
        let t = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(100));
            tx.0.close_writer();
        });
        let e = step(&mut m).unwrap_err().to_string();
        assert!(e.contains("the session ended"), "{e}");
        t.join().unwrap();
    }

    #[test]
    fn lockstep_follows_a_server_that_answers_frames_late() {
        // As moshi-server: no audio during its model's first two steps, then one frame
        // per frame received.
        let (mut m, tx, _sent) = fake(true);
        assert_eq!(step(&mut m).unwrap().pcm[0], 0.0);
        assert_eq!(step(&mut m).unwrap().pcm[0], 0.0);
        assert_eq!(m.delay_frames(), 2);
        for v in [1.0, 2.0, 3.0] {
            tx.send(frame(v)).unwrap();
            let t = Instant::now();
            assert_eq!(step(&mut m).unwrap().pcm, vec![v; FRAME_LEN]);
            assert!(t.elapsed() < Duration::from_millis(50));
        }
        assert_eq!(m.delay_frames(), 2);
    }

    #[test]
    fn urls() {
        let p = SessionParams::default();
        assert_eq!(
            chat_url("ws://127.0.0.1:8998", &p).unwrap(),
            "ws://127.0.0.1:8998/api/chat"
        );
        assert_eq!(
            chat_url("ws://h:1/other?x=1", &p).unwrap(),
            "ws://h:1/other?x=1"
        );
        let p = SessionParams {
            text_temperature: Some(0.0),
            ..Default::default()
        };
        assert_eq!(
            chat_url("ws://h:1/", &p).unwrap(),
            "ws://h:1/api/chat?text_temperature=0"
        );
        assert_eq!(
            chat_url("wss://h:1", &p).unwrap(),
            "wss://h:1/api/chat?text_temperature=0"
        );
        assert!(matches!(
            chat_url("http://h", &p),
            Err(ConnectError::BadUrl { .. })
        ));
        assert!(matches!(
            chat_url("h:8998", &p),
            Err(ConnectError::BadUrl { .. })
        ));
        assert!(matches!(
            chat_url("ws:///api/chat", &p),
            Err(ConnectError::BadUrl { .. })
        ));
    }
}
