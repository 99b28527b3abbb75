//! Owns the cpal streams for the whole session. Opens them, notices when one
//! fails (its error callback fired, or its callbacks stopped), hands the engine a
//! silent input / no output in its place with a typed status, and retries every few
//! seconds until the device is back. It knows nothing of the engine: whoever starts
//! it says where port changes and statuses go.

use super::device::{self, DeviceError, InputStream, OutputStream};
use super::meters::{Meters, StreamErrors};
use super::port::{InputPort, OutputPort};
use crate::bus::{DeviceSide, DeviceStatus, LossReason};
use std::sync::atomic::{
    AtomicBool, AtomicU64,
    Ordering::{Acquire, Relaxed},
};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

const RING_SECONDS: f32 = 2.0;
/// Silence queued ahead of playback, absorbing engine scheduling jitter.
pub const PREFILL_MS: f64 = 40.0;
const RETRY_EVERY: Duration = Duration::from_secs(3);
/// A running stream whose callbacks stop for this long is considered lost.
const STALL: Duration = Duration::from_secs(2);
const POLL: Duration = Duration::from_millis(100);
/// Trouble notices (stream errors that are neither xruns nor a lost device) for
/// one side come at most this often.
const TROUBLE_EVERY: Duration = Duration::from_secs(10);

/// Which devices to manage: `None` leaves that side alone; `Some(sel)` opens the
/// device chosen by `sel` (a name or index; `None` for the default).
#[derive(Debug, Clone, Default)]
pub struct DeviceRequest {
    pub input: Option<Option<String>>,
    pub output: Option<Option<String>>,
}

/// What the first open gave: ports for the engine, endpoints for the user.
pub struct Opened {
    pub input: Option<Result<(InputPort, String), DeviceError>>,
    pub output: Option<Result<(OutputPort, String), DeviceError>>,
}

/// A port that replaces the engine's current one (a device lost or back).
pub enum PortChange {
    Input(InputPort),
    Output(Option<OutputPort>),
}

/// Where the supervisor sends port changes and statuses.
pub struct Sinks {
    pub ports: Box<dyn FnMut(PortChange) + Send>,
    pub status: Box<dyn FnMut(DeviceStatus) + Send>,
}

pub struct Supervisor {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    switch: crossbeam_channel::Sender<SwitchTo>,
}

/// Another device for one side, picked by the user (a selector as
/// `--input-device` takes it).
#[derive(Debug, Clone)]
pub struct SwitchTo {
    pub side: DeviceSide,
    pub selector: String,
}

/// A handle that asks the supervisor to switch devices live; cheap to clone.
#[derive(Debug, Clone)]
pub struct Switcher(crossbeam_channel::Sender<SwitchTo>);

impl Switcher {
    /// Open `selector` for `side` and, if it opens, put it in place of the current
    /// device; either way the status sink hears how it went.
    pub fn switch(&self, side: DeviceSide, selector: String) {
        let _ = self.0.send(SwitchTo { side, selector });
    }
}

impl Supervisor {
    pub fn switcher(&self) -> Switcher {
        Switcher(self.switch.clone())
    }
}

impl Drop for Supervisor {
    fn drop(&mut self) {
        self.stop.store(true, Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn open_in(
    sel: &Option<String>,
    meters: &Arc<Meters>,
) -> Result<(InputStream, InputPort, String), DeviceError> {
    let (stream, cons) = device::open_input(sel.as_deref(), meters.clone(), RING_SECONDS)?;
    let port = InputPort::Ring {
        cons,
        format: stream.format,
        ended: Arc::new(false.into()),
    };
    let name = stream.name.clone();
    Ok((stream, port, name))
}

fn open_out(
    sel: &Option<String>,
    meters: &Arc<Meters>,
) -> Result<(OutputStream, OutputPort, String), DeviceError> {
    let (stream, prod) = device::open_output(sel.as_deref(), meters.clone(), RING_SECONDS)?;
    let speaker = OutputPort {
        prod,
        format: stream.format,
        prefill_ms: PREFILL_MS,
        cut: Some(stream.cut.clone()),
    };
    let name = stream.name.clone();
    Ok((stream, speaker, name))
}

/// One side (microphone or speaker) under watch.
struct Watch<S> {
    side: DeviceSide,
    stream: Option<S>,
    lost_seen: u64,
    other_seen: u64,
    realtime_denied_seen: u64,
    callbacks_seen: u64,
    last_progress: Instant,
    next_retry: Instant,
    /// When the last trouble notice went out (they are spaced by `TROUBLE_EVERY`).
    last_trouble: Option<Instant>,
}

/// The counters a side's stream callbacks write.
#[derive(Clone, Copy)]
struct Counters<'a> {
    errors: &'a StreamErrors,
    callbacks: &'a AtomicU64,
}

impl<S> Watch<S> {
    fn new(side: DeviceSide, stream: Option<S>, c: Counters) -> Self {
        Self {
            side,
            stream,
            lost_seen: c.errors.lost.load(Acquire),
            other_seen: c.errors.other.load(Acquire),
            realtime_denied_seen: c.errors.realtime_denied.load(Relaxed),
            callbacks_seen: c.callbacks.load(Relaxed),
            last_progress: Instant::now(),
            next_retry: Instant::now() + RETRY_EVERY,
            last_trouble: None,
        }
    }

    /// The stream reported itself lost, or stalled: why, if so. Xruns are not
    /// looked at here: cpal recovers from them and they are only counted.
    fn failed(&mut self, c: Counters) -> Option<LossReason> {
        self.stream.as_ref()?;
        let lost = c.errors.lost.load(Acquire);
        if lost != self.lost_seen {
            self.lost_seen = lost;
            return Some(LossReason::Gone(kind_text(c.errors)));
        }
        let calls = c.callbacks.load(Relaxed);
        if calls != self.callbacks_seen {
            self.callbacks_seen = calls;
            self.last_progress = Instant::now();
        } else if self.last_progress.elapsed() > STALL {
            return Some(LossReason::Stalled(STALL.as_secs()));
        }
        None
    }

    /// Errors that are neither xruns nor a lost device: one notice per
    /// `TROUBLE_EVERY` at most, the stream stays.
    fn trouble(&mut self, c: Counters) -> Option<DeviceStatus> {
        self.stream.as_ref()?;
        let denied = c.errors.realtime_denied.load(Relaxed);
        if denied != self.realtime_denied_seen {
            self.realtime_denied_seen = denied;
            tracing::info!(side = ?self.side, "the audio thread runs without real-time priority (refused by the system)");
        }
        let other = c.errors.other.load(Acquire);
        if other == self.other_seen
            || self
                .last_trouble
                .is_some_and(|t| t.elapsed() < TROUBLE_EVERY)
        {
            return None;
        }
        self.other_seen = other;
        self.last_trouble = Some(Instant::now());
        Some(DeviceStatus::Trouble {
            side: self.side,
            message: kind_text(c.errors),
        })
    }

    fn lose(&mut self, reason: LossReason, sinks: &mut Sinks)
    where
        S: Send + 'static,
    {
        self.next_retry = Instant::now() + RETRY_EVERY;
        (sinks.status)(DeviceStatus::Lost {
            side: self.side,
            reason,
            retry_every_s: RETRY_EVERY.as_secs(),
        });
        if let Some(stream) = self.stream.take() {
            drop_aside(stream);
        }
    }

    fn due(&mut self) -> bool {
        if self.stream.is_some() || Instant::now() < self.next_retry {
            return false;
        }
        self.next_retry = Instant::now() + RETRY_EVERY;
        true
    }

    fn recovered(&mut self, stream: S, name: String, c: Counters, sinks: &mut Sinks) {
        *self = Self::new(self.side, Some(stream), c);
        (sinks.status)(DeviceStatus::Ready {
            side: self.side,
            name,
        });
    }
}

/// Drop a lost stream on a thread of its own: dropping one whose device is gone
/// can block for good (cpal 0.18's PulseAudio host joins a thread that waits for
/// the server to confirm deleting a stream it has already killed), and the
/// supervisor must go on watching and retrying.
fn drop_aside<S: Send + 'static>(stream: S) {
    // Should the spawn fail, the closure (and the stream) is dropped right here.
    let _ = std::thread::Builder::new()
        .name("stream-drop".into())
        .spawn(move || drop(stream));
}

/// cpal's description of the latest error's kind.
fn kind_text(errors: &StreamErrors) -> String {
    device::kind_from_code(errors.last_kind.load(Relaxed))
        .map_or_else(|| "the stream reported an error".into(), |k| k.to_string())
}

/// Open the requested devices on a supervisor thread (streams never leave it)
/// and hand the ring ends back. Unknown device names fail here.
pub fn start(req: DeviceRequest, meters: Arc<Meters>, mut sinks: Sinks) -> (Supervisor, Opened) {
    let stop = Arc::new(AtomicBool::new(false));
    let stop2 = stop.clone();
    let (first_tx, first_rx) = crossbeam_channel::bounded(1);
    let (switch_tx, switch_rx) = crossbeam_channel::unbounded::<SwitchTo>();
    let mut req = req;
    let thread = std::thread::Builder::new()
        .name("devices".into())
        .spawn(move || {
            let m = &meters;
            let c_in = Counters {
                errors: &m.errors_in,
                callbacks: &m.callbacks_in,
            };
            let c_out = Counters {
                errors: &m.errors_out,
                callbacks: &m.callbacks_out,
            };
            let mut opened = Opened {
                input: None,
                output: None,
            };
            let mut mic = Watch::<InputStream>::new(DeviceSide::Microphone, None, c_in);
            let mut spk = Watch::<OutputStream>::new(DeviceSide::Speaker, None, c_out);
            if let Some(sel) = &req.input {
                opened.input = Some(open_in(sel, m).map(|(s, port, name)| {
                    mic = Watch::new(DeviceSide::Microphone, Some(s), c_in);
                    (port, name)
                }));
            }
            if let Some(sel) = &req.output {
                opened.output = Some(open_out(sel, m).map(|(s, sp, name)| {
                    spk = Watch::new(DeviceSide::Speaker, Some(s), c_out);
                    (sp, name)
                }));
            }
            // A named device that does not exist is the user's typo: no retries.
            let mut retry_in = req.input.is_some()
                && !matches!(opened.input, Some(Err(DeviceError::NotFound { .. })));
            let mut retry_out = req.output.is_some()
                && !matches!(opened.output, Some(Err(DeviceError::NotFound { .. })));
            if first_tx.send(opened).is_err() {
                return;
            }
            while !stop2.load(Relaxed) {
                // A switch is answered at once; otherwise this is the poll's sleep.
                if let Ok(to) = switch_rx.recv_timeout(POLL) {
                    let sel = Some(to.selector.clone());
                    let t = Instant::now();
                    let failed = |reason: String| DeviceStatus::SwitchFailed {
                        side: to.side,
                        wanted: to.selector.clone(),
                        reason,
                    };
                    match to.side {
                        DeviceSide::Microphone => match open_in(&sel, m) {
                            Ok((s, port, name)) => {
                                (sinks.ports)(PortChange::Input(port));
                                let old = mic.stream.take();
                                mic = Watch::new(DeviceSide::Microphone, Some(s), c_in);
                                if let Some(old) = old {
                                    drop_aside(old);
                                }
                                req.input = Some(sel);
                                retry_in = true;
                                (sinks.status)(switched(to.side, name, t));
                            }
                            Err(e) => (sinks.status)(failed(e.to_string())),
                        },
                        DeviceSide::Speaker => match open_out(&sel, m).or_else(|e| {
                            // Some servers refuse a second playback stream of this client
                            // while the first runs ("Invalid argument" from PulseAudio's
                            // null sinks): close the current one and try again, and on
                            // failure reopen it.
                            let Some(old) = spk.stream.take() else {
                                return Err(e);
                            };
                            drop(old);
                            open_out(&sel, m).inspect_err(|_| {
                                let prev = req.output.clone().unwrap_or(None);
                                if let Ok((s, sp, _)) = open_out(&prev, m) {
                                    (sinks.ports)(PortChange::Output(Some(sp)));
                                    spk = Watch::new(DeviceSide::Speaker, Some(s), c_out);
                                }
                            })
                        }) {
                            Ok((s, sp, name)) => {
                                (sinks.ports)(PortChange::Output(Some(sp)));
                                let old = spk.stream.take();
                                spk = Watch::new(DeviceSide::Speaker, Some(s), c_out);
                                if let Some(old) = old {
                                    drop_aside(old);
                                }
                                req.output = Some(sel);
                                retry_out = true;
                                (sinks.status)(switched(to.side, name, t));
                            }
                            Err(e) => (sinks.status)(failed(e.to_string())),
                        },
                    }
                    continue;
                }
                if let Some(reason) = mic.failed(c_in) {
                    mic.lose(reason, &mut sinks);
                    (sinks.ports)(PortChange::Input(InputPort::silence(24_000)));
                }
                if let Some(reason) = spk.failed(c_out) {
                    spk.lose(reason, &mut sinks);
                    (sinks.ports)(PortChange::Output(None));
                }
                for status in [mic.trouble(c_in), spk.trouble(c_out)]
                    .into_iter()
                    .flatten()
                {
                    (sinks.status)(status);
                }
                if retry_in && mic.due() {
                    if let Ok((s, port, name)) = open_in(req.input.as_ref().unwrap_or(&None), m) {
                        (sinks.ports)(PortChange::Input(port));
                        mic.recovered(s, name, c_in, &mut sinks);
                    }
                }
                if retry_out && spk.due() {
                    if let Ok((s, sp, name)) = open_out(req.output.as_ref().unwrap_or(&None), m) {
                        (sinks.ports)(PortChange::Output(Some(sp)));
                        spk.recovered(s, name, c_out, &mut sinks);
                    }
                }
            }
        })
        .expect("spawn device supervisor");
    let opened = first_rx.recv().unwrap_or(Opened {
        input: None,
        output: None,
    });
    (
        Supervisor {
            stop,
            thread: Some(thread),
            switch: switch_tx,
        },
        opened,
    )
}

fn switched(side: DeviceSide, name: String, began: Instant) -> DeviceStatus {
    DeviceStatus::Switched {
        side,
        name,
        open_ms: began.elapsed().as_secs_f64() * 1000.0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audio::device::stream_error;
    use cpal::ErrorKind;

    fn watch(m: &Meters) -> Watch<()> {
        Watch::new(
            DeviceSide::Speaker,
            Some(()),
            Counters {
                errors: &m.errors_out,
                callbacks: &m.callbacks_out,
            },
        )
    }

    #[test]
    fn xruns_are_not_failures_and_other_errors_are_spaced_notices() {
        let m = Meters::default();
        let c = Counters {
            errors: &m.errors_out,
            callbacks: &m.callbacks_out,
        };
        let mut w = watch(&m);
        for _ in 0..50 {
            stream_error(&m, false, ErrorKind::Xrun);
        }
        m.callbacks_out.fetch_add(1, Relaxed);
        assert_eq!(w.failed(c), None);
        assert_eq!(w.trouble(c), None);
        assert_eq!(m.xruns_out(), 50);
        stream_error(&m, false, ErrorKind::BackendError);
        stream_error(&m, false, ErrorKind::DeviceBusy);
        assert!(matches!(
            w.trouble(c),
            Some(DeviceStatus::Trouble { side: DeviceSide::Speaker, ref message }) if message.contains("busy")
        ));
        stream_error(&m, false, ErrorKind::DeviceBusy);
        assert_eq!(w.trouble(c), None, "one notice per {TROUBLE_EVERY:?}");
        assert_eq!(w.failed(c), None, "the stream stays");
        stream_error(&m, false, ErrorKind::RealtimeDenied);
        assert_eq!(w.trouble(c), None, "no real-time priority is only logged");
    }

    #[test]
    fn a_device_gone_or_an_invalidated_stream_is_lost() {
        for kind in [ErrorKind::DeviceNotAvailable, ErrorKind::StreamInvalidated] {
            let m = Meters::default();
            let c = Counters {
                errors: &m.errors_out,
                callbacks: &m.callbacks_out,
            };
            let mut w = watch(&m);
            stream_error(&m, false, kind);
            assert_eq!(
                w.failed(c),
                Some(LossReason::Gone(kind.to_string())),
                "{kind:?}"
            );
            assert_eq!(w.trouble(c), None);
        }
    }
}
