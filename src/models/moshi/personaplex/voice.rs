//! PersonaPlex's voice prompt from a WAV: first channel, resampled to the model's rate,
//! loudness-normalised to -24 LUFS the way NVIDIA's code does it (pyloudnorm's
//! ITU-R BS.1770 meter: K-weighting, 400 ms blocks with 75 % overlap, absolute gate at
//! -70 LUFS, relative gate 10 LU down), then cut into frames with the last one
//! zero-padded. (NVIDIA's precomputed `.pt` voices: `voices`.)

use crate::audio::resample::StreamResampler;
use crate::audio::wav::read_wav;
use std::path::Path;

pub const TARGET_LUFS: f64 = -24.0;
/// The longest voice prompt taken; NVIDIA's voices are about 10 s.
pub const MAX_VOICE_SECONDS: f64 = 30.0;

struct Biquad {
    b: [f64; 3],
    a: [f64; 3],
}

impl Biquad {
    /// pyloudnorm's `IIRfilter` coefficients for its two K-weighting stages.
    fn new(high_shelf: bool, gain_db: f64, q: f64, fc: f64, rate: f64) -> Self {
        let a_ = 10f64.powf(gain_db / 40.0);
        let w0 = 2.0 * std::f64::consts::PI * (fc / rate);
        let alpha = w0.sin() / (2.0 * q);
        let c = w0.cos();
        let (b, a) = if high_shelf {
            let s = 2.0 * a_.sqrt() * alpha;
            (
                [
                    a_ * ((a_ + 1.0) + (a_ - 1.0) * c + s),
                    -2.0 * a_ * ((a_ - 1.0) + (a_ + 1.0) * c),
                    a_ * ((a_ + 1.0) + (a_ - 1.0) * c - s),
                ],
                [
                    (a_ + 1.0) - (a_ - 1.0) * c + s,
                    2.0 * ((a_ - 1.0) - (a_ + 1.0) * c),
                    (a_ + 1.0) - (a_ - 1.0) * c - s,
                ],
            )
        } else {
            (
                [(1.0 + c) / 2.0, -(1.0 + c), (1.0 + c) / 2.0],
                [1.0 + alpha, -2.0 * c, 1.0 - alpha],
            )
        };
        let a0 = a[0];
        Self {
            b: b.map(|v| v / a0),
            a: a.map(|v| v / a0),
        }
    }

    /// `scipy.signal.lfilter` (direct form II transposed, zero initial state).
    fn apply(&self, x: &[f64]) -> Vec<f64> {
        let (mut z1, mut z2) = (0.0, 0.0);
        x.iter()
            .map(|&v| {
                let y = self.b[0] * v + z1;
                z1 = self.b[1] * v - self.a[1] * y + z2;
                z2 = self.b[2] * v - self.a[2] * y;
                y
            })
            .collect()
    }
}

/// Integrated loudness of mono audio in LUFS, as pyloudnorm's `Meter(rate)`;
/// `-inf` for silence or audio shorter than one 400 ms block.
pub fn integrated_loudness(samples: &[f32], rate: u32) -> f64 {
    let r = rate as f64;
    let x: Vec<f64> = samples.iter().map(|&v| v as f64).collect();
    // Each stage filters in f64 and is stored back in the input's f32, as pyloudnorm does.
    let f32_round = |v: Vec<f64>| v.into_iter().map(|s| s as f32 as f64).collect::<Vec<_>>();
    let x = f32_round(Biquad::new(true, 4.0, 1.0 / 2f64.sqrt(), 1500.0, r).apply(&x));
    let x = f32_round(Biquad::new(false, 0.0, 0.5, 38.0, r).apply(&x));
    let (tg, step) = (0.4, 0.25);
    let t = x.len() as f64 / r;
    if t < tg {
        return f64::NEG_INFINITY;
    }
    let blocks = (((t - tg) / (tg * step)).round_ties_even() as i64 + 1).max(0) as usize;
    let z: Vec<f64> = (0..blocks)
        .map(|j| {
            let l = (tg * (j as f64 * step) * r) as usize;
            let u = ((tg * (j as f64 * step + 1.0) * r) as usize).min(x.len());
            x[l.min(u)..u].iter().map(|v| v * v).sum::<f64>() / (tg * r)
        })
        .collect();
    let lufs = |z: f64| -0.691 + 10.0 * z.log10();
    let gated = |keep: &dyn Fn(f64) -> bool| {
        let kept: Vec<f64> = z.iter().copied().filter(|&v| keep(lufs(v))).collect();
        if kept.is_empty() {
            0.0
        } else {
            kept.iter().sum::<f64>() / kept.len() as f64
        }
    };
    let abs_gate = -70.0;
    let rel_gate = lufs(gated(&|l| l >= abs_gate)) - 10.0;
    lufs(gated(&|l| l > rel_gate && l > abs_gate))
}

/// Scale to `target` LUFS (the gain computed in f64, applied in f32).
pub fn normalise_loudness(samples: &mut [f32], rate: u32, target: f64) -> Result<(), String> {
    let loudness = integrated_loudness(samples, rate);
    if !loudness.is_finite() {
        return Err("it is silent (or shorter than 0.4 s): no loudness to normalise".into());
    }
    let gain = 10f64.powf((target - loudness) / 20.0);
    for s in samples.iter_mut() {
        *s = (*s as f64 * gain) as f32;
    }
    Ok(())
}

/// Resample a whole mono buffer, delay removed, to `rate_out`.
pub fn resample(samples: &[f32], rate_in: u32, rate_out: u32) -> anyhow::Result<Vec<f32>> {
    if rate_in == rate_out {
        return Ok(samples.to_vec());
    }
    let chunk = (rate_in / 100).max(16) as usize;
    let mut r = StreamResampler::new(rate_in, rate_out, chunk)?;
    let delay = r.delay_samples();
    let want = (samples.len() as u64 * rate_out as u64).div_ceil(rate_in as u64) as usize;
    r.push(samples);
    r.flush();
    let mut out = vec![0.0; r.available()];
    let n = r.pop(&mut out);
    out.truncate(n);
    let start = delay.min(out.len());
    let mut out = out.split_off(start);
    out.truncate(want);
    Ok(out)
}

/// The voice prompt's samples, ready for Mimi: read, first channel, resampled,
/// loudness-normalised. Errors name the file and the problem.
pub fn voice_prompt_pcm(path: &Path, rate: u32) -> anyhow::Result<Vec<f32>> {
    let shown = path.display();
    let wav = read_wav(path).map_err(|e| {
        anyhow::anyhow!(
            "voice prompt {e}; give a WAV (PCM or 32-bit float) of a few seconds of one speaker, one of NVIDIA's .pt voices, or a voice name"
        )
    })?;
    let ch = wav.channels.max(1) as usize;
    if wav.seconds() > MAX_VOICE_SECONDS {
        anyhow::bail!(
            "voice prompt {shown}: {:.1} s long; at most {MAX_VOICE_SECONDS} s is taken (cut it to a few seconds of one speaker)",
            wav.seconds()
        );
    }
    let mono: Vec<f32> = wav.samples.iter().step_by(ch).copied().collect();
    let mut pcm = resample(&mono, wav.sample_rate, rate)?;
    normalise_loudness(&mut pcm, rate, TARGET_LUFS).map_err(|e| {
        anyhow::anyhow!("voice prompt {shown}: {e}; record a few seconds of the voice")
    })?;
    Ok(pcm)
}

/// Cut into `frame_len` frames, the last one zero-padded.
pub fn frames(pcm: &[f32], frame_len: usize) -> Vec<Vec<f32>> {
    pcm.chunks(frame_len)
        .map(|c| {
            let mut f = c.to_vec();
            f.resize(frame_len, 0.0);
            f
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_scale_1khz_sine_reads_about_minus_3_lufs() {
        // BS.1770: a 0 dBFS 1 kHz sine measures -3.01 LUFS (K-weighting gains ~0.7 dB
        // at 1 kHz, which the -0.691 offset takes back).
        let rate = 48_000;
        let s: Vec<f32> = (0..rate * 2)
            .map(|i| (2.0 * std::f32::consts::PI * 1000.0 * i as f32 / rate as f32).sin())
            .collect();
        let l = integrated_loudness(&s, rate);
        assert!((l - -3.01).abs() < 0.05, "{l}");
        let mut s = s;
        normalise_loudness(&mut s, rate, TARGET_LUFS).unwrap();
        assert!((integrated_loudness(&s, rate) - TARGET_LUFS).abs() < 1e-6);
        assert!(normalise_loudness(&mut vec![0.0; 48_000], rate, TARGET_LUFS).is_err());
    }

    #[test]
    fn frames_pad_the_last() {
        let f = frames(&[1.0; 5], 2);
        assert_eq!(f.len(), 3);
        assert_eq!(f[2], vec![1.0, 0.0]);
    }
}
