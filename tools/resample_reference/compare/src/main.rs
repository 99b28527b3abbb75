//! Compare rubato settings for the engine's rate pairs: device rate -> 24 kHz in
//! 10 ms blocks and 24 kHz -> device rate in 80 ms frames. For each setting and
//! pair it prints the gain at 0.95 of the lower Nyquist frequency, the worst gain
//! from 0.05 to 0.95, the worst image/alias/noise level (tones in the passband:
//! all but the tone; tones above 1.05 of the output Nyquist: all of the output),
//! the delay rubato reports and the one measured from a 50 Hz tone's phase, and
//! the CPU time per second of audio and per block.
//!
//! `cargo run --release [filter]` (filter: a substring of the setting's name).

use rubato::audioadapter_buffers::direct::InterleavedSlice;
use rubato::*;
use std::f64::consts::PI;
use std::time::Instant;

struct Stream {
    r: Box<dyn Resampler<f32>>,
    pending: Vec<f32>,
    out_buf: Vec<f32>,
    ready: Vec<f32>,
}

impl Stream {
    fn push(&mut self, input: &[f32]) {
        self.pending.extend_from_slice(input);
        let mut start = 0;
        loop {
            let need = self.r.input_frames_next();
            if self.pending.len() - start < need {
                break;
            }
            let block = &self.pending[start..start + need];
            let inp = InterleavedSlice::new(block, 1, need).unwrap();
            let cap = self.out_buf.len();
            let mut out = InterleavedSlice::new_mut(&mut self.out_buf[..], 1, cap).unwrap();
            let (_, w) = self.r.process_into_buffer(&inp, &mut out, None).unwrap();
            self.ready.extend_from_slice(&self.out_buf[..w]);
            start += need;
        }
        self.pending.drain(..start);
    }
}

#[derive(Clone, Copy, Debug)]
enum Cfg {
    FftDefault,
    FftCustom {
        sub_len: usize,
        window: WindowFunction,
    },
    Sinc {
        n_low: usize,
        window: WindowFunction,
        cutoff: Option<f32>,
        interp: SincInterpolationType,
        os: usize,
    },
}

fn gcd(a: usize, b: usize) -> usize {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

fn make(cfg: Cfg, rin: usize, rout: usize, chunk: usize) -> Stream {
    let r: Box<dyn Resampler<f32>> = match cfg {
        Cfg::FftDefault => {
            Box::new(Fft::<f32>::new(rin, rout, chunk, 1, FixedSync::Input).unwrap())
        }
        Cfg::FftCustom { sub_len, window } => {
            // sub_len in input frames
            let sub = (chunk / sub_len).max(1);
            Box::new(
                Fft::<f32>::new_custom(rin, rout, chunk, sub, 1, window, FixedSync::Input).unwrap(),
            )
        }
        Cfg::Sinc {
            n_low,
            window,
            cutoff,
            interp,
            os,
        } => {
            let len = if rout < rin {
                n_low * rin / rout
            } else {
                n_low
            };
            let os = if os == 0 { rout / gcd(rin, rout) } else { os };
            let mut p = SincInterpolationParameters::new(len, window)
                .oversampling_factor(os)
                .interpolation(interp);
            if let Some(c) = cutoff {
                p = p.f_cutoff(c);
            }
            Box::new(
                Async::<f32>::new_sinc(
                    rout as f64 / rin as f64,
                    1.0,
                    &p,
                    chunk,
                    1,
                    FixedAsync::Input,
                )
                .unwrap(),
            )
        }
    };
    let om = r.output_frames_max();
    Stream {
        r,
        pending: vec![],
        out_buf: vec![0.0; om],
        ready: vec![],
    }
}

fn tone(f: f64, rate: usize, n: usize) -> Vec<f32> {
    (0..n)
        .map(|i| (0.5 * (2.0 * PI * f * i as f64 / rate as f64).sin()) as f32)
        .collect()
}

/// Fit a*sin + b*cos at f; returns (amplitude, phase, residual power).
fn fit(y: &[f32], f: f64, rate: usize, start: usize) -> (f64, f64, f64) {
    let (mut ss, mut sc, mut cc, mut ys, mut yc) = (0.0, 0.0, 0.0, 0.0, 0.0);
    for (i, &v) in y.iter().enumerate() {
        let t = 2.0 * PI * f * (i + start) as f64 / rate as f64;
        let (s, c) = t.sin_cos();
        ss += s * s;
        sc += s * c;
        cc += c * c;
        ys += v as f64 * s;
        yc += v as f64 * c;
    }
    let det = ss * cc - sc * sc;
    let a = (ys * cc - yc * sc) / det;
    let b = (yc * ss - ys * sc) / det;
    let mut res = 0.0;
    for (i, &v) in y.iter().enumerate() {
        let t = 2.0 * PI * f * (i + start) as f64 / rate as f64;
        let (s, c) = t.sin_cos();
        res += (v as f64 - a * s - b * c).powi(2);
    }
    ((a * a + b * b).sqrt(), b.atan2(a), res / y.len() as f64)
}

fn run(cfg: Cfg, rin: usize, rout: usize, chunk: usize, x: &[f32]) -> (Vec<f32>, usize) {
    let mut s = make(cfg, rin, rout, chunk);
    let d = s.r.output_delay();
    for b in x.chunks(chunk.max(1)) {
        s.push(b);
    }
    (s.ready, d)
}

fn measure(cfg: Cfg, rin: usize, rout: usize, chunk: usize) {
    let low = rin.min(rout) as f64 / 2.0;
    let n = rin / 2; // 0.5 s
                     // passband: worst deviation from 0 dB over 0.05..0.95 low nyquist
    let mut worst_pb = 0.0f64;
    let mut at95 = 0.0;
    let mut worst_img = -300.0f64;
    for k in 1..=19 {
        let f = low * k as f64 * 0.05;
        let (y, _) = run(cfg, rin, rout, chunk, &tone(f, rin, n));
        let skip = y.len() / 3;
        let seg = &y[skip..y.len() - 50];
        let (a, _, res) = fit(seg, f, rout, skip);
        let g = 20.0 * (a / 0.5).log10();
        if g.abs() > worst_pb.abs() {
            worst_pb = g;
        }
        if k == 19 {
            at95 = g;
        }
        let img = 10.0 * (res / 0.125).log10();
        worst_img = worst_img.max(img);
    }
    // stopband (down): tones at 1.05.. up to input nyquist of the lower rate -> output power
    if rout < rin {
        let hi = rin as f64 / 2.0;
        let mut f = low * 1.05;
        while f < hi * 0.99 {
            let (y, _) = run(cfg, rin, rout, chunk, &tone(f, rin, n));
            let skip = y.len() / 3;
            let p: f64 = y[skip..y.len() - 50]
                .iter()
                .map(|&v| (v as f64).powi(2))
                .sum::<f64>()
                / (y.len() - 50 - skip) as f64;
            worst_img = worst_img.max(10.0 * (p / 0.125).log10());
            f += low * 0.05;
        }
    }
    // delay: 50 Hz tone phase
    let f = 50.0;
    let (y, d) = run(cfg, rin, rout, chunk, &tone(f, rin, rin));
    let skip = y.len() / 3;
    let (_, ph, _) = fit(&y[skip..y.len() - 50], f, rout, skip);
    // output = sin(2pi f (t - tau)) => phase = -2pi f tau
    let tau = -ph / (2.0 * PI * f) * rout as f64;
    // cost: 20 s of noise-ish signal
    let secs = 20;
    let x: Vec<f32> = (0..rin * secs)
        .map(|i| (i as f32 * 0.37).sin() * 0.3)
        .collect();
    let mut s = make(cfg, rin, rout, chunk);
    let mut blocks = 0;
    let t0 = Instant::now();
    for b in x.chunks(chunk) {
        s.push(b);
        s.ready.clear();
        blocks += 1;
    }
    let el = t0.elapsed().as_secs_f64();
    println!(
        "{:>6}->{:<6} pb95 {:+6.2} dB worst_pb {:+6.2} img/alias {:7.1} dB  delay rep {:4} meas {:7.2} ({:5.2} ms)  cost {:6.2} ms/s {:5.1} us/blk",
        rin, rout, at95, worst_pb, worst_img, d, tau, tau * 1000.0 / rout as f64, el * 1000.0 / secs as f64, el * 1e6 / blocks as f64
    );
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let which = args.get(1).map(String::as_str).unwrap_or("all");
    use SincInterpolationType::*;
    use WindowFunction::*;
    let mut cfgs: Vec<(String, Cfg)> = vec![("fft default (current)".into(), Cfg::FftDefault)];
    for (w, l) in [
        (Blackman, 128),
        (Blackman, 256),
        (BlackmanHarris, 256),
        (BlackmanHarris2, 512),
    ] {
        cfgs.push((
            format!("fft sub {l} {w:?}"),
            Cfg::FftCustom {
                sub_len: l,
                window: w,
            },
        ));
    }
    for (n, w, c) in [
        (128usize, BlackmanHarris2, None), // rubato's default window and automatic cutoff
        (96, Blackman, Some(1.0f32)),
        (104, Blackman, Some(1.0)),
        (112, Blackman, Some(1.0)),
        (112, Blackman, Some(0.99)), // chosen (src/audio/resample.rs)
        (120, Blackman, Some(1.0)),
        (128, Blackman, Some(1.0)),
        (128, Blackman2, Some(1.0)),
        (128, BlackmanHarris, Some(1.0)),
        (144, BlackmanHarris, Some(1.0)),
        (160, BlackmanHarris, Some(1.0)),
        (192, BlackmanHarris2, Some(1.0)),
    ] {
        cfgs.push((
            format!("sinc n_low {n} {w:?} cutoff {c:?} nearest exact"),
            Cfg::Sinc {
                n_low: n,
                window: w,
                cutoff: c,
                interp: Nearest,
                os: 0,
            },
        ));
    }
    cfgs.push((
        "sinc n_low 128 Blackman 1.0 cubic os128".into(),
        Cfg::Sinc {
            n_low: 128,
            window: Blackman,
            cutoff: Some(1.0),
            interp: Cubic,
            os: 128,
        },
    ));
    cfgs.push((
        "sinc n_low 128 Blackman 1.0 linear os256".into(),
        Cfg::Sinc {
            n_low: 128,
            window: Blackman,
            cutoff: Some(1.0),
            interp: Linear,
            os: 256,
        },
    ));
    for (name, cfg) in cfgs {
        if which != "all" && !name.contains(which) {
            continue;
        }
        println!("== {name}");
        for r in [8000, 16000, 44100, 48000, 96000] {
            measure(cfg, r, 24000, r / 100);
            measure(cfg, 24000, r, 1920);
        }
    }
}
