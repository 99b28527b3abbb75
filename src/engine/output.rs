//! Where the model's audio goes: the output file (model rate, mono) and the output
//! port (a speaker ring at the device rate and channel count).

use crate::audio::meters::Meters;
use crate::audio::port::OutputPort;
use crate::audio::resample::StreamResampler;
use crate::audio::wav::WavSink;
use ringbuf::traits::Producer;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

pub struct Output {
    port: Option<OutputPort>,
    resample: Option<StreamResampler>,
    pub wav: Option<WavSink>,
    rate: u32,
    frame_len: usize,
    mono: Vec<f32>,
    interleaved: Vec<f32>,
}

impl Output {
    pub fn new(
        port: Option<OutputPort>,
        wav: Option<WavSink>,
        rate: u32,
        frame_len: usize,
    ) -> anyhow::Result<Self> {
        let mut me = Self {
            port: None,
            resample: None,
            wav,
            rate,
            frame_len,
            mono: Vec::with_capacity(frame_len * 4),
            interleaved: Vec::with_capacity(frame_len * 8),
        };
        me.resample = Self::resampler(&port, rate, frame_len)?;
        me.port = port;
        Ok(me)
    }

    fn resampler(
        port: &Option<OutputPort>,
        rate: u32,
        frame_len: usize,
    ) -> anyhow::Result<Option<StreamResampler>> {
        port.as_ref()
            .map(|p| StreamResampler::new(rate, p.format.sample_rate, frame_len))
            .transpose()
    }

    pub fn has_port(&self) -> bool {
        self.port.is_some()
    }

    pub fn resampler_delay_ms(&self) -> f64 {
        self.resample.as_ref().map_or(0.0, |r| r.delay_ms())
    }

    pub fn prefill_ms(&self) -> f64 {
        self.port.as_ref().map_or(0.0, |p| p.prefill_ms)
    }

    /// Queue the port's jitter prefill (before the first output after a (re)start).
    pub fn prefill(&mut self) {
        if let Some(p) = self.port.as_mut() {
            p.prefill();
        }
    }

    pub fn set_model_shape(&mut self, rate: u32, frame_len: usize) -> anyhow::Result<()> {
        if (rate, frame_len) != (self.rate, self.frame_len) {
            self.resample = Self::resampler(&self.port, rate, frame_len)?;
            (self.rate, self.frame_len) = (rate, frame_len);
        }
        Ok(())
    }

    pub fn replace_port(&mut self, port: Option<OutputPort>) -> anyhow::Result<()> {
        self.resample = Self::resampler(&port, self.rate, self.frame_len)?;
        self.port = port;
        self.prefill();
        Ok(())
    }

    /// Silence to the file only, keeping its timeline aligned with the input while no
    /// model runs (the speaker plays silence on its own when its ring is empty).
    pub fn silence_to_file(&mut self) -> anyhow::Result<()> {
        if let Some(w) = self.wav.as_mut() {
            // The speaker path's scratch buffer, so no frame allocates.
            self.mono.clear();
            self.mono.resize(self.frame_len, 0.0);
            w.write(&self.mono)?;
        }
        Ok(())
    }

    /// One model frame to the file and the port. `realtime`: the input keeps its own
    /// clock, so a full speaker ring drops and counts; otherwise (a file read as fast as
    /// possible) the speaker paces the engine.
    pub fn emit(&mut self, pcm: &[f32], realtime: bool, meters: &Meters) -> anyhow::Result<()> {
        if let Some(w) = self.wav.as_mut() {
            w.write(pcm)?;
        }
        let (Some(port), Some(rs)) = (self.port.as_mut(), self.resample.as_mut()) else {
            return Ok(());
        };
        rs.push(pcm);
        self.mono.resize(rs.available(), 0.0);
        let n = rs.pop(&mut self.mono);
        let ch = port.format.channels as usize;
        self.interleaved.clear();
        for &s in &self.mono[..n] {
            self.interleaved.extend(std::iter::repeat_n(s, ch));
        }
        let mut pushed = port.prod.push_slice(&self.interleaved);
        if pushed < self.interleaved.len() {
            if realtime {
                meters.xruns_out.fetch_add(1, Ordering::Relaxed);
            } else {
                let deadline = Instant::now() + Duration::from_secs(2);
                while pushed < self.interleaved.len() && Instant::now() < deadline {
                    std::thread::sleep(Duration::from_millis(5));
                    pushed += port.prod.push_slice(&self.interleaved[pushed..]);
                }
            }
        }
        Ok(())
    }

    /// Close the output file (renamed into place).
    pub fn finish(&mut self) -> anyhow::Result<()> {
        match self.wav.take() {
            Some(w) => w.finish().map(|_| ()),
            None => Ok(()),
        }
    }
}
