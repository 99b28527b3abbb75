//! Streaming MFCC features for the wake-word spotter: 24 kHz mono in, one
//! 12-coefficient vector every 10 ms out. The cepstral mean is removed with a slow
//! running average so a microphone's colour and a room's tilt cancel out, the same way
//! for a reference take and for live audio.

use realfft::{RealFftPlanner, RealToComplex};
use std::sync::Arc;

pub const RATE: u32 = 24_000;
/// 10 ms hop: 240 samples, so an 80 ms model frame is 8 feature frames.
pub const HOP: usize = 240;
/// 25 ms window.
pub const WIN: usize = 600;
const N_FFT: usize = 1024;
const N_MELS: usize = 32;
/// c1..c12 (c0, the loudness, is left out: a name is a name at any volume), then
/// their change over 20 ms (how the sounds move), at half weight: doubling it lost a
/// fifth of the detections on the fixtures, halving it gained a few.
pub const N_CEPS: usize = 2 * N_STATIC;
const N_STATIC: usize = 12;
const F_LO: f64 = 100.0;
const F_HI: f64 = 8_000.0;
/// The running cepstral mean forgets with a time constant of about 1.5 s.
const MEAN_ALPHA: f32 = 1.0 / 150.0;
const DELTA_WEIGHT: f32 = 0.5;

pub type Vector = [f32; N_CEPS];

pub struct Features {
    fft: Arc<dyn RealToComplex<f32>>,
    window: Vec<f32>,
    /// [N_MELS][N_FFT/2+1], triangular HTK mel bands.
    mel: Vec<Vec<(usize, f32)>>,
    /// [N_CEPS][N_MELS] DCT-II rows 1..=12, with a sine lifter folded in.
    dct: Vec<[f32; N_MELS]>,
    /// Samples not yet framed (the last WIN - HOP of a window are kept).
    pending: Vec<f32>,
    mean: [f32; N_STATIC],
    /// The last two static vectors, for the deltas.
    hist: [[f32; N_STATIC]; 2],
    /// Frames seen, so the first frames take a faster mean.
    seen: u64,
    buf: Vec<f32>,
    spec: Vec<realfft::num_complex::Complex32>,
    /// Log energy of the last frame, dB full scale (for the caller's speech gate).
    pub last_db: f32,
}

fn hz_to_mel(f: f64) -> f64 {
    2595.0 * (1.0 + f / 700.0).log10()
}
fn mel_to_hz(m: f64) -> f64 {
    700.0 * (10f64.powf(m / 2595.0) - 1.0)
}

impl Default for Features {
    fn default() -> Self {
        Self::new()
    }
}

impl Features {
    pub fn new() -> Self {
        let fft = RealFftPlanner::<f32>::new().plan_fft_forward(N_FFT);
        let window = (0..WIN)
            .map(|i| 0.54 - 0.46 * (2.0 * std::f32::consts::PI * i as f32 / (WIN - 1) as f32).cos())
            .collect();
        let n_bins = N_FFT / 2 + 1;
        let (lo, hi) = (hz_to_mel(F_LO), hz_to_mel(F_HI));
        let edges: Vec<f64> = (0..N_MELS + 2)
            .map(|i| mel_to_hz(lo + (hi - lo) * i as f64 / (N_MELS + 1) as f64))
            .collect();
        let mel = (0..N_MELS)
            .map(|m| {
                let (f0, f1, f2) = (edges[m], edges[m + 1], edges[m + 2]);
                (0..n_bins)
                    .filter_map(|k| {
                        let f = k as f64 * RATE as f64 / N_FFT as f64;
                        let w = ((f - f0) / (f1 - f0)).min((f2 - f) / (f2 - f1));
                        (w > 0.0).then_some((k, w as f32))
                    })
                    .collect()
            })
            .collect();
        let lifter = 22.0f32;
        let dct = (1..=N_STATIC)
            .map(|c| {
                let lift = 1.0 + lifter / 2.0 * (std::f32::consts::PI * c as f32 / lifter).sin();
                let mut row = [0f32; N_MELS];
                for (m, r) in row.iter_mut().enumerate() {
                    *r = lift
                        * (std::f32::consts::PI * c as f32 * (m as f32 + 0.5) / N_MELS as f32)
                            .cos()
                        * (2.0 / N_MELS as f32).sqrt();
                }
                row
            })
            .collect();
        Self {
            spec: fft.make_output_vec(),
            buf: vec![0.0; N_FFT],
            fft,
            window,
            mel,
            dct,
            pending: Vec::with_capacity(WIN + 4 * HOP),
            mean: [0.0; N_STATIC],
            hist: [[0.0; N_STATIC]; 2],
            seen: 0,
            last_db: -120.0,
        }
    }

    /// Feed 24 kHz samples; `out` gets one mean-removed vector per whole hop.
    pub fn push(&mut self, samples: &[f32], mut out: impl FnMut(&Vector, f32)) {
        self.pending.extend_from_slice(samples);
        let mut start = 0;
        while self.pending.len() - start >= WIN {
            let v = self.frame(start);
            out(&v, self.last_db);
            start += HOP;
        }
        self.pending.drain(..start);
    }

    fn frame(&mut self, start: usize) -> Vector {
        let x = &self.pending[start..start + WIN];
        let mut energy = 0f32;
        for (i, (b, (&s, &w))) in self
            .buf
            .iter_mut()
            .zip(x.iter().zip(&self.window))
            .enumerate()
        {
            // Pre-emphasis against the previous sample of the window.
            let prev = if i == 0 { s } else { x[i - 1] };
            let e = s - 0.97 * prev;
            energy += s * s;
            *b = e * w;
        }
        self.buf[WIN..].fill(0.0);
        self.last_db = 10.0 * (energy / WIN as f32 + 1e-12).log10();
        // The buffers are sized for this plan, so it cannot fail.
        let _ = self.fft.process(&mut self.buf, &mut self.spec);
        let mut logmel = [0f32; N_MELS];
        for (l, band) in logmel.iter_mut().zip(&self.mel) {
            let p: f32 = band.iter().map(|&(k, w)| self.spec[k].norm_sqr() * w).sum();
            *l = (p + 1e-8).ln();
        }
        let mut v = [0f32; N_STATIC];
        for (c, row) in v.iter_mut().zip(&self.dct) {
            *c = row.iter().zip(&logmel).map(|(a, b)| a * b).sum();
        }
        // A faster mean while it settles, then a slow one.
        self.seen += 1;
        let a = (1.0 / self.seen as f32).max(MEAN_ALPHA);
        for (m, c) in self.mean.iter_mut().zip(v.iter_mut()) {
            *m += a * (*c - *m);
            *c -= *m;
        }
        let mut out = [0f32; N_CEPS];
        out[..N_STATIC].copy_from_slice(&v);
        for i in 0..N_STATIC {
            out[N_STATIC + i] = DELTA_WEIGHT * (v[i] - self.hist[0][i]) / 2.0;
        }
        self.hist[0] = self.hist[1];
        self.hist[1] = v;
        out
    }

    pub fn reset(&mut self) {
        self.pending.clear();
        self.mean = [0.0; N_STATIC];
        self.hist = [[0.0; N_STATIC]; 2];
        self.seen = 0;
    }
}

/// Every feature vector of a whole clip (24 kHz mono), with each frame's level in dB.
pub fn clip_features(samples: &[f32]) -> Vec<(Vector, f32)> {
    let mut f = Features::new();
    let mut out = Vec::with_capacity(samples.len() / HOP + 1);
    f.push(samples, |v, db| out.push((*v, db)));
    out
}
