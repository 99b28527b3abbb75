//! The one frame source: pulls the input port, down-mixes, resamples to the model
//! rate, bounds the backlog, replays held audio first, and mutes. Every engine state
//! takes its frames from here.

use super::residency::HeldAudio;
use crate::audio::device::AudioFormat;
use crate::audio::port::InputPort;
use crate::audio::resample::{downmix_into, StreamResampler};
use ringbuf::traits::{Consumer, Observer};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// What one call to [`FrameSource::next`] gave.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// A frame is in [`FrameSource::frame`]; `fresh` is false for a replayed held frame
    /// (heard while nothing played: no echo to remove).
    Frame { fresh: bool },
    /// Nothing yet (a device); call again after handling commands.
    Wait,
    /// The input has ended (a file) and every sample of it was framed.
    Ended,
}

/// How a frame is taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Take {
    /// Replay held frames first (a model is running).
    pub replay_held: bool,
    /// Drop the oldest frames beyond the backlog bound (a model steps these frames;
    /// a real-time input must not queue up behind it).
    pub bound_backlog: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pull {
    Data,
    Waited,
    Ended,
}

pub struct FrameSource {
    input: InputPort,
    format: AudioFormat,
    resample: StreamResampler,
    rate: u32,
    frame_len: usize,
    max_backlog: usize,
    pub muted: bool,
    /// The current frame, `frame_len` model-rate samples.
    pub frame: Vec<f32>,
    /// Frames heard while no model ran, replayed first once one is back.
    pub held: HeldAudio,
    raw: Vec<f32>,
    mono: Vec<f32>,
    /// Device-rate frames taken from the input (for input seconds and RSS timing).
    pub input_samples: u64,
    /// Model-rate samples framed, across reloads (a file's end is exact).
    fed: u64,
    /// Frames dropped by the backlog bound.
    pub dropped: u64,
}

impl FrameSource {
    pub fn new(
        input: InputPort,
        rate: u32,
        frame_len: usize,
        max_backlog: usize,
    ) -> anyhow::Result<Self> {
        let format = input.format();
        let chunk = Self::chunk(format);
        Ok(Self {
            resample: StreamResampler::new(
                format.sample_rate,
                rate,
                (format.sample_rate / 100) as usize,
            )?,
            input,
            format,
            rate,
            frame_len,
            max_backlog: max_backlog.max(1),
            muted: false,
            frame: vec![0.0; frame_len],
            held: HeldAudio::default(),
            raw: vec![0.0; chunk],
            mono: Vec::with_capacity(chunk),
            input_samples: 0,
            fed: 0,
            dropped: 0,
        })
    }

    /// Interleaved samples pulled at a time: 40 ms.
    fn chunk(format: AudioFormat) -> usize {
        (format.sample_rate as usize / 100 * format.channels as usize * 4).max(64)
    }

    pub fn format(&self) -> AudioFormat {
        self.format
    }

    pub fn is_realtime(&self) -> bool {
        self.input.is_realtime()
    }

    pub fn input_seconds(&self) -> f64 {
        self.input_samples as f64 / self.format.sample_rate as f64
    }

    pub fn resampler_delay_ms(&self) -> f64 {
        self.resample.delay_ms()
    }

    /// A model with another rate or frame length.
    pub fn set_model_shape(&mut self, rate: u32, frame_len: usize) -> anyhow::Result<()> {
        if (rate, frame_len) != (self.rate, self.frame_len) {
            self.resample = StreamResampler::new(
                self.format.sample_rate,
                rate,
                (self.format.sample_rate / 100) as usize,
            )?;
            self.rate = rate;
            self.frame_len = frame_len;
            self.frame = vec![0.0; frame_len];
        }
        Ok(())
    }

    pub fn replace_input(&mut self, port: InputPort) -> anyhow::Result<()> {
        let format = port.format();
        if format.sample_rate != self.format.sample_rate {
            self.resample = StreamResampler::new(
                format.sample_rate,
                self.rate,
                (format.sample_rate / 100) as usize,
            )?;
        }
        self.raw.resize(Self::chunk(format), 0.0);
        self.format = format;
        self.input = port;
        Ok(())
    }

    /// A fresh conversation: forget resampler history.
    pub fn reset(&mut self) {
        self.resample.reset();
    }

    /// Model-rate samples the whole input will produce, when known (files).
    fn expected(&self) -> Option<u64> {
        match &self.input {
            InputPort::Memory { audio, .. } => {
                Some((audio.frames() as u64 * self.rate as u64).div_ceil(audio.sample_rate as u64))
            }
            _ => None,
        }
    }

    /// Audio captured before the model was ready is stale: start from now.
    pub fn skip_stale(&mut self) {
        if let InputPort::Ring { cons, .. } = &mut self.input {
            let stale = cons.occupied_len();
            cons.skip(stale);
        }
    }

    /// No model will hear what is queued (the engine failed): drop it so nothing overflows.
    pub fn drain(&mut self) {
        while self.input.queued() > 0 {
            if !matches!(self.pull(), Ok(Pull::Data)) {
                break;
            }
        }
        let stale = self.resample.available();
        self.resample.discard(stale);
    }

    /// While a model loads: move whatever a real-time input has queued into the held
    /// frames, so nothing the user says is lost. A file waits for us instead.
    pub fn hold_queued(&mut self) {
        if !self.input.is_realtime() {
            return;
        }
        while self.input.queued() > 0 {
            if !matches!(self.pull(), Ok(Pull::Data)) {
                break;
            }
        }
        while self.resample.available() >= self.frame_len {
            self.resample.pop(&mut self.frame);
            if self.muted {
                self.frame.fill(0.0);
            }
            self.held.push(&self.frame);
        }
    }

    /// Silence the frame if the microphone is closed. Callers mute after the echo
    /// canceller, which must keep hearing the room to stay adapted.
    pub fn mute_if_closed(&mut self) {
        if self.muted {
            self.frame.fill(0.0);
        }
    }

    /// The next frame into `self.frame` (not yet muted: see `mute_if_closed`).
    pub fn next(&mut self, how: Take) -> anyhow::Result<Next> {
        if how.replay_held {
            if let Some(f) = self.held.pop() {
                let n = f.len().min(self.frame_len);
                self.frame[..n].copy_from_slice(&f[..n]);
                self.frame[n..].fill(0.0);
                return Ok(Next::Frame { fresh: false });
            }
        }
        let mut ended = false;
        while self.resample.available() < self.frame_len && !ended {
            match self.pull()? {
                Pull::Data => {}
                Pull::Ended => {
                    self.resample.flush();
                    ended = true;
                }
                Pull::Waited => return Ok(Next::Wait),
            }
        }
        if how.bound_backlog && self.input.is_realtime() {
            // Take everything already captured, so a backlog is seen (and dropped) here
            // rather than overflowing the capture ring. Bounded by what is queued now:
            // an unpaced device never runs dry.
            let channels = self.format.channels as usize;
            let mut left = self.input.queued();
            while left >= channels {
                let before = self.input_samples;
                if self.pull()? != Pull::Data {
                    break;
                }
                let popped = (self.input_samples - before) as usize * channels;
                left = left.saturating_sub(popped.max(1));
            }
            let limit = (self.max_backlog + 1) * self.frame_len;
            while self.resample.available() >= limit {
                self.resample.discard(self.frame_len);
                self.dropped += 1;
            }
        }
        let mut take = self.resample.available().min(self.frame_len);
        if let Some(exp) = self.expected() {
            take = take.min(exp.saturating_sub(self.fed) as usize);
        }
        if take == 0 {
            return Ok(Next::Ended);
        }
        self.resample.pop(&mut self.frame[..take]);
        self.frame[take..].fill(0.0);
        self.fed += take as u64;
        Ok(Next::Frame { fresh: true })
    }

    /// Move some input into the resampler, or wait a little for it.
    fn pull(&mut self) -> anyhow::Result<Pull> {
        let channels = self.format.channels as usize;
        match &mut self.input {
            InputPort::Memory { audio, pos } => {
                if *pos >= audio.samples.len() {
                    return Ok(Pull::Ended);
                }
                let end = (*pos + self.raw.len() / channels * channels).min(audio.samples.len());
                self.mono.clear();
                downmix_into(&audio.samples[*pos..end], channels, &mut self.mono);
                self.input_samples += ((end - *pos) / channels) as u64;
                *pos = end;
                self.resample.push(&self.mono);
                Ok(Pull::Data)
            }
            InputPort::Ring { cons, ended, .. } => {
                let whole = self.raw.len() / channels * channels;
                let n = cons.pop_slice(&mut self.raw[..whole]) / channels * channels;
                if n > 0 {
                    self.mono.clear();
                    downmix_into(&self.raw[..n], channels, &mut self.mono);
                    self.input_samples += (n / channels) as u64;
                    self.resample.push(&self.mono);
                    return Ok(Pull::Data);
                }
                if ended.load(Ordering::Acquire) && cons.is_empty() {
                    return Ok(Pull::Ended);
                }
                // Wait about as long as the missing audio takes to arrive, within bounds.
                // Parked, so a producer that unparks this thread (a network session)
                // wakes it as soon as the audio is there; others just time out.
                let missing = self.frame_len.saturating_sub(self.resample.available()) as f64
                    / self.rate as f64;
                std::thread::park_timeout(Duration::from_secs_f64(missing.clamp(0.001, 0.010)));
                Ok(Pull::Waited)
            }
            InputPort::Silence {
                sample_rate,
                since,
                produced,
            } => {
                let block = *sample_rate as u64 / 100;
                let due = *since
                    + Duration::from_secs_f64((*produced + block) as f64 / *sample_rate as f64);
                if let Some(wait) = due.checked_duration_since(Instant::now()) {
                    std::thread::sleep(wait.min(Duration::from_millis(10)));
                    return Ok(Pull::Waited);
                }
                *produced += block;
                self.mono.clear();
                self.mono.resize(block as usize, 0.0);
                self.input_samples += block;
                self.resample.push(&self.mono);
                Ok(Pull::Data)
            }
        }
    }
}
