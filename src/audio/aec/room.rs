//! The room-length linear stage that runs before AEC3 (issue 16).
//!
//! AEC3's linear filter models 72 ms after the direct path. A room with RT60 0.5 s keeps
//! 14 % of its echo energy beyond that (-8.7 dB; RT60 0.7 s: -6.2 dB), so AEC3's filter
//! can never remove more than that, that tail is noise to its adaptation, and everything
//! else falls to the suppressor, which then also eats the user's voice in double talk.
//! Lengthening AEC3's own filter does not help in the seconds that matter: its gains are
//! normalised by the filter length, so a 200-300 ms filter needs ten seconds or more of
//! far-end speech to converge, and meanwhile AEC3 trusts it and lets echo through.
//!
//! [`RoomFilter`] covers the whole room instead: 400 ms from just before the direct
//! path, placed by its own delay finder ([`DelayFinder`], GCC-PHAT on the raw signals,
//! so it does not depend on AEC3's view of an already-cancelled microphone). It is a
//! partitioned-block frequency-domain adaptive filter on 10 ms frames (overlap-save,
//! no added latency) with
//! - proportionate step sizes per partition (as in SpeexDSP's MDF): the partitions that
//!   already hold energy, the direct path and the early reverberation, adapt fastest;
//! - two filters: a background one that always adapts and a foreground one that does
//!   the cancelling and takes the background's coefficients only while they cancel
//!   better, so double talk cannot make the output worse than it was;
//! - a step that shrinks as the error outgrows the far end driving the echo (the user
//!   talking) and stops when the far end is silent;
//! - a gradient constraint applied to one partition per frame, round robin (as AEC3).
//!
//! A 400 ms NLMS filter still converges slowly (about 8 dB per second of white noise at
//! best, less on speech), so in the first seconds AEC3's suppressor carries the load as
//! before; from then on AEC3 sees a microphone with the room's tail removed, its short
//! filter models what is left (the clipping loudspeaker's distortion, the misadjustment)
//! and it needs far less suppression, which is what keeps the user's voice in double
//! talk.

use realfft::num_complex::Complex32;
use realfft::{ComplexToReal, RealFftPlanner, RealToComplex};
use std::collections::VecDeque;
use std::sync::Arc;

/// What can be chosen about the room stage.
#[derive(Debug, Clone, PartialEq)]
pub struct RoomSettings {
    /// Span of the filter after its start, ms (rounded to 10 ms partitions).
    pub span_ms: f32,
    /// How far before the found delay the filter starts, ms.
    pub lead_ms: f32,
    /// Longest playback-to-capture delay searched, ms.
    pub max_delay_ms: f32,
    /// Background filter's NLMS step (0-1). 0.2 rather than the faster 0.5: the
    /// misadjustment a larger step leaves during double talk costs the user's voice more
    /// than the faster start gains (tools/aec_reference/README.md).
    pub step: f32,
    /// Top of the adapted band, Hz (the rest is left to AEC3).
    pub max_hz: f32,
    /// Partitions given the gradient constraint per frame.
    pub constrain: usize,
    /// Far-end energy over error energy at which the step is full.
    pub dt_ratio: f32,
    /// The foreground follows the background when its error is below this share of the
    /// foreground's...
    pub copy_ratio: f32,
    /// ...by this fraction of the difference (1: a copy).
    pub copy_blend: f32,
    /// The delay finder starts on 0.2 s of microphone and searches every 0.1 s (it then
    /// reports in 0.3-0.8 s, not 1.75 s). Off: on the tuning rooms it fixed room 10 but
    /// cost room 13 8 dB of ERLE (docs/echo-cancellation.md).
    pub fast_start: bool,
}

impl Default for RoomSettings {
    fn default() -> Self {
        Self {
            span_ms: 400.0,
            lead_ms: 30.0,
            max_delay_ms: 500.0,
            step: 0.2,
            max_hz: 10_000.0,
            constrain: 1,
            dt_ratio: 1.0,
            copy_ratio: 0.8,
            copy_blend: 1.0,
            fast_start: false,
        }
    }
}

/// Finds the playback-to-capture delay: GCC-PHAT between the far end and the microphone,
/// decimated to 6 kHz, over the last second, with the cross-spectrum accumulated over
/// updates. Reports the earliest strong arrival (the direct path, not the loudest
/// reflection). With `fast_start` it starts on the first 0.2 s of microphone, with the far
/// end before the start taken as the silence it was, and searches every 0.1 s until two
/// updates agree.
pub struct DelayFinder {
    dec: usize,
    win: usize,
    max_lag: usize,
    far: VecDeque<f32>,
    mic: VecDeque<f32>,
    acc_far: (f32, usize),
    acc_mic: (f32, usize),
    fft: Arc<dyn RealToComplex<f32>>,
    ifft: Arc<dyn ComplexToReal<f32>>,
    cross: Vec<Complex32>,
    buf_f: Vec<f32>,
    buf_m: Vec<f32>,
    spec_f: Vec<Complex32>,
    spec_m: Vec<Complex32>,
    corr: Vec<f32>,
    band: (usize, usize),
    since: usize,
    every: usize,
    /// Shortest microphone window searched, and the update interval until found.
    min_win: usize,
    every_searching: usize,
    /// Raised-cosine ramp at each end of the microphone window (fast start only).
    taper: usize,
    /// Delay in samples at the input rate, once found.
    estimate: Option<usize>,
    candidate: Option<(usize, u32)>,
    /// Largest difference between two updates that still agree, in samples.
    max_jump: usize,
    /// Peak over RMS of the last correlation, and the lag it pointed at (diagnostics).
    last: (f32, usize),
}

impl DelayFinder {
    /// `rate`: input rate; `max_delay_s`: longest delay searched; `fast_start`: see
    /// [`RoomSettings::fast_start`].
    pub fn new(rate: usize, max_delay_s: f32, fast_start: bool) -> Self {
        let dec = 4;
        let r = rate / dec;
        let win = r; // one second
        let max_lag = (max_delay_s * r as f32) as usize;
        let size = (2 * win + max_lag).next_power_of_two();
        let mut planner = RealFftPlanner::<f32>::new();
        let fft = planner.plan_fft_forward(size);
        let ifft = planner.plan_fft_inverse(size);
        let bin = |hz: f32| (hz * size as f32 / r as f32) as usize;
        Self {
            dec,
            win,
            max_lag,
            far: VecDeque::with_capacity(win + max_lag + 1),
            mic: VecDeque::with_capacity(win + 1),
            acc_far: (0.0, 0),
            acc_mic: (0.0, 0),
            cross: vec![Complex32::default(); size / 2 + 1],
            buf_f: vec![0.0; size],
            buf_m: vec![0.0; size],
            spec_f: fft.make_output_vec(),
            spec_m: fft.make_output_vec(),
            corr: vec![0.0; size],
            fft,
            ifft,
            band: (bin(100.0), bin(2_500.0)),
            since: 0,
            every: rate / 4,
            min_win: if fast_start { r / 5 } else { win },
            every_searching: if fast_start { rate / 10 } else { rate / 4 },
            taper: if fast_start { r / 40 } else { 0 },
            estimate: None,
            candidate: None,
            max_jump: rate / 80,
            last: (0.0, 0),
        }
    }

    pub fn estimate(&self) -> Option<usize> {
        self.estimate
    }

    /// Peak over RMS of the last correlation and the delay it pointed at, in samples.
    pub fn last(&self) -> (f32, usize) {
        self.last
    }

    /// One frame of the far end as played.
    pub fn push_far(&mut self, far: &[f32]) {
        decimate(far, &mut self.acc_far, self.dec, &mut self.far);
        while self.far.len() > self.win + self.max_lag {
            self.far.pop_front();
        }
    }

    /// One frame of the microphone, captured while the last far frame played.
    pub fn push_mic(&mut self, mic: &[f32]) {
        decimate(mic, &mut self.acc_mic, self.dec, &mut self.mic);
        while self.mic.len() > self.win {
            self.mic.pop_front();
        }
        self.since += mic.len();
        // Once found, the delay only needs watching.
        let every = if self.estimate.is_some() {
            4 * self.every
        } else {
            self.every_searching
        };
        if self.since >= every && self.mic.len() >= self.min_win {
            self.since = 0;
            self.update();
        }
    }

    fn update(&mut self) {
        // The microphone window (up to a second) and the far end from `max_lag` before
        // it; in the first second, the far end before the start is the silence it was.
        let len = self.mic.len();
        let far_len = self.far.len();
        let far_from = far_len.saturating_sub(len + self.max_lag);
        let pad = (len + self.max_lag).saturating_sub(far_len);
        if pad > 0 && self.taper == 0 {
            return;
        }
        // Only when the far end is really playing over the window.
        let tail = self.far.range(far_len.saturating_sub(len)..);
        let e_far: f32 = tail.map(|x| x * x).sum::<f32>() / len as f32;
        if e_far < 1e-5 {
            return;
        }
        self.buf_f.fill(0.0);
        self.buf_m.fill(0.0);
        for (b, &x) in self.buf_f[pad..].iter_mut().zip(self.far.range(far_from..)) {
            *b = x;
        }
        for (b, &x) in self.buf_m.iter_mut().zip(self.mic.iter()) {
            *b = x;
        }
        // Tapered ends: whitened, a window's steps correlate with the far end's start
        // at the lag that lines the two up (a false 0 ms in the first second).
        let ramp = self.taper.min(len / 2);
        for i in 0..ramp {
            let w = 0.5 - 0.5 * (std::f32::consts::PI * i as f32 / ramp as f32).cos();
            self.buf_m[i] *= w;
            self.buf_m[len - 1 - i] *= w;
            if pad > 0 {
                self.buf_f[pad + i] *= w;
            }
        }
        let _ = self.fft.process(&mut self.buf_f, &mut self.spec_f);
        let _ = self.fft.process(&mut self.buf_m, &mut self.spec_m);
        let (lo, hi) = self.band;
        for (k, c) in self.cross.iter_mut().enumerate() {
            if (lo..hi).contains(&k) {
                let x = self.spec_f[k] * self.spec_m[k].conj();
                // Each window's phase, whitened, weighs the same whatever its level.
                *c = *c * 0.7 + x / (x.norm() + 1e-12);
            } else {
                *c = Complex32::default();
            }
        }
        let mut spec: Vec<Complex32> = self.cross.iter().map(|c| *c / (c.norm() + 1e-12)).collect();
        let _ = self.ifft.process(&mut spec, &mut self.corr);
        // c[j] peaks at j = max_lag - delay.
        let lags = &self.corr[..=self.max_lag];
        let (mut best, mut peak) = (0, f32::MIN);
        for (j, &v) in lags.iter().enumerate() {
            if v > peak {
                peak = v;
                best = j;
            }
        }
        let rms = (lags.iter().map(|v| v * v).sum::<f32>() / lags.len() as f32).sqrt();
        self.last = (peak / rms.max(1e-20), (self.max_lag - best) * self.dec);
        // A window that does not yet reach back the whole search is short and pairs
        // the small lags with more samples than the large ones: its noise peaks there,
        // and overlapping windows repeat it, so it needs a clearer peak.
        let clear = if pad > 0 { PARTIAL_PEAK } else { 4.0 };
        if peak < clear * rms {
            return;
        }
        // The earliest arrival nearly as strong as the peak, up to 60 ms before it: the
        // direct path can be weaker than the first reflection, but not by much.
        let reach = (best + self.win * 6 / 100).min(self.max_lag);
        let first = (best..=reach)
            .rev()
            .find(|&j| lags[j] >= 0.7 * peak)
            .unwrap_or(best);
        let delay = (self.max_lag - first) * self.dec;
        // Two agreeing updates in a row before it counts.
        match self.candidate {
            Some((d, n)) if d.abs_diff(delay) <= self.max_jump => {
                self.candidate = Some((delay, n + 1));
                if n + 1 >= 2 {
                    self.estimate = Some(delay);
                }
            }
            _ => self.candidate = Some((delay, 1)),
        }
    }
}

/// Peak over RMS a window shorter than the search needs (see `update`).
const PARTIAL_PEAK: f32 = 7.0;

fn decimate(x: &[f32], acc: &mut (f32, usize), dec: usize, out: &mut VecDeque<f32>) {
    for &v in x {
        acc.0 += v;
        acc.1 += 1;
        if acc.1 == dec {
            out.push_back(acc.0 / dec as f32);
            *acc = (0.0, 0);
        }
    }
}

/// Frames between recomputations of the proportionate steps.
const PROP_EVERY: usize = 2;

/// The room-length linear canceller (see the module docs).
pub struct RoomFilter {
    n: usize,
    bins: usize,
    parts: usize,
    lead: usize,
    step: f32,
    fft: Arc<dyn RealToComplex<f32>>,
    ifft: Arc<dyn ComplexToReal<f32>>,
    finder: DelayFinder,
    /// The last frame of far end, for the overlapping FFT.
    far_prev: Vec<f32>,
    /// Reference spectra, newest first: `spectra[j]` is the frame `j` frames ago.
    spectra: VecDeque<Vec<Complex32>>,
    /// Energy of each far frame, same order as `spectra`.
    far_energy: VecDeque<f32>,
    max_frames: usize,
    /// Filter start in frames of bulk delay, once the delay is known.
    start: Option<usize>,
    /// The delay `start` was placed for.
    placed: Option<usize>,
    fg: Vec<Complex32>,
    bg: Vec<Complex32>,
    power: Vec<f32>,
    gain: Vec<Complex32>,
    prop: Vec<f32>,
    constrain_next: usize,
    constrain: usize,
    frames: usize,
    dt_ratio: f32,
    copy_ratio: f32,
    copy_blend: f32,
    // Scratch.
    time: Vec<f32>,
    spec: Vec<Complex32>,
    est_fg: Vec<f32>,
    est_bg: Vec<f32>,
    err_bg: Vec<f32>,
    // Smoothed energies for the foreground/background decision.
    s_ff: f32,
    s_bb: f32,
    s_yy: f32,
    better: u32,
    worse: u32,
}

impl RoomFilter {
    pub fn new(settings: &RoomSettings, rate: usize, frame: usize) -> Self {
        let n = frame;
        let m = 2 * n;
        let mut planner = RealFftPlanner::<f32>::new();
        let fft = planner.plan_fft_forward(m);
        let ifft = planner.plan_fft_inverse(m);
        let ms = |v: f32| (v * rate as f32 / 1000.0) as usize;
        let parts = ms(settings.span_ms).div_ceil(n).max(1);
        let bins = ((settings.max_hz * m as f32 / rate as f32) as usize + 1).min(n + 1);
        let max_frames = ms(settings.max_delay_ms).div_ceil(n) + parts + 1;
        Self {
            n,
            bins,
            parts,
            lead: ms(settings.lead_ms),
            step: settings.step,
            finder: DelayFinder::new(rate, settings.max_delay_ms / 1000.0, settings.fast_start),
            far_prev: vec![0.0; n],
            spectra: VecDeque::with_capacity(max_frames + 1),
            far_energy: VecDeque::with_capacity(max_frames + 1),
            max_frames,
            start: None,
            placed: None,
            fg: vec![Complex32::default(); parts * bins],
            bg: vec![Complex32::default(); parts * bins],
            power: vec![0.0; bins],
            gain: vec![Complex32::default(); bins],
            prop: vec![1.0 / parts as f32; parts],
            constrain_next: 0,
            constrain: settings.constrain,
            frames: 0,
            dt_ratio: settings.dt_ratio,
            copy_ratio: settings.copy_ratio,
            copy_blend: settings.copy_blend,
            time: vec![0.0; m],
            spec: fft.make_output_vec(),
            est_fg: vec![0.0; n],
            est_bg: vec![0.0; n],
            err_bg: vec![0.0; n],
            s_ff: 0.0,
            s_bb: 0.0,
            s_yy: 0.0,
            better: 0,
            worse: 0,
            fft,
            ifft,
        }
    }

    /// The delay the filter is placed for, in samples.
    pub fn delay(&self) -> Option<usize> {
        self.placed
    }

    pub fn finder(&self) -> &DelayFinder {
        &self.finder
    }

    /// One frame of the far end as played.
    pub fn push_far(&mut self, far: &[f32]) {
        let n = self.n;
        debug_assert_eq!(far.len(), n);
        // Spectrum of [previous far frame, this far frame].
        self.time[..n].copy_from_slice(&self.far_prev);
        self.time[n..].copy_from_slice(far);
        self.far_prev.copy_from_slice(far);
        let _ = self.fft.process(&mut self.time, &mut self.spec);
        let mut x = if self.spectra.len() >= self.max_frames {
            self.spectra.pop_back().expect("non-empty")
        } else {
            vec![Complex32::default(); self.bins]
        };
        x.copy_from_slice(&self.spec[..self.bins]);
        self.spectra.push_front(x);
        self.far_energy.push_front(far.iter().map(|v| v * v).sum());
        self.far_energy.truncate(self.max_frames);
        self.finder.push_far(far);
    }

    /// One frame of the microphone, captured while the last far frame played; writes it
    /// with the room's echo removed to `out`.
    pub fn process(&mut self, mic: &[f32], out: &mut [f32]) {
        let n = self.n;
        debug_assert!(mic.len() == n && out.len() == n);
        self.finder.push_mic(mic);
        if let Some(d) = self.finder.estimate() {
            self.place(d);
        }
        let Some(start) = self.start else {
            out.copy_from_slice(mic);
            return;
        };
        if self.spectra.len() < start + self.parts {
            out.copy_from_slice(mic);
            return;
        }

        // Reference energy per bin over the filter's span, for the NLMS normalisation.
        self.power.fill(0.0);
        for p in 0..self.parts {
            for (e, x) in self.power.iter_mut().zip(&self.spectra[start + p]) {
                *e += x.norm_sqr();
            }
        }

        self.estimate(start, true);
        self.estimate(start, false);
        let mut e_ff = 0.0;
        let mut e_bb = 0.0;
        let mut e_yy = 0.0;
        for i in 0..n {
            let y = mic[i];
            let ef = y - self.est_fg[i];
            let eb = y - self.est_bg[i];
            out[i] = ef;
            self.err_bg[i] = eb;
            e_ff += ef * ef;
            e_bb += eb * eb;
            e_yy += y * y;
        }
        // Step control (after SpeexDSP's MDF): the step shrinks as the error outgrows the
        // far end driving the echo, i.e. when the user talks, and stops when the far end
        // is silent.
        let far: f32 = self
            .far_energy
            .range(start..start + self.parts)
            .sum::<f32>()
            / self.parts as f32;
        let step = self.step * (self.dt_ratio * far / (e_bb + 1e-9)).min(1.0);
        self.adapt(start, step);
        self.control(e_ff, e_bb, e_yy);
    }

    /// Positions the filter for a bulk delay of `d` samples; an existing filter is shifted
    /// so its coefficients keep their lags.
    fn place(&mut self, d: usize) {
        let want = d.saturating_sub(self.lead) / self.n;
        let want = want.min(self.max_frames - self.parts - 1);
        match self.start {
            None => {
                self.start = Some(want);
                self.placed = Some(d);
            }
            Some(s) => {
                // Keep the filter where it is while the delay stays in its first half:
                // a later estimate is more often a reflection than a new device delay,
                // and moving would drop the direct path the filter has learnt.
                let covered = s * self.n..=s * self.n + self.parts * self.n / 2;
                if covered.contains(&d) {
                    return;
                }
                self.placed = Some(d);
                let shift = want as isize - s as isize;
                for w in [&mut self.fg, &mut self.bg] {
                    shift_parts(w, self.bins, shift);
                }
                self.start = Some(want);
            }
        }
    }

    /// Echo estimate of the foreground (`fg`) or background filter for this frame.
    fn estimate(&mut self, start: usize, fg: bool) {
        let (bins, n) = (self.bins, self.n);
        let w = if fg { &self.fg } else { &self.bg };
        self.spec.fill(Complex32::default());
        for p in 0..self.parts {
            let x = &self.spectra[start + p];
            let wp = &w[p * bins..(p + 1) * bins];
            for ((s, a), b) in self.spec.iter_mut().zip(x).zip(wp) {
                *s += a * b;
            }
        }
        self.spec[0].im = 0.0;
        if let Some(last) = self.spec.last_mut() {
            last.im = 0.0;
        }
        let _ = self.ifft.process(&mut self.spec, &mut self.time);
        let scale = 1.0 / (2 * n) as f32;
        let dst = if fg {
            &mut self.est_fg
        } else {
            &mut self.est_bg
        };
        for (d, t) in dst.iter_mut().zip(&self.time[n..]) {
            *d = t * scale;
        }
    }

    fn adapt(&mut self, start: usize, step: f32) {
        let (bins, n) = (self.bins, self.n);
        // Error spectrum: [0; n] followed by the background error.
        self.time[..n].fill(0.0);
        self.time[n..].copy_from_slice(&self.err_bg);
        let _ = self.fft.process(&mut self.time, &mut self.spec);
        // Proportionate steps: partitions with energy adapt faster. The proportions move
        // slowly, so they are recomputed every few frames.
        if self.frames.is_multiple_of(PROP_EVERY) {
            let mut max_norm = 0.0f32;
            for p in 0..self.parts {
                // Eight lanes, so the reduction vectorises.
                let mut acc = [0.0f32; 8];
                for chunk in self.bg[p * bins..(p + 1) * bins].chunks(8) {
                    for (a, c) in acc.iter_mut().zip(chunk) {
                        *a += c.norm_sqr();
                    }
                }
                let e = acc.iter().sum::<f32>().sqrt();
                self.prop[p] = e;
                max_norm = max_norm.max(e);
            }
            let floor = 0.1 * max_norm + 1e-6;
            let mut sum = 0.0;
            for v in &mut self.prop {
                *v += floor;
                sum += *v;
            }
            // Uniform proportions give plain NLMS.
            for v in &mut self.prop {
                *v *= self.parts as f32 / sum;
            }
        }
        self.frames += 1;
        let reg = 1e-4 * (2 * n * self.parts) as f32;
        let g = &mut self.gain;
        for ((g, e), p) in g.iter_mut().zip(&self.spec).zip(&self.power) {
            *g = e * (step / (p + reg));
        }
        for p in 0..self.parts {
            let x = &self.spectra[start + p];
            let mu = self.prop[p];
            let wp = &mut self.bg[p * bins..(p + 1) * bins];
            for ((w, a), gk) in wp.iter_mut().zip(x).zip(&self.gain) {
                *w += a.conj() * gk * mu;
            }
        }
        // Keep partitions causal n-tap filters: `constrain` of them per frame, round robin.
        for _ in 0..self.constrain.min(self.parts) {
            let p = self.constrain_next;
            self.constrain_next = (p + 1) % self.parts;
            self.spec.fill(Complex32::default());
            self.spec[..bins].copy_from_slice(&self.bg[p * bins..(p + 1) * bins]);
            self.spec[0].im = 0.0;
            if let Some(last) = self.spec.last_mut() {
                last.im = 0.0;
            }
            let _ = self.ifft.process(&mut self.spec, &mut self.time);
            let scale = 1.0 / (2 * n) as f32;
            for t in &mut self.time[..n] {
                *t *= scale;
            }
            self.time[n..].fill(0.0);
            let _ = self.fft.process(&mut self.time, &mut self.spec);
            self.bg[p * bins..(p + 1) * bins].copy_from_slice(&self.spec[..bins]);
        }
    }

    /// Foreground/background decision (after SpeexDSP's MDF): the foreground takes the
    /// background's coefficients when they have cancelled better for a while; the
    /// background restarts from the foreground when it has wandered off (double talk).
    fn control(&mut self, e_ff: f32, e_bb: f32, e_yy: f32) {
        const A: f32 = 0.5;
        self.s_ff = A * self.s_ff + (1.0 - A) * e_ff;
        self.s_bb = A * self.s_bb + (1.0 - A) * e_bb;
        self.s_yy = A * self.s_yy + (1.0 - A) * e_yy;
        let tiny = 1e-9 * self.n as f32;
        if self.s_yy < tiny {
            return;
        }
        if self.s_bb < self.copy_ratio * self.s_ff {
            self.better += 1;
            self.worse = 0;
            if self.better >= 2 {
                let b = self.copy_blend;
                if b >= 1.0 {
                    self.fg.copy_from_slice(&self.bg);
                } else {
                    for (f, g) in self.fg.iter_mut().zip(&self.bg) {
                        *f += (g - *f) * b;
                    }
                }
                self.s_ff = self.s_bb;
                self.better = 0;
            }
        } else {
            self.better = 0;
            if self.s_bb > 4.0 * self.s_ff && self.s_bb > self.s_yy {
                self.worse += 1;
                if self.worse >= 3 {
                    self.bg.copy_from_slice(&self.fg);
                    self.s_bb = self.s_ff;
                    self.worse = 0;
                }
            } else {
                self.worse = 0;
            }
        }
        // A foreground that adds echo instead of removing it starts over.
        if self.s_ff > 2.0 * self.s_yy {
            self.fg.fill(Complex32::default());
            self.s_ff = self.s_yy;
        }
    }
}

/// Moves partitions `shift` places later (negative: earlier), zero-filling.
fn shift_parts(w: &mut [Complex32], bins: usize, shift: isize) {
    let parts = w.len() / bins;
    if shift == 0 {
        return;
    }
    if shift.unsigned_abs() >= parts {
        w.fill(Complex32::default());
        return;
    }
    let s = shift.unsigned_abs() * bins;
    if shift > 0 {
        // The filter starts later: coefficients move to lower partition indices.
        w.copy_within(s.., 0);
        let len = w.len();
        w[len - s..].fill(Complex32::default());
    } else {
        w.copy_within(..w.len() - s, s);
        w[..s].fill(Complex32::default());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audio::aec::synth::{room_echo, Lcg};

    /// Noise with speech's slope (a one-pole low-pass): the stage leaves the top of the
    /// band (above `max_hz`) to AEC3, as speech has little there.
    fn speechy_noise(seed: u64, n: usize, amp: f32) -> Vec<f32> {
        let mut rng = Lcg(seed);
        let mut y = 0.0f32;
        (0..n)
            .map(|_| {
                y = 0.9 * y + amp * rng.gauss() as f32;
                y
            })
            .collect()
    }

    /// ERLE of the stage alone, per second.
    fn run(far: &[f32], mic: &[f32]) -> (Vec<f64>, Option<usize>) {
        let mut room = RoomFilter::new(&RoomSettings::default(), 24_000, 240);
        let mut out = vec![0.0; 240];
        let (mut e_in, mut e_out, mut erle) = (0.0f64, 0.0f64, vec![]);
        for (f, (x, y)) in far.chunks_exact(240).zip(mic.chunks_exact(240)).enumerate() {
            room.push_far(x);
            room.process(y, &mut out);
            e_in += y.iter().map(|v| (*v as f64).powi(2)).sum::<f64>();
            e_out += out.iter().map(|v| (*v as f64).powi(2)).sum::<f64>();
            if (f + 1) % 100 == 0 {
                erle.push(10.0 * (e_in / e_out.max(1e-20)).log10());
                (e_in, e_out) = (0.0, 0.0);
            }
        }
        (erle, room.delay())
    }

    #[test]
    fn finds_the_delay_and_converges_in_a_room() {
        let far = speechy_noise(5, 24_000 * 8, 0.03);
        let mic = room_echo(&far, 0.12, 0.5, 9);
        let (erle, delay) = run(&far, &mic);
        println!("{erle:.1?} delay {delay:?}");
        // The direct path at 120 ms (2880 samples), not a later reflection.
        assert!(delay.unwrap().abs_diff(2880) <= 48, "{delay:?}");
        // A 72 ms filter cannot remove more than 8.7 dB of this room's echo.
        assert!(erle[7] > 12.0, "{erle:.1?}");
    }

    #[test]
    fn a_fast_start_finds_the_direct_path_within_a_second() {
        let far = speechy_noise(5, 24_000 * 3, 0.03);
        let mic = room_echo(&far, 0.12, 0.5, 9);
        let mut finder = DelayFinder::new(24_000, 0.5, true);
        let mut found = None;
        for (f, (x, y)) in far.chunks_exact(240).zip(mic.chunks_exact(240)).enumerate() {
            finder.push_far(x);
            finder.push_mic(y);
            if found.is_none() {
                found = finder.estimate().map(|d| (f + 1, d));
            }
        }
        let (frames, delay) = found.expect("no delay found in 3 s");
        println!("found {delay} samples after {frames} frames");
        assert!(frames <= 100, "found only after {frames} frames");
        assert!(delay.abs_diff(2880) <= 48, "{delay}");
    }

    #[test]
    fn the_user_talking_does_not_undo_it() {
        let n = 24_000 * 10;
        let far = speechy_noise(6, n, 0.03);
        let echo = room_echo(&far, 0.08, 0.3, 4);
        // From 6 s on, a near-end talker 6 dB louder than the echo.
        let talker = speechy_noise(7, n, 0.03);
        let near: Vec<f32> = (0..n)
            .map(|i| if i >= 24_000 * 6 { talker[i] } else { 0.0 })
            .collect();
        let mic: Vec<f32> = echo.iter().zip(&near).map(|(e, v)| e + v).collect();
        let mut room = RoomFilter::new(&RoomSettings::default(), 24_000, 240);
        let mut out = vec![0.0; n];
        for ((x, y), o) in far
            .chunks_exact(240)
            .zip(mic.chunks_exact(240))
            .zip(out.chunks_exact_mut(240))
        {
            room.push_far(x);
            room.process(y, o);
        }
        // Echo left in the output over the last two seconds: output minus the user.
        let tail = 24_000 * 8..n;
        let e = |x: &[f32]| {
            x[tail.clone()]
                .iter()
                .map(|v| (*v as f64).powi(2))
                .sum::<f64>()
        };
        let residual: Vec<f32> = out.iter().zip(&near).map(|(o, v)| o - v).collect();
        let erle = 10.0 * (e(&echo) / e(&residual)).log10();
        println!("echo removed during double talk: {erle:.1} dB");
        assert!(erle > 10.0, "{erle:.1} dB");
    }

    #[test]
    fn shifting_keeps_lags() {
        let mut w: Vec<Complex32> = (0..4).map(|i| Complex32::new(i as f32, 0.0)).collect();
        shift_parts(&mut w, 1, 1);
        assert_eq!(
            w.iter().map(|c| c.re).collect::<Vec<_>>(),
            [1.0, 2.0, 3.0, 0.0]
        );
        shift_parts(&mut w, 1, -2);
        assert_eq!(
            w.iter().map(|c| c.re).collect::<Vec<_>>(),
            [0.0, 0.0, 1.0, 2.0]
        );
    }
}
