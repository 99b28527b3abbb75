//! Reproducible echo scenes made in Rust, for tests and the bench (no Python, no files).

use super::SAMPLE_RATE;
use realfft::RealFftPlanner;

/// A room: far end delayed by `delay_s`, through a random response decaying by 60 dB in
/// `rt60_s` with a strong direct path, at -6 dB; the same recipe as `echo_make_scene.py`.
pub fn room_echo(far: &[f32], delay_s: f64, rt60_s: f64, seed: u64) -> Vec<f32> {
    let r = SAMPLE_RATE as f64;
    let mut rng = Lcg(seed);
    let len = ((rt60_s * r) as usize).max(1);
    let mut ir: Vec<f64> = (0..len)
        .map(|i| rng.gauss() * (-6.9 * i as f64 / (rt60_s * r)).exp())
        .collect();
    ir[0] = 3.0;
    let gain = 0.5 / ir.iter().map(|x| x * x).sum::<f64>().sqrt();
    let mut full = vec![0.0; (delay_s * r) as usize];
    full.extend(ir.iter().map(|h| h * gain));
    let far64: Vec<f64> = far.iter().map(|&x| x as f64).collect();
    fft_convolve(&far64, &full)[..far.len()]
        .iter()
        .map(|&x| x as f32)
        .collect()
}

/// A far/mic pair: amplitude-modulated noise as the far end, its room echo, and a
/// near-end talker (a gliding tone) over the second half.
pub fn synthetic_room(secs: f64, delay_s: f64, rt60_s: f64) -> (Vec<f32>, Vec<f32>) {
    let r = SAMPLE_RATE as f64;
    let n = (secs * r) as usize;
    let mut rng = Lcg(0x2545_F491_4F6C_DD1D);
    let talk = |i: usize, rate: f64| {
        0.5 + 0.5
            * (2.0 * std::f64::consts::PI * rate * i as f64 / r)
                .sin()
                .max(0.0)
    };
    let far: Vec<f32> = (0..n)
        .map(|i| (0.2 * rng.gauss() * talk(i, 3.0)) as f32)
        .collect();
    let mut mic = room_echo(&far, delay_s, rt60_s, 7);
    for (i, m) in mic.iter_mut().enumerate().skip(n / 2) {
        let t = i as f64 / r;
        *m += (0.15 * (2.0 * std::f64::consts::PI * (200.0 + 20.0 * t) * t).sin() * talk(i, 2.0))
            as f32;
    }
    (far, mic)
}

/// The inverse FFT (unnormalised, length `m`) of `A·B`, or of `A·conj(B)`
/// for a correlation, zero-padded to `m` ≥ `a.len() + b.len() - 1`.
pub(crate) fn fft_product(a: &[f64], b: &[f64], m: usize, conjugate_b: bool) -> Vec<f64> {
    let mut planner = RealFftPlanner::<f64>::new();
    let (fwd, inv) = (planner.plan_fft_forward(m), planner.plan_fft_inverse(m));
    let spectrum = |x: &[f64]| {
        let mut buf = vec![0.0; m];
        buf[..x.len()].copy_from_slice(x);
        let mut s = fwd.make_output_vec();
        fwd.process(&mut buf, &mut s)
            .expect("buffers sized by the plan");
        s
    };
    let (fa, fb) = (spectrum(a), spectrum(b));
    let mut prod: Vec<_> = fa
        .iter()
        .zip(&fb)
        .map(|(x, y)| if conjugate_b { x * y.conj() } else { x * y })
        .collect();
    // The inverse of a real signal's spectrum needs real DC and Nyquist bins.
    prod[0].im = 0.0;
    prod[m / 2].im = 0.0;
    let mut out = vec![0.0; m];
    inv.process(&mut prod, &mut out)
        .expect("buffers sized by the plan");
    out
}

/// Linear convolution by FFT.
pub fn fft_convolve(a: &[f64], b: &[f64]) -> Vec<f64> {
    let n = a.len() + b.len() - 1;
    let m = n.next_power_of_two();
    let mut out = fft_product(a, b, m, false);
    out.truncate(n);
    out.iter_mut().for_each(|x| *x /= m as f64);
    out
}

/// A tiny deterministic generator: scenes must be the same on every machine.
pub struct Lcg(pub u64);

impl Lcg {
    pub fn uniform(&mut self) -> f64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        ((self.0 >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    }
    pub fn gauss(&mut self) -> f64 {
        (-2.0 * self.uniform().ln()).sqrt() * (2.0 * std::f64::consts::PI * self.uniform()).cos()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fft_convolution_matches_direct() {
        let a = [1.0, 2.0, 3.0];
        let b = [0.0, 1.0, 0.5];
        let c = fft_convolve(&a, &b);
        let want = [0.0, 1.0, 2.5, 4.0, 1.5];
        for (x, y) in c.iter().zip(want) {
            assert!((x - y).abs() < 1e-9, "{c:?}");
        }
    }
}
