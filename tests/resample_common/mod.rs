//! Shared by the resampling tests: the vendored fixtures (tests/fixtures/resample, made
//! by tools/resample_reference/make_fixtures.py) and a reference that can be delayed by
//! any fraction of a sample.
#![allow(dead_code)]

use realfft::num_complex::Complex;
use realfft::RealFftPlanner;
use std::f64::consts::PI;
use std::path::Path;

pub fn db(x: f64) -> f64 {
    10.0 * x.log10()
}

pub fn read_fixture(name: &str) -> (Vec<f64>, u32) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/resample")
        .join(name);
    let mut r = hound::WavReader::open(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let spec = r.spec();
    assert_eq!((spec.channels, spec.bits_per_sample), (1, 24), "{name}");
    let x = r
        .samples::<i32>()
        .map(|s| s.unwrap() as f64 / 8_388_608.0)
        .collect();
    (x, spec.sample_rate)
}

/// A reference that can be delayed by any fraction of a sample, band-limited:
/// a phase ramp on its zero-padded spectrum.
pub struct Reference {
    len: usize,
    spectrum: Vec<Complex<f64>>,
    inverse: std::sync::Arc<dyn realfft::ComplexToReal<f64>>,
}

impl Reference {
    pub fn new(x: &[f64]) -> Self {
        let m = (x.len() + 512).next_power_of_two();
        let mut planner = RealFftPlanner::<f64>::new();
        let forward = planner.plan_fft_forward(m);
        let mut buf = vec![0.0; m];
        buf[..x.len()].copy_from_slice(x);
        let mut spectrum = forward.make_output_vec();
        forward.process(&mut buf, &mut spectrum).unwrap();
        Self {
            len: x.len(),
            spectrum,
            inverse: planner.plan_fft_inverse(m),
        }
    }

    pub fn delayed(&self, d: f64) -> Vec<f64> {
        let m = self.inverse.len();
        let mut spec: Vec<Complex<f64>> = self
            .spectrum
            .iter()
            .enumerate()
            .map(|(k, c)| {
                c * Complex::from_polar(1.0 / m as f64, -2.0 * PI * k as f64 * d / m as f64)
            })
            .collect();
        spec[0].im = 0.0;
        spec[m / 2].im = 0.0;
        let mut out = vec![0.0; m];
        self.inverse.process(&mut spec, &mut out).unwrap();
        out
    }

    /// SNR of `ours` against the reference delayed by `d`, over the reference's
    /// length less its edges (the fixtures fade in and out).
    pub fn snr(&self, ours: &[f64], d: f64) -> f64 {
        let r = self.delayed(d);
        let edge = self.len / 40;
        let range = edge + d.ceil() as usize..self.len - edge;
        let sig: f64 = r[range.clone()].iter().map(|v| v * v).sum();
        let err: f64 = range.map(|i| (ours[i] - r[i]).powi(2)).sum();
        db(sig / err)
    }

    /// The best SNR over delays within half a sample of `d` (golden-section
    /// search, to a few thousandths of a sample), and the delay that gives it.
    pub fn best_snr(&self, ours: &[f64], d: f64) -> (f64, f64) {
        let g = (5f64.sqrt() - 1.0) / 2.0;
        let (mut a, mut b) = (d - 0.5, d + 0.5);
        let (mut c, mut e) = (b - g * (b - a), a + g * (b - a));
        let (mut fc, mut fe) = (self.snr(ours, c), self.snr(ours, e));
        for _ in 0..12 {
            if fc > fe {
                (b, e, fe) = (e, c, fc);
                c = b - g * (b - a);
                fc = self.snr(ours, c);
            } else {
                (a, c, fc) = (c, e, fe);
                e = a + g * (b - a);
                fe = self.snr(ours, e);
            }
        }
        // The search brackets `d` but need not land on it.
        let at_d = self.snr(ours, d);
        [(fc, c), (fe, e), (at_d, d)]
            .into_iter()
            .max_by(|x, y| x.0.total_cmp(&y.0))
            .unwrap()
    }
}

pub fn label(rate: u32) -> &'static str {
    match rate {
        8_000 => "8k",
        16_000 => "16k",
        24_000 => "24k",
        44_100 => "44k1",
        48_000 => "48k",
        _ => unreachable!(),
    }
}
