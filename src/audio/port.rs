//! The engine's ports. Input: a ring fed by a device callback or a real-time file
//! pacer, a file read as fast as the model allows, or silence on a clock when there
//! is no microphone. Output: a ring drained by the speaker callback. A network
//! session can feed and drain the same rings.

use super::device::{ring_for, AudioFormat, Cut};
use super::meters::{peak, Meters};
use super::wav::WavAudio;
use ringbuf::traits::{Observer, Producer};
use ringbuf::{HeapCons, HeapProd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

pub enum InputPort {
    /// Interleaved device-rate audio arriving in real time. `ended` turns true
    /// when a paced file has been fully pushed.
    Ring {
        cons: HeapCons<f32>,
        format: AudioFormat,
        ended: Arc<AtomicBool>,
    },
    /// A whole file, consumed as fast as the model steps.
    Memory { audio: WavAudio, pos: usize },
    /// No microphone: silence at real time, on its own clock.
    Silence {
        sample_rate: u32,
        since: Instant,
        produced: u64,
    },
}

impl InputPort {
    pub fn format(&self) -> AudioFormat {
        match self {
            Self::Ring { format, .. } => *format,
            Self::Memory { audio, .. } => AudioFormat {
                sample_rate: audio.sample_rate,
                channels: audio.channels,
            },
            Self::Silence { sample_rate, .. } => AudioFormat {
                sample_rate: *sample_rate,
                channels: 1,
            },
        }
    }

    pub fn silence(sample_rate: u32) -> Self {
        Self::Silence {
            sample_rate,
            since: Instant::now(),
            produced: 0,
        }
    }

    /// Real-time inputs can fall behind the model and have frames dropped.
    pub fn is_realtime(&self) -> bool {
        !matches!(self, Self::Memory { .. })
    }

    /// Interleaved samples waiting in a ring (0 for other inputs).
    pub fn queued(&self) -> usize {
        match self {
            Self::Ring { cons, .. } => cons.occupied_len(),
            _ => 0,
        }
    }
}

/// The playback side: a ring drained by the output callback.
pub struct OutputPort {
    pub prod: HeapProd<f32>,
    pub format: AudioFormat,
    /// Silence queued before the first output, to absorb scheduling jitter.
    pub prefill_ms: f64,
    /// `Some` for a speaker that plays on its own clock and takes cuts (a barge-in
    /// drops what it has queued, and silence need not queue behind sound); `None` for
    /// a stream whose every sample goes on (a network session).
    pub cut: Option<Cut>,
}

impl OutputPort {
    /// Queue `prefill_ms` of silence ahead of what the model says.
    pub fn prefill(&mut self) {
        let n = (self.prefill_ms / 1000.0 * self.format.sample_rate as f64) as usize
            * self.format.channels as usize;
        for _ in 0..n {
            let _ = self.prod.try_push(0.0);
        }
    }
}

/// Pushes a file into a ring at real time, as a device callback would, in
/// 10 ms blocks on absolute deadlines (no drift).
pub struct FilePacer {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl FilePacer {
    pub fn start(audio: WavAudio, meters: Arc<Meters>) -> (Self, InputPort) {
        let format = AudioFormat {
            sample_rate: audio.sample_rate,
            channels: audio.channels,
        };
        let (mut prod, cons) = ring_for(format, 2.0);
        let ended = Arc::new(AtomicBool::new(false));
        let stop = Arc::new(AtomicBool::new(false));
        let (ended2, stop2) = (ended.clone(), stop.clone());
        let block = (format.sample_rate as usize / 100).max(1) * format.channels as usize;
        let thread = std::thread::Builder::new()
            .name("file-pacer".into())
            .spawn(move || {
                let start = Instant::now();
                for (i, chunk) in audio.samples.chunks(block).enumerate() {
                    let due = start + Duration::from_millis(10 * i as u64);
                    if let Some(wait) = due.checked_duration_since(Instant::now()) {
                        std::thread::sleep(wait);
                    }
                    if stop2.load(Ordering::Relaxed) {
                        break;
                    }
                    meters.raise_mic(peak(chunk));
                    if prod.push_slice(chunk) < chunk.len() {
                        meters.xruns_in.fetch_add(1, Ordering::Relaxed);
                    }
                }
                ended2.store(true, Ordering::Release);
            })
            .expect("spawn file pacer");
        (
            Self {
                stop,
                thread: Some(thread),
            },
            InputPort::Ring {
                cons,
                format,
                ended,
            },
        )
    }
}

impl Drop for FilePacer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
