//! Streaming sample-rate conversion and down-mixing, run on the engine thread
//! (never in a callback).
//!
//! The ratio between a device and the model is fixed, so this is a polyphase
//! windowed-sinc filter: rubato's sinc resampler with as many phases as the
//! ratio's denominator and nearest-phase selection, so every output uses an exact
//! tap set (ratios that would need more than 160 phases interpolate cubically
//! between 128). The filter is sized on the lower of the two rates, so every pair
//! gets the same response relative to the lower Nyquist frequency: flat (within
//! 0.05 dB) to 0.95 of it, -6 dB at 0.99, images and aliases from 1.05 of it on
//! at least 80 dB down, and a delay of about 56 samples of the lower rate (7 ms at
//! 8 kHz, 2.3 ms at 48 kHz). Unlike rubato's FFT resampler, used before, the
//! filter does not depend on the block size the engine feeds. Measurements of the
//! settings compared: tools/resample_reference/README.md.

use rubato::audioadapter_buffers::direct::InterleavedSlice;
use rubato::{
    Async, FixedAsync, Resampler, SincInterpolationParameters, SincInterpolationType,
    WindowFunction,
};
use std::collections::VecDeque;

/// Filter length in samples of the lower rate. With the Blackman window and the
/// cutoff below, 112 taps give a 0.95–1.05 transition band with more than 80 dB
/// of stopband; 96 taps fall to 55 dB (see tools/resample_reference/README.md).
const TAPS_AT_LOWER_RATE: usize = 112;
/// Cutoff (-6 dB point) relative to the lower Nyquist frequency.
const CUTOFF: f32 = 0.99;
/// Largest polyphase table (phases) used for an exact ratio; rates whose ratio
/// needs more phases interpolate cubically between 128 of them instead.
const MAX_EXACT_PHASES: usize = 160;
const INTERPOLATED_PHASES: usize = 128;
/// Zeros a resampler may prepend to make its delay a whole number of output
/// samples (at most this many input samples).
const MAX_ALIGN_PAD: usize = 4;

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
    inner: Option<Async<f32>>,
    pending: Vec<f32>,
    out_buf: Vec<f32>,
    ready: VecDeque<f32>,
    rate_in: u32,
    rate_out: u32,
    /// Zeros put in front of the stream (at start and after `reset`) so that the
    /// delay is a whole number of output samples where a few suffice.
    pad: usize,
    /// Delay in input samples, exact (fractional for some ratios).
    delay_in: f64,
}

fn gcd(a: usize, b: usize) -> usize {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

/// The filter for one rate pair: sinc length (in input samples), phases, how
/// phases are picked, and the delay in input samples before any padding.
struct Design {
    sinc_len: usize,
    phases: usize,
    interpolation: SincInterpolationType,
    delay_in: f64,
}

fn design(rate_in: usize, rate_out: usize) -> Design {
    // Rubato's sinc length counts input samples; size it on the lower rate.
    let sinc_len = if rate_out < rate_in {
        (TAPS_AT_LOWER_RATE * rate_in).div_ceil(rate_out)
    } else {
        TAPS_AT_LOWER_RATE
    };
    let sinc_len = sinc_len.next_multiple_of(8); // rubato's own rounding, done here so the delay below is exact
    let exact = rate_out / gcd(rate_in, rate_out);
    let (phases, interpolation) = if exact <= MAX_EXACT_PHASES {
        (exact, SincInterpolationType::Nearest)
    } else {
        (INTERPOLATED_PHASES, SincInterpolationType::Cubic)
    };
    // Rubato reads output frame k at input index idx_k = (k + 1)·step - (len - 1)
    // (its first index is -(len - 1)). Phase p of its table is the filter centred
    // len/2 - 1 + (p + 1)/phases samples past idx_k's whole part, p being idx_k's
    // fraction in phases (cubic interpolation lands on the same point). So frame k
    // holds the input at idx_k + len/2 - 1 + 1/phases: the input at k·step, delayed
    // by len/2 - step - 1/phases input samples. tests/audio/resample_quality.rs measures it.
    let step = rate_in as f64 / rate_out as f64;
    let delay_in = sinc_len as f64 / 2.0 - step - 1.0 / phases as f64;
    Design {
        sinc_len,
        phases,
        interpolation,
        delay_in,
    }
}

impl StreamResampler {
    /// `chunk` is the fixed input block in frames (e.g. 10 ms of input).
    pub fn new(rate_in: u32, rate_out: u32, chunk: usize) -> anyhow::Result<Self> {
        let (mut pad, mut delay_in) = (0, 0.0);
        let inner = if rate_in == rate_out {
            None
        } else {
            let d = design(rate_in as usize, rate_out as usize);
            let params = SincInterpolationParameters::new(d.sinc_len, WindowFunction::Blackman)
                .f_cutoff(CUTOFF)
                .oversampling_factor(d.phases)
                .interpolation(d.interpolation);
            let ratio = rate_out as f64 / rate_in as f64;
            let r =
                Async::<f32>::new_sinc(ratio, 1.0, &params, chunk.max(16), 1, FixedAsync::Input)?;
            // A whole-sample delay keeps `delay_samples` exact: prepend the fewest
            // zeros (if a few do it) that make it one.
            let whole = |p: usize| {
                let out = (d.delay_in + p as f64) * ratio;
                (out - out.round()).abs() < 1e-9
            };
            pad = (0..=MAX_ALIGN_PAD).find(|&p| whole(p)).unwrap_or(0);
            delay_in = d.delay_in + pad as f64;
            Some(r)
        };
        let out_max = inner.as_ref().map_or(0, |r| r.output_frames_max());
        let mut s = Self {
            inner,
            pending: Vec::with_capacity(chunk * 4 + pad),
            out_buf: vec![0.0; out_max],
            ready: VecDeque::with_capacity(rate_out as usize),
            rate_in,
            rate_out,
            pad,
            delay_in,
        };
        s.pending.resize(pad, 0.0);
        Ok(s)
    }

    pub fn rates(&self) -> (u32, u32) {
        (self.rate_in, self.rate_out)
    }

    /// Output samples of delay the resampler adds, exact (a fraction where the
    /// ratio forces one, e.g. 44.1 kHz to 24 kHz).
    pub fn delay(&self) -> f64 {
        if self.inner.is_none() {
            return 0.0;
        }
        self.delay_in * self.rate_out as f64 / self.rate_in as f64
    }

    /// Output samples of delay the resampler adds, to the nearest sample.
    pub fn delay_samples(&self) -> usize {
        self.delay().round() as usize
    }

    pub fn delay_ms(&self) -> f64 {
        self.delay() * 1000.0 / self.rate_out as f64
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
            let zeros = vec![0.0; r.input_frames_next() + self.delay_in.ceil() as usize + 1];
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

    /// Back to the state `new` left: empty history, nothing pending or ready.
    pub fn reset(&mut self) {
        if let Some(r) = self.inner.as_mut() {
            r.reset();
        }
        self.pending.clear();
        self.pending.resize(self.pad, 0.0);
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

    #[test]
    fn reset_replays_exactly_and_flush_empties_the_filter() {
        let input: Vec<f32> = (0..4_410)
            .map(|i| ((i * 7919) % 1000) as f32 / 1000.0 - 0.5)
            .collect();
        let mut r = StreamResampler::new(44_100, 24_000, 441).unwrap();
        let run = |r: &mut StreamResampler| {
            r.push(&input);
            r.flush();
            let mut out = vec![0.0; r.available()];
            r.pop(&mut out);
            out
        };
        let first = run(&mut r);
        r.reset();
        assert_eq!(r.available(), 0);
        assert_eq!(run(&mut r), first);
        // Everything fed comes out: the output covers the input plus the delay.
        assert!(
            first.len() as f64 >= 4_410.0 * 24.0 / 44.1 + r.delay(),
            "{}",
            first.len()
        );
    }

    #[test]
    fn delay_is_whole_where_a_few_zeros_make_it_so() {
        for (a, b) in [
            (48_000, 24_000),
            (24_000, 48_000),
            (16_000, 24_000),
            (24_000, 16_000),
            (8_000, 24_000),
            (96_000, 24_000),
        ] {
            let r = StreamResampler::new(a, b, 480).unwrap();
            assert_eq!(r.delay(), r.delay().round(), "{a}->{b}");
            assert!(r.delay_ms() < 8.0, "{a}->{b}: {} ms", r.delay_ms());
        }
    }
}
