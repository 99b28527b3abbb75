//! Whisper's log-mel spectrogram (OpenAI's `whisper/audio.py`): 16 kHz audio, a 400-point
//! periodic Hann STFT every 160 samples (centred, reflect-padded), power spectrum, 80
//! Slaney mel bands (librosa's `filters.mel`, as `mel_filters.npz` holds them), log10,
//! clamped to 8 below the maximum, then `(x + 4) / 4`. candle's version pads every input
//! to 30 s and runs a plain DFT; this one does the window it is given with an FFT.

use moshi::candle::{Device, Tensor};
use realfft::RealFftPlanner;
use std::sync::Arc;

pub const SAMPLE_RATE: usize = 16_000;
pub const N_FFT: usize = 400;
pub const HOP: usize = 160;

pub struct Mel {
    /// [n_mels, N_FFT / 2 + 1].
    filters: Tensor,
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
    pub fn new(n_mels: usize) -> moshi::candle::Result<Self> {
        let window = (0..N_FFT)
            .map(|i| 0.5 - 0.5 * (2.0 * std::f32::consts::PI * i as f32 / N_FFT as f32).cos())
            .collect();
        let filters = Tensor::from_vec(mel_filters(n_mels), (n_mels, N_FFT / 2 + 1), &Device::Cpu)?;
        Ok(Self {
            filters,
            window,
            fft: RealFftPlanner::<f32>::new().plan_fft_forward(N_FFT),
        })
    }

    /// Frames of mel for `n` samples (the STFT's last frame is dropped, as Whisper does).
    pub fn frames(n: usize) -> usize {
        n / HOP
    }

    /// The log-mel of `pcm` (16 kHz), `n_mels` rows of `frames(len)` values, row-major.
    /// The band sums and the log run as tensor ops (one matmul), not loops here.
    pub fn compute(&self, pcm: &[f32]) -> Vec<f32> {
        self.compute_tensor(pcm)
            .and_then(|t| t.flatten_all()?.to_vec1::<f32>())
            .unwrap_or_default()
    }

    /// As `compute`, as a [n_mels, frames] tensor on the CPU.
    pub fn compute_tensor(&self, pcm: &[f32]) -> moshi::candle::Result<Tensor> {
        let n_frames = Self::frames(pcm.len());
        let n_freq = N_FFT / 2 + 1;
        let pad = N_FFT / 2;
        // Reflect padding (torch.stft center=True) without repeating the edge sample.
        let n = pcm.len();
        let mut padded = Vec::with_capacity(n + 2 * pad);
        if n > pad {
            padded.extend(pcm[1..=pad].iter().rev());
            padded.extend_from_slice(pcm);
            padded.extend(pcm[n - 1 - pad..n - 1].iter().rev());
        } else {
            padded.resize(n + 2 * pad, 0.0);
            padded[pad..pad + n].copy_from_slice(pcm);
        }
        let mut input = self.fft.make_input_vec();
        let mut spectrum = self.fft.make_output_vec();
        let mut scratch = self.fft.make_scratch_vec();
        // [frames, n_freq] power spectrum.
        let mut power = vec![0f32; n_frames * n_freq];
        for (t, row) in power.chunks_exact_mut(n_freq).enumerate() {
            let frame = &padded[t * HOP..t * HOP + N_FFT];
            for ((x, s), w) in input.iter_mut().zip(frame).zip(&self.window) {
                *x = s * w;
            }
            if self
                .fft
                .process_with_scratch(&mut input, &mut spectrum, &mut scratch)
                .is_ok()
            {
                for (p, c) in row.iter_mut().zip(&spectrum) {
                    *p = c.re * c.re + c.im * c.im;
                }
            }
        }
        let dev = Device::Cpu;
        let power = Tensor::from_vec(power, (n_frames, n_freq), &dev)?;
        let mel = self.filters.matmul(&power.t()?)?; // [n_mels, frames]
        let log = (mel.maximum(1e-10f32)?.log()? / std::f64::consts::LN_10)?;
        let max = log.max_all()?.to_scalar::<f32>()?;
        (log.maximum(max - 8.0)? + 4.0)? / 4.0
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
        let mel = Mel::new(80).unwrap();
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
