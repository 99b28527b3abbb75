//! Whisper's log-mel spectrogram (OpenAI's `whisper/audio.py`): 16 kHz audio, a 400-point
//! periodic Hann STFT every 160 samples (centred, reflect-padded), power spectrum, 80
//! Slaney mel bands (librosa's `filters.mel`, as `mel_filters.npz` holds them), log10,
//! clamped to 8 below the maximum, then `(x + 4) / 4`. candle's version pads every input
//! to 30 s and runs a plain DFT; this one does the window it is given with an FFT.

use realfft::RealFftPlanner;
use std::sync::Arc;

pub const SAMPLE_RATE: usize = 16_000;
pub const N_FFT: usize = 400;
pub const HOP: usize = 160;

pub struct Mel {
    n_mels: usize,
    /// `n_mels` rows of `N_FFT / 2 + 1` weights.
    filters: Vec<f32>,
    window: Vec<f32>,
    fft: Arc<dyn realfft::RealToComplex<f32>>,
}

fn hz_to_mel(f: f64) -> f64 {
    // Slaney: linear below 1 kHz, logarithmic above.
    let f_sp = 200.0 / 3.0;
    let min_log_mel = 1000.0 / f_sp;
    let logstep = 6.4f64.ln() / 27.0;
    if f >= 1000.0 {
        min_log_mel + (f / 1000.0).ln() / logstep
    } else {
        f / f_sp
    }
}

fn mel_to_hz(m: f64) -> f64 {
    let f_sp = 200.0 / 3.0;
    let min_log_mel = 1000.0 / f_sp;
    let logstep = 6.4f64.ln() / 27.0;
    if m >= min_log_mel {
        1000.0 * (logstep * (m - min_log_mel)).exp()
    } else {
        f_sp * m
    }
}

/// librosa.filters.mel(sr=16000, n_fft=400, n_mels, htk=False, norm="slaney").
pub fn mel_filters(n_mels: usize) -> Vec<f32> {
    let n_freq = N_FFT / 2 + 1;
    let fft_freqs: Vec<f64> = (0..n_freq)
        .map(|i| i as f64 * SAMPLE_RATE as f64 / N_FFT as f64)
        .collect();
    let (lo, hi) = (hz_to_mel(0.0), hz_to_mel(SAMPLE_RATE as f64 / 2.0));
    let mel_f: Vec<f64> = (0..n_mels + 2)
        .map(|i| mel_to_hz(lo + (hi - lo) * i as f64 / (n_mels + 1) as f64))
        .collect();
    let mut w = vec![0f32; n_mels * n_freq];
    for m in 0..n_mels {
        let (f0, f1, f2) = (mel_f[m], mel_f[m + 1], mel_f[m + 2]);
        let enorm = 2.0 / (f2 - f0);
        for (k, &f) in fft_freqs.iter().enumerate() {
            let lower = (f - f0) / (f1 - f0);
            let upper = (f2 - f) / (f2 - f1);
            w[m * n_freq + k] = (lower.min(upper).max(0.0) * enorm) as f32;
        }
    }
    w
}

impl Mel {
    pub fn new(n_mels: usize) -> Self {
        let window = (0..N_FFT)
            .map(|i| 0.5 - 0.5 * (2.0 * std::f32::consts::PI * i as f32 / N_FFT as f32).cos())
            .collect();
        Self {
            n_mels,
            filters: mel_filters(n_mels),
            window,
            fft: RealFftPlanner::<f32>::new().plan_fft_forward(N_FFT),
        }
    }

    /// Frames of mel for `n` samples (the STFT's last frame is dropped, as Whisper does).
    pub fn frames(n: usize) -> usize {
        n / HOP
    }

    /// The log-mel of `pcm` (16 kHz), `n_mels` rows of `frames(len)` values, row-major.
    pub fn compute(&self, pcm: &[f32]) -> Vec<f32> {
        let n_frames = Self::frames(pcm.len());
        let n_freq = N_FFT / 2 + 1;
        let pad = N_FFT / 2;
        // Reflect padding (torch.stft center=True) without repeating the edge sample.
        let at = |i: isize| -> f32 {
            let n = pcm.len() as isize;
            if n == 0 {
                return 0.0;
            }
            let mut j = i;
            if j < 0 {
                j = -j;
            }
            if j >= n {
                j = 2 * (n - 1) - j;
            }
            pcm[j.clamp(0, n - 1) as usize]
        };
        let mut input = self.fft.make_input_vec();
        let mut spectrum = self.fft.make_output_vec();
        let mut scratch = self.fft.make_scratch_vec();
        let mut power = vec![0f32; n_freq];
        let mut mel = vec![0f32; self.n_mels * n_frames];
        for t in 0..n_frames {
            let start = (t * HOP) as isize - pad as isize;
            for (k, x) in input.iter_mut().enumerate() {
                *x = at(start + k as isize) * self.window[k];
            }
            if self
                .fft
                .process_with_scratch(&mut input, &mut spectrum, &mut scratch)
                .is_err()
            {
                continue;
            }
            for (p, c) in power.iter_mut().zip(&spectrum) {
                *p = c.norm_sqr();
            }
            for m in 0..self.n_mels {
                let row = &self.filters[m * n_freq..(m + 1) * n_freq];
                let e: f32 = row.iter().zip(&power).map(|(w, p)| w * p).sum();
                mel[m * n_frames + t] = e.max(1e-10).log10();
            }
        }
        let max = mel.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        for v in mel.iter_mut() {
            *v = (v.max(max - 8.0) + 4.0) / 4.0;
        }
        mel
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_filters_are_slaney_triangles() {
        let f = mel_filters(80);
        let n_freq = N_FFT / 2 + 1;
        // Every band is a non-negative triangle, and the bands cover the spectrum in order.
        let peak = |m: usize| {
            (0..n_freq)
                .max_by(|&a, &b| f[m * n_freq + a].total_cmp(&f[m * n_freq + b]))
                .unwrap()
        };
        assert!(f.iter().all(|&w| w >= 0.0));
        assert!((1..80).all(|m| peak(m) >= peak(m - 1)));
        assert_eq!(peak(0), 1);
        // Band 0 spans 0-74.5 Hz peaking at 37.2 Hz; bin 1 (40 Hz) is on its falling
        // side: (74.47 - 40) / (74.47 - 37.24) * 2 / 74.47 = 0.02487.
        assert!((f[1] - 0.02487).abs() < 1e-4, "{}", f[1]);
    }

    #[test]
    fn a_tone_lights_its_band_and_silence_is_flat() {
        let mel = Mel::new(80);
        let tone: Vec<f32> = (0..16_000)
            .map(|i| (i as f32 * 2.0 * std::f32::consts::PI * 1000.0 / 16_000.0).sin() * 0.5)
            .collect();
        let m = mel.compute(&tone);
        let frames = Mel::frames(tone.len());
        assert_eq!(m.len(), 80 * frames);
        let band = |b: usize| m[b * frames + frames / 2];
        let loudest = (0..80)
            .max_by(|&a, &b| band(a).total_cmp(&band(b)))
            .unwrap();
        // 1 kHz is mel 15, band 15 * 81 / (mel 8 kHz = 45.2) ≈ 26.
        assert!((24..=28).contains(&loudest), "{loudest}");
        let quiet = mel.compute(&vec![0.0; 3200]);
        assert!(quiet.iter().all(|&v| (v - quiet[0]).abs() < 1e-6));
    }
}
