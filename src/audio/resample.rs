//! Streaming sample-rate conversion and down-mixing, run on the engine thread
//! (never in a callback). Rubato's synchronous FFT resampler: the ratio between
//! a device and the model is fixed, and it is both fast and high quality.

use rubato::audioadapter_buffers::direct::InterleavedSlice;
use rubato::{Fft, FixedSync, Resampler};
use std::collections::VecDeque;

/// Average interleaved channels into mono, appending to `out`.
pub fn downmix_into(interleaved: &[f32], channels: usize, out: &mut Vec<f32>) {
    if channels <= 1 {
        out.extend_from_slice(interleaved);
        return;
    }
    let scale = 1.0 / channels as f32;
    out.extend(
        interleaved
            .chunks_exact(channels)
            .map(|f| f.iter().sum::<f32>() * scale),
    );
}

/// Mono resampler fed and drained in any block sizes. Same rates pass through
/// untouched (no delay, bit-exact).
pub struct StreamResampler {
    inner: Option<Fft<f32>>,
    pending: Vec<f32>,
    out_buf: Vec<f32>,
    ready: VecDeque<f32>,
    rate_in: u32,
    rate_out: u32,
}

impl StreamResampler {
    /// `chunk` is the fixed input block in frames (e.g. 10 ms of input).
    pub fn new(rate_in: u32, rate_out: u32, chunk: usize) -> anyhow::Result<Self> {
        let inner = if rate_in == rate_out {
            None
        } else {
            Some(Fft::<f32>::new(
                rate_in as usize,
                rate_out as usize,
                chunk.max(16),
                1,
                FixedSync::Input,
            )?)
        };
        let out_max = inner.as_ref().map_or(0, |r| r.output_frames_max());
        Ok(Self {
            inner,
            pending: Vec::with_capacity(chunk * 4),
            out_buf: vec![0.0; out_max],
            ready: VecDeque::with_capacity(rate_out as usize),
            rate_in,
            rate_out,
        })
    }

    pub fn rates(&self) -> (u32, u32) {
        (self.rate_in, self.rate_out)
    }

    /// Output samples of delay the resampler adds.
    pub fn delay_samples(&self) -> usize {
        self.inner.as_ref().map_or(0, |r| r.output_delay())
    }

    pub fn delay_ms(&self) -> f64 {
        self.delay_samples() as f64 * 1000.0 / self.rate_out as f64
    }

    /// Feed input; converted output becomes available through `pop`.
    pub fn push(&mut self, input: &[f32]) {
        let Some(r) = self.inner.as_mut() else {
            self.ready.extend(input);
            return;
        };
        self.pending.extend_from_slice(input);
        let mut start = 0;
        loop {
            let need = r.input_frames_next();
            if self.pending.len() - start < need {
                break;
            }
            let block = &self.pending[start..start + need];
            let inp = InterleavedSlice::new(block, 1, need)
                .expect("input adapter sized from input_frames_next");
            let cap = self.out_buf.len();
            let mut out = InterleavedSlice::new_mut(&mut self.out_buf[..], 1, cap)
                .expect("output adapter sized from output_frames_max");
            let (_, written) = r
                .process_into_buffer(&inp, &mut out, None)
                .expect("buffers sized by the resampler itself");
            self.ready.extend(&self.out_buf[..written]);
            start += need;
        }
        self.pending.drain(..start);
    }

    /// Push zeros through so that everything fed so far comes out (end of a file).
    pub fn flush(&mut self) {
        if let Some(r) = self.inner.as_ref() {
            let zeros = vec![
                0.0;
                r.input_frames_next()
                    + r.output_delay() * self.rate_in as usize / self.rate_out as usize
                    + 1
            ];
            self.push(&zeros);
        }
    }

    pub fn available(&self) -> usize {
        self.ready.len()
    }

    /// Move up to `out.len()` samples out; returns how many.
    pub fn pop(&mut self, out: &mut [f32]) -> usize {
        let n = out.len().min(self.ready.len());
        for (o, s) in out.iter_mut().zip(self.ready.drain(..n)) {
            *o = s;
        }
        n
    }

    /// Drop `n` of the oldest ready samples (falling behind).
    pub fn discard(&mut self, n: usize) -> usize {
        let n = n.min(self.ready.len());
        self.ready.drain(..n);
        n
    }

    pub fn reset(&mut self) {
        if let Some(r) = self.inner.as_mut() {
            r.reset();
        }
        self.pending.clear();
        self.ready.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn downmix_averages_channels() {
        let mut out = Vec::new();
        downmix_into(&[1.0, 0.0, 0.5, 0.5], 2, &mut out);
        assert_eq!(out, vec![0.5, 0.5]);
    }

    #[test]
    fn same_rate_is_bit_exact_passthrough() {
        let mut r = StreamResampler::new(24_000, 24_000, 240).unwrap();
        r.push(&[0.1, 0.2, 0.3]);
        let mut out = [0.0; 3];
        assert_eq!(r.pop(&mut out), 3);
        assert_eq!(out, [0.1, 0.2, 0.3]);
        assert_eq!(r.delay_samples(), 0);
    }

    #[test]
    fn sine_survives_48k_to_24k_with_reported_delay() {
        let mut r = StreamResampler::new(48_000, 24_000, 480).unwrap();
        let f = 440.0;
        let input: Vec<f32> = (0..48_000)
            .map(|i| (2.0 * std::f32::consts::PI * f * i as f32 / 48_000.0).sin() * 0.5)
            .collect();
        // Feed in odd block sizes, as a device would.
        for block in input.chunks(333) {
            r.push(block);
        }
        let mut out = vec![0.0; r.available()];
        r.pop(&mut out);
        let d = r.delay_samples();
        assert!(out.len() > 23_000, "{}", out.len());
        let mut err = 0.0f64;
        let mut sig = 0.0f64;
        for (i, &y) in out.iter().enumerate().skip(d + 500).take(20_000) {
            let x = (2.0 * std::f64::consts::PI * f as f64 * (i - d) as f64 / 24_000.0).sin() * 0.5;
            err += (y as f64 - x).powi(2);
            sig += x * x;
        }
        let snr = 10.0 * (sig / err).log10();
        assert!(snr > 60.0, "snr {snr:.1} dB with delay {d}");
    }
}
