//! The resampler's quality, measured through its public streaming API as the
//! engine drives it (device rate -> 24 kHz in 10 ms blocks, 24 kHz -> device rate
//! in 80 ms frames):
//! - frequency response: tones up to 0.95 of the lower Nyquist frequency pass
//!   within 1 dB, images and aliases are at least 60 dB down, and the delay the
//!   resampler reports is the delay in its output;
//! - speech against two independent resamplers, sox (`rate -v -L`) and scipy
//!   (`resample_poly`), whose outputs are vendored in tests/fixtures/resample
//!   (made by tools/resample_reference/make_fixtures.py).

use crate::resample_common;
use assistant::audio::resample::StreamResampler;
use resample_common::{db, label, read_fixture, Reference};
use std::f64::consts::PI;

const MODEL: u32 = 24_000;

/// Resample as the engine does: 10 ms blocks into the model rate, 80 ms frames
/// out of it; fed in uneven pieces, then flushed. Returns the output and the
/// delay the resampler reports, in output samples.
fn resample(x: &[f64], rate_in: u32, rate_out: u32) -> (Vec<f64>, f64) {
    let chunk = if rate_out == MODEL {
        rate_in as usize / 100
    } else {
        1920
    };
    let mut r = StreamResampler::new(rate_in, rate_out, chunk).unwrap();
    let delay = r.delay();
    assert!((delay * 1000.0 / rate_out as f64 - r.delay_ms()).abs() < 1e-9);
    let mut out = Vec::with_capacity(x.len() * rate_out as usize / rate_in as usize + 4096);
    let mut buf = vec![0.0f32; 8192];
    let input: Vec<f32> = x.iter().map(|&v| v as f32).collect();
    let mut drain = |r: &mut StreamResampler, out: &mut Vec<f64>| loop {
        let n = r.pop(&mut buf);
        if n == 0 {
            break;
        }
        out.extend(buf[..n].iter().map(|&v| v as f64));
    };
    for piece in input.chunks(chunk * 3 / 2 + 7) {
        r.push(piece);
        drain(&mut r, &mut out);
    }
    r.flush();
    drain(&mut r, &mut out);
    let expected = (x.len() as f64 * rate_out as f64 / rate_in as f64 + delay) as usize;
    assert!(
        out.len() >= expected,
        "{rate_in}->{rate_out}: flush left output behind: {} < {expected}",
        out.len()
    );
    (out, delay)
}

fn tone(f: f64, rate: u32, n: usize) -> Vec<f64> {
    (0..n)
        .map(|i| 0.5 * (2.0 * PI * f * i as f64 / rate as f64).sin())
        .collect()
}

/// Least-squares fit of `y` to a sine at `f`: amplitude, the delay in samples the
/// fitted phase implies (for a 0.5·sin(2πft) input), and the residual's power.
fn fit(y: &[f64], first: usize, f: f64, rate: u32) -> (f64, f64, f64) {
    let w = 2.0 * PI * f / rate as f64;
    let (mut ss, mut sc, mut cc, mut ys, mut yc) = (0.0, 0.0, 0.0, 0.0, 0.0);
    for (i, &v) in y.iter().enumerate() {
        let (s, c) = (w * (first + i) as f64).sin_cos();
        ss += s * s;
        sc += s * c;
        cc += c * c;
        ys += v * s;
        yc += v * c;
    }
    let det = ss * cc - sc * sc;
    let a = (ys * cc - yc * sc) / det;
    let b = (yc * ss - ys * sc) / det;
    let res = y
        .iter()
        .enumerate()
        .map(|(i, &v)| {
            let (s, c) = (w * (first + i) as f64).sin_cos();
            (v - a * s - b * c).powi(2)
        })
        .sum::<f64>()
        / y.len() as f64;
    // a·sin + b·cos = A·sin(wt + φ) with φ = atan2(b, a); a delay d gives φ = -w·d.
    (a.hypot(b), -b.atan2(a) / w, res)
}

/// The steady part of an output: past the start-up and before the flushed tail.
fn steady(y: &[f64], rate_in: u32, rate_out: u32, n_in: usize) -> (usize, &[f64]) {
    let first = rate_out as usize / 20;
    let last = n_in * rate_out as usize / rate_in as usize - rate_out as usize / 50;
    (first, &y[first..last])
}

fn check_response(rate_in: u32, rate_out: u32) {
    let lower_nyquist = rate_in.min(rate_out) as f64 / 2.0;
    let n = rate_in as usize / 4;
    let mut worst_gain = 0.0f64;
    let mut worst_spur = f64::NEG_INFINITY;
    // Passband: gain within 1 dB; everything else in the output (images of the
    // tone for upsampling, aliases, noise) at least 60 dB below it.
    for rel in [0.05, 0.3, 0.6, 0.8, 0.9, 0.95] {
        let f = rel * lower_nyquist;
        let (y, _) = resample(&tone(f, rate_in, n), rate_in, rate_out);
        let (first, seg) = steady(&y, rate_in, rate_out, n);
        let (amp, _, res) = fit(seg, first, f, rate_out);
        let gain = 20.0 * (amp / 0.5).log10();
        let spur = db(res / (amp * amp / 2.0));
        assert!(
            gain.abs() <= 1.0,
            "{rate_in}->{rate_out}: {f:.0} Hz ({rel} of the lower Nyquist) at {gain:+.2} dB"
        );
        assert!(
            spur <= -60.0,
            "{rate_in}->{rate_out}: a {f:.0} Hz tone brings images or noise at {spur:.1} dB"
        );
        if gain.abs() > worst_gain.abs() {
            worst_gain = gain;
        }
        worst_spur = worst_spur.max(spur);
    }
    // Stopband of a downsampler: tones from 1.05 of the output Nyquist frequency up
    // to the input's must not come out (as aliases) above -60 dB.
    let mut worst_alias = f64::NEG_INFINITY;
    if rate_out < rate_in {
        let top = rate_in as f64 / rate_out as f64 - 0.02;
        let mut rels: Vec<f64> = [1.05, 1.1, 1.25, 1.5]
            .into_iter()
            .chain((4..).map(|h| h as f64 / 2.0))
            .take_while(|&r| r < top)
            .collect();
        rels.push(top);
        for rel in rels {
            let f = rel * lower_nyquist;
            let (y, _) = resample(&tone(f, rate_in, n), rate_in, rate_out);
            let (_, seg) = steady(&y, rate_in, rate_out, n);
            let power = seg.iter().map(|v| v * v).sum::<f64>() / seg.len() as f64;
            let alias = db(power / 0.125);
            assert!(alias <= -60.0, "{rate_in}->{rate_out}: {f:.0} Hz ({rel:.2} of the output Nyquist) comes out at {alias:.1} dB");
            worst_alias = worst_alias.max(alias);
        }
    }
    // The reported delay is the delay in the output, to a hundredth of a sample.
    let f = 50.0;
    let (y, delay) = resample(&tone(f, rate_in, rate_in as usize), rate_in, rate_out);
    let (first, seg) = steady(&y, rate_in, rate_out, rate_in as usize);
    let (_, measured, _) = fit(&seg[..seg.len() / 2], first, f, rate_out);
    assert!(
        (measured - delay).abs() < 0.01,
        "{rate_in}->{rate_out}: reports {delay:.3} samples of delay, the output has {measured:.3}"
    );
    eprintln!(
        "{rate_in:>6} -> {rate_out:<6} passband worst {worst_gain:+.3} dB, images/noise {worst_spur:.1} dB, aliases {}, delay {delay:.2} samples ({:.2} ms)",
        if worst_alias.is_finite() { format!("{worst_alias:.1} dB") } else { "-".into() },
        delay * 1000.0 / rate_out as f64
    );
}

#[test]
fn frequency_response_holds_to_095_of_nyquist_for_every_device_rate() {
    for rate in [
        8_000, 11_025, 16_000, 22_050, 32_000, 44_100, 48_000, 88_200, 96_000,
    ] {
        check_response(rate, MODEL);
        check_response(MODEL, rate);
    }
}

#[test]
fn speech_matches_sox_and_scipy_to_and_from_24k() {
    let mut failures = Vec::new();
    let (speech24, r24) = read_fixture("speech_24k.wav");
    assert_eq!(r24, MODEL);
    for rate in [8_000, 16_000, 44_100, 48_000] {
        let floor: f64 = if rate == 8_000 { 30.0 } else { 40.0 };
        let (speech, r) = read_fixture(&format!("speech_{}.wav", label(rate)));
        assert_eq!(r, rate);
        for (input, from, to) in [(&speech, rate, MODEL), (&speech24, MODEL, rate)] {
            let (ours, delay) = resample(input, from, to);
            let load = |tool: &str| {
                let (reference, rr) =
                    read_fixture(&format!("{tool}_{}_to_{}.wav", label(from), label(to)));
                assert_eq!(rr, to);
                Reference::new(&reference)
            };
            let (sox, scipy) = (load("sox"), load("scipy"));
            // How closely two good resamplers agree here. Into 24 kHz (the inputs
            // of the issue) the floor is absolute. Out of 24 kHz to 8 or 16 kHz the
            // model's voice has energy right at the new Nyquist frequency, where
            // resamplers legitimately differ (sox and scipy agree to 31 and 34 dB):
            // there we must agree with each of them within 3 dB of that.
            let agreement = sox.snr(&scipy.delayed(0.0), 0.0);
            let need = if to == MODEL {
                floor
            } else {
                floor.min(agreement - 3.0)
            };
            for (tool, reference) in [("sox", &sox), ("scipy", &scipy)] {
                let reported = reference.snr(&ours, delay);
                let (best, at) = reference.best_snr(&ours, delay);
                eprintln!(
                    "{from:>6} -> {to:<6} vs {tool:<5}: {reported:5.1} dB at the reported delay {delay:.2}, best {best:5.1} dB at {at:.3} (sox vs scipy {agreement:.1} dB, need {need:.1})"
                );
                if best < need {
                    failures.push(format!(
                        "{from}->{to} vs {tool}: {best:.1} dB < {need:.1} dB"
                    ));
                }
                if (at - delay).abs() > 0.1 {
                    failures.push(format!("{from}->{to} vs {tool}: best alignment at {at:.3} samples, reported delay {delay:.3}"));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}
