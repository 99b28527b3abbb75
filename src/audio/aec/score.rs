//! The figures of `tests/fixtures/tools/echo_score.py`, computed in Rust so tests need no
//! Python. Definitions are kept identical to the script (its docstring defines them):
//! - `lag_ms`: latency the canceller added, from the cross-correlation with near.wav;
//! - `erle_db`: E[mic^2] / E[out^2] on the far-only segment after its first second;
//! - `near_ssnr_db`: STFT magnitudes on the near-only segment, sum|N|^2 / sum(|O|-|N|)^2;
//! - `double_talk_corr`: waveform correlation of output with near.wav during double talk.

use anyhow::{bail, Context, Result};
use realfft::RealFftPlanner;
use std::path::Path;

/// One scene made by `echo_make_scene.py`.
#[derive(Debug, Clone)]
pub struct Scene {
    pub rate: u32,
    pub far: Vec<f64>,
    pub near: Vec<f64>,
    pub mic: Vec<f64>,
    pub far_only: (f64, f64),
    pub double_talk: Option<(f64, f64)>,
    pub near_only: Option<(f64, f64)>,
    pub delay_ms: Option<f64>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Score {
    pub lag_ms: f64,
    pub erle_db: f64,
    pub near_ssnr_db: Option<f64>,
    pub double_talk_corr: Option<f64>,
}

impl std::fmt::Display for Score {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "erle {:.2} dB", self.erle_db)?;
        if let Some(n) = self.near_ssnr_db {
            write!(f, ", near-end {n:.2} dB")?;
        }
        if let Some(c) = self.double_talk_corr {
            write!(f, ", double-talk corr {c:.3}")?;
        }
        write!(f, ", lag {:.2} ms", self.lag_ms)
    }
}

#[derive(serde::Deserialize)]
struct SceneJson {
    rate: u32,
    far_only: (f64, f64),
    double_talk: Option<(f64, f64)>,
    near_only: Option<(f64, f64)>,
    delay_ms: Option<f64>,
}

/// Mono f64 samples as the script loads them: integers over the type's maximum.
pub fn load_mono_f64(path: &Path) -> Result<(u32, Vec<f64>)> {
    let mut r = hound::WavReader::open(path)
        .with_context(|| format!("{}: cannot read WAV", path.display()))?;
    let spec = r.spec();
    let ch = spec.channels.max(1) as usize;
    let raw: Vec<f64> = match spec.sample_format {
        hound::SampleFormat::Float => r
            .samples::<f32>()
            .map(|s| s.map(f64::from))
            .collect::<Result<_, _>>()?,
        hound::SampleFormat::Int => {
            let max = ((1u64 << (spec.bits_per_sample - 1)) - 1) as f64;
            r.samples::<i32>()
                .map(|s| s.map(|v| v as f64 / max))
                .collect::<Result<_, _>>()?
        }
    };
    let mono = raw
        .chunks(ch)
        .map(|f| f.iter().sum::<f64>() / ch as f64)
        .collect();
    Ok((spec.sample_rate, mono))
}

pub fn load_scene(dir: &Path) -> Result<Scene> {
    let json_path = dir.join("scene.json");
    let text = std::fs::read_to_string(&json_path)
        .with_context(|| format!("{}: cannot read", json_path.display()))?;
    let j: SceneJson = serde_json::from_str(&text)
        .with_context(|| format!("{}: not a scene", json_path.display()))?;
    let load = |name: &str| -> Result<Vec<f64>> {
        let (rate, x) = load_mono_f64(&dir.join(name))?;
        if rate != j.rate {
            bail!(
                "{}: {rate} Hz, the scene says {} Hz",
                dir.join(name).display(),
                j.rate
            );
        }
        Ok(x)
    };
    Ok(Scene {
        rate: j.rate,
        far: load("far.wav")?,
        near: load("near.wav")?,
        mic: load("mic.wav")?,
        far_only: j.far_only,
        double_talk: j.double_talk,
        near_only: j.near_only,
        delay_ms: j.delay_ms,
    })
}

fn seg(rate: u32, (a, b): (f64, f64), len: usize) -> std::ops::Range<usize> {
    let r = rate as f64;
    let (a, b) = ((a * r) as usize, (b * r) as usize);
    a.min(len)..b.min(len).max(a.min(len))
}

/// Scores a canceller's output (at the scene's rate) exactly as `echo_score.py` does.
pub fn score(scene: &Scene, out: &[f32]) -> Score {
    let r = scene.rate as usize;
    let n = scene.mic.len().min(scene.near.len());
    let (mic, near) = (&scene.mic[..n], &scene.near[..n]);
    let mut o: Vec<f64> = out.iter().map(|&x| x as f64).collect();
    if o.len() < n + r {
        o.resize(n + r, 0.0);
    }
    let max_lag = (0.3 * r as f64) as usize;
    let lag = best_lag(&o[..n + max_lag], near, max_lag);
    let o = &o[lag..lag + n];

    let fo = seg(scene.rate, (scene.far_only.0 + 1.0, scene.far_only.1), n);
    let e_mic: f64 = mic[fo.clone()].iter().map(|x| x * x).sum();
    let e_out: f64 = o[fo].iter().map(|x| x * x).sum();
    let erle_db = 10.0 * (e_mic / e_out.max(1e-20)).log10();

    let near_ssnr_db = scene.near_only.map(|s| {
        let s = seg(scene.rate, s, n);
        let (nm, om) = (stft_mag(&near[s.clone()]), stft_mag(&o[s]));
        let sig: f64 = nm.iter().map(|x| x * x).sum();
        let err: f64 = nm.iter().zip(&om).map(|(a, b)| (b - a).powi(2)).sum();
        10.0 * (sig / err.max(1e-20)).log10()
    });
    let double_talk_corr = scene.double_talk.map(|s| {
        let s = seg(scene.rate, s, n);
        let (a, b) = (&o[s.clone()], &near[s]);
        let dot: f64 = a.iter().zip(b).map(|(x, y)| x * y).sum();
        let na = a.iter().map(|x| x * x).sum::<f64>().sqrt();
        let nb = b.iter().map(|x| x * x).sum::<f64>().sqrt();
        dot / (na * nb + 1e-12)
    });
    Score {
        lag_ms: lag as f64 * 1000.0 / r as f64,
        erle_db,
        near_ssnr_db,
        double_talk_corr,
    }
}

/// argmax over L in 0..=max_lag of sum_i a[i + L] * b[i] (scipy's `correlate`, full mode,
/// from the zero-lag index on), by FFT: how many samples `a` lags behind `b`.
pub fn best_lag(a: &[f64], b: &[f64], max_lag: usize) -> usize {
    let m = (a.len() + b.len()).next_power_of_two();
    let c = super::synth::fft_product(a, b, m, true);
    let mut best = 0;
    for l in 1..=max_lag.min(m - 1) {
        if c[l] > c[best] {
            best = l;
        }
    }
    best
}

/// |STFT| as scipy.signal.stft(x, nperseg=512, noverlap=384) computes it: periodic Hann,
/// half a window of zeros on each side, zero-padded to whole hops. Its 1/sum(window)
/// scale is left out: both ratios above are scale-free.
fn stft_mag(x: &[f64]) -> Vec<f64> {
    const NPERSEG: usize = 512;
    const HOP: usize = 128;
    let mut padded = vec![0.0; NPERSEG / 2];
    padded.extend_from_slice(x);
    padded.extend(std::iter::repeat_n(0.0, NPERSEG / 2));
    let extra = (HOP - (padded.len() - NPERSEG) % HOP) % HOP;
    padded.extend(std::iter::repeat_n(0.0, extra));
    let window: Vec<f64> = (0..NPERSEG)
        .map(|i| 0.5 - 0.5 * (2.0 * std::f64::consts::PI * i as f64 / NPERSEG as f64).cos())
        .collect();
    let fft = RealFftPlanner::<f64>::new().plan_fft_forward(NPERSEG);
    let mut buf = vec![0.0; NPERSEG];
    let mut spec = fft.make_output_vec();
    let mut mags = Vec::new();
    for start in (0..=padded.len() - NPERSEG).step_by(HOP) {
        for (i, b) in buf.iter_mut().enumerate() {
            *b = padded[start + i] * window[i];
        }
        fft.process(&mut buf, &mut spec)
            .expect("buffers sized by the plan");
        mags.extend(spec.iter().map(|c| c.norm()));
    }
    mags
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toy_scene() -> Scene {
        let n = 24_000 * 4;
        let near: Vec<f64> = (0..n)
            .map(|i| {
                if i > 24_000 * 2 {
                    ((i as f64) * 0.05).sin() * 0.3
                } else {
                    0.0
                }
            })
            .collect();
        let far: Vec<f64> = (0..n)
            .map(|i| {
                if i < 24_000 * 3 {
                    ((i as f64) * 0.031).sin() * 0.5
                } else {
                    0.0
                }
            })
            .collect();
        let mic = near.iter().zip(&far).map(|(a, b)| a + 0.5 * b).collect();
        Scene {
            rate: 24_000,
            far,
            near,
            mic,
            far_only: (0.0, 2.0),
            double_talk: Some((2.0, 3.0)),
            near_only: Some((3.0, 4.0)),
            delay_ms: None,
        }
    }

    #[test]
    fn perfect_output_scores_perfectly_and_finds_the_lag() {
        let s = toy_scene();
        let mut out = vec![0.0f32; 120];
        out.extend(s.near.iter().map(|&x| x as f32));
        let sc = score(&s, &out);
        assert_eq!(sc.lag_ms, 5.0);
        assert!(sc.erle_db > 150.0, "{sc}");
        assert!(sc.near_ssnr_db.unwrap() > 60.0, "{sc}");
        assert!(sc.double_talk_corr.unwrap() > 0.999, "{sc}");
    }

    #[test]
    fn passing_the_mic_through_scores_no_erle() {
        let s = toy_scene();
        let out: Vec<f32> = s.mic.iter().map(|&x| x as f32).collect();
        let sc = score(&s, &out);
        assert!(sc.erle_db.abs() < 0.01, "{sc}");
        assert!(sc.double_talk_corr.unwrap() < 0.9, "{sc}");
    }
}
