//! Where the model's audio goes: the output file (model rate, mono) and the output
//! port (a speaker ring at the device rate and channel count).

use crate::audio::meters::Meters;
use crate::audio::port::OutputPort;
use crate::audio::resample::StreamResampler;
use crate::audio::wav::WavSink;
use ringbuf::traits::{Observer, Producer};
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
    /// possible) the speaker paces the engine. `cut`: what the speaker has queued is
    /// silenced first (a barge-in). A speaker on its own clock leaves out a silent
    /// frame while it holds a frame more than its prefill, so latency gained in a slow
    /// moment (a stall, then a burst of catching up) is given back at the next silence
    /// instead of delaying everything after it. Whether the frame was queued.
    pub fn emit(
        &mut self,
        pcm: &[f32],
        realtime: bool,
        cut: bool,
        meters: &Meters,
    ) -> anyhow::Result<bool> {
        if let Some(w) = self.wav.as_mut() {
            w.write(pcm)?;
        }
        let (Some(port), Some(rs)) = (self.port.as_mut(), self.resample.as_mut()) else {
            return Ok(true);
        };
        let ch = port.format.channels as usize;
        if let Some(c) = port.cut.as_ref().filter(|_| cut) {
            // The queued samples become silence of the same length, so the speaker
            // keeps its timing with the echo canceller's reference (what was sent).
            // The silence goes in first, then the request: a callback in between
            // then plays on from the old audio instead of running dry.
            let queued = port.prod.occupied_len() / ch * ch;
            port.prod.push_iter(std::iter::repeat_n(0.0, queued));
            c.request(queued);
        }
        rs.push(pcm);
        self.mono.resize(rs.available(), 0.0);
        let n = rs.pop(&mut self.mono);
        // Left out only if the speaker still holds its prefill once it has played a
        // frame: the prefill stays the floor that absorbs a late step.
        let keep =
            (port.prefill_ms / 1000.0 * port.format.sample_rate as f64) as usize * ch + n * ch;
        // (Not on a cut: what the ring holds then is about to be dropped.)
        if realtime
            && !cut
            && port.cut.is_some()
            && self.mono[..n].iter().all(|s| s.abs() < 1e-6)
            && port.prod.occupied_len() >= keep
        {
            return Ok(false);
        }
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
        Ok(true)
    }

    /// Close the output file (renamed into place).
    pub fn finish(&mut self) -> anyhow::Result<()> {
        match self.wav.take() {
            Some(w) => w.finish().map(|_| ()),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audio::device::{ring_for, AudioFormat, Cut};
    use ringbuf::traits::Consumer;

    const FRAME: usize = 1920;

    fn speaker(cut: Option<Cut>) -> (Output, ringbuf::HeapCons<f32>) {
        speaker_with(cut, 1)
    }

    fn speaker_with(cut: Option<Cut>, channels: u16) -> (Output, ringbuf::HeapCons<f32>) {
        let format = AudioFormat {
            sample_rate: 24_000,
            channels,
        };
        let (prod, cons) = ring_for(format, 2.0);
        let port = OutputPort {
            prod,
            format,
            prefill_ms: 80.0,
            cut,
        };
        (Output::new(Some(port), None, 24_000, FRAME).unwrap(), cons)
    }

    #[test]
    fn a_cut_silences_what_the_speaker_holds_and_keeps_its_length() {
        for ch in [1usize, 2] {
            let cut = Cut::default();
            let (mut out, mut cons) = speaker_with(Some(cut.clone()), ch as u16);
            let meters = Meters::default();
            let sound = vec![0.5f32; FRAME];
            for _ in 0..3 {
                assert!(out.emit(&sound, true, false, &meters).unwrap());
            }
            // The callback has played part of a frame (whole frames of `ch`).
            let mut played = vec![0.0f32; 100 * ch];
            cons.pop_slice(&mut played);
            let held = cons.occupied_len();
            // The barge-in's frame (silent) is queued too: what the ring held is
            // about to be dropped, so it does not count against the prefill.
            assert!(out.emit(&vec![0.0; FRAME], true, true, &meters).unwrap());
            // The speaker's next callback takes the cut: silence of the same length,
            // then the barge-in's frame.
            cut.apply(&mut cons, ch);
            let mut rest = vec![1.0f32; 8 * FRAME * ch];
            let n = cons.pop_slice(&mut rest);
            assert_eq!(n, held + FRAME * ch, "the queue's length changed ({ch} ch)");
            assert!(rest[..n].iter().all(|&x| x == 0.0), "the reply played on");
        }
    }

    #[test]
    fn silence_queues_behind_sound_only_while_the_speaker_holds_little() {
        let (mut out, mut cons) = speaker(Some(Cut::default()));
        let meters = Meters::default();
        let quiet = vec![0.0f32; FRAME];
        let prefill = 80 * 24;
        // A stall then a burst: five frames of sound at once.
        for _ in 0..5 {
            assert!(out.emit(&vec![0.25; FRAME], true, false, &meters).unwrap());
        }
        // Silence is left out until the speaker has played down to its prefill.
        let mut taken = vec![0.0f32; FRAME];
        let mut left_out = 0;
        for _ in 0..8 {
            if !out.emit(&quiet, true, false, &meters).unwrap() {
                left_out += 1;
            }
            cons.pop_slice(&mut taken);
        }
        assert!(left_out >= 3, "{left_out} silent frames left out");
        let held = cons.occupied_len();
        assert!(
            held <= prefill + FRAME,
            "{held} samples held after the silence"
        );
        // A file's run (no clock) and a network stream (no cut) keep every frame.
        for _ in 0..5 {
            assert!(out.emit(&quiet, false, false, &meters).unwrap());
        }
        let (mut stream, _c) = speaker(None);
        for _ in 0..5 {
            assert!(stream.emit(&quiet, true, false, &meters).unwrap());
        }
    }
}
