//! Template spotting: each reference take of a name is a sequence of feature vectors,
//! and live audio is matched against every take at once by open-start dynamic time
//! warping (the SPRING recurrence), one column per 10 ms. A match ends where the take
//! ends, so a detection comes as the name is finished, not a window later.

use super::features::{Features, Vector, HOP, N_CEPS, RATE, WIN};

/// A detection: which name, how well it matched, and where it ended.
#[derive(Debug, Clone, PartialEq)]
pub struct Detection {
    pub name: String,
    /// 0..1: one minus the mean frame distance along the best path.
    pub score: f32,
    /// Sample index (24 kHz, counted from the spotter's start) where the name ended.
    pub end_sample: u64,
    /// Feature frames the match spanned.
    pub frames: u32,
}

/// One reference take, trimmed to its voiced part.
pub struct Template {
    pub name: String,
    frames: Vec<Vector>,
    /// Running DTW cost and path length ending at each template frame.
    cost: Vec<f32>,
    len: Vec<u32>,
    next_cost: Vec<f32>,
    next_len: Vec<u32>,
    /// The best recent score, decaying, so takes that end a few frames apart agree.
    peak: f32,
}

/// Frames below this level (dB full scale) count as silence when a take is trimmed.
const TRIM_MARGIN_DB: f32 = 25.0;
/// A take shorter than this after trimming is not a name (150 ms).
pub const MIN_TAKE_FRAMES: usize = 15;
/// Staying on one template frame while the input moves on costs a little more, so a
/// path cannot sit on one well-matching sound.
const STAY_PENALTY: f32 = 0.08;
/// A take's recent best score falls by this much a frame (0.1 in 200 ms).
const PEAK_DECAY: f32 = 0.005;
/// A detection waits this many frames for a better one (the latency it adds).
const HOLD_FRAMES: u64 = 8;
/// After a detection nothing fires for this long (feature frames).
const REFRACTORY_FRAMES: u32 = 100;

impl Template {
    /// From a take's 24 kHz samples: features, then the silence at both ends cut off.
    pub fn from_take(name: &str, samples: &[f32]) -> Result<Self, String> {
        let feats = super::features::clip_features(samples);
        let peak = feats.iter().map(|f| f.1).fold(f32::MIN, f32::max);
        if feats.is_empty() || peak < -60.0 {
            return Err("the take is silent".into());
        }
        let voiced = |f: &(Vector, f32)| f.1 > peak - TRIM_MARGIN_DB;
        let first = feats.iter().position(voiced).unwrap_or(0);
        let last = feats.iter().rposition(voiced).unwrap_or(feats.len() - 1);
        let frames: Vec<Vector> = feats[first..=last].iter().map(|f| f.0).collect();
        if frames.len() < MIN_TAKE_FRAMES {
            return Err(format!(
                "the take holds only {} ms of sound; say the whole name",
                frames.len() * 10
            ));
        }
        let n = frames.len();
        Ok(Self {
            name: name.to_string(),
            frames,
            cost: vec![f32::INFINITY; n],
            len: vec![0; n],
            next_cost: vec![f32::INFINITY; n],
            next_len: vec![0; n],
            peak: 0.0,
        })
    }

    pub fn frames(&self) -> usize {
        self.frames.len()
    }

    fn reset(&mut self) {
        self.peak = 0.0;
        self.cost.fill(f32::INFINITY);
        self.len.fill(0);
    }

    /// One input column; returns the mean cost of the best path ending at the take's
    /// last frame, and its length.
    fn step(&mut self, x: &Vector, xn: f32) -> (f32, u32) {
        let n = self.frames.len();
        for j in 0..n {
            let d = distance(x, xn, &self.frames[j]);
            // Predecessors: a new start (j = 0), the same take frame (stay), the
            // previous one (diagonal), or one skipped (a faster speaker).
            let mut best = if j == 0 {
                (0.0, 0u32)
            } else {
                (f32::INFINITY, 0)
            };
            let mut consider = |c: f32, l: u32, extra: f32| {
                if c.is_finite() {
                    let cand = (c + extra, l);
                    let mean = |p: (f32, u32)| (p.0 + d) / (p.1 + 1) as f32;
                    if !best.0.is_finite() || mean(cand) < mean(best) {
                        best = cand;
                    }
                }
            };
            consider(self.cost[j], self.len[j], STAY_PENALTY);
            if j >= 1 {
                consider(self.cost[j - 1], self.len[j - 1], 0.0);
            }
            if j >= 2 {
                consider(self.cost[j - 2], self.len[j - 2], 0.0);
            }
            self.next_cost[j] = best.0 + d;
            self.next_len[j] = best.1 + 1;
        }
        std::mem::swap(&mut self.cost, &mut self.next_cost);
        std::mem::swap(&mut self.len, &mut self.next_len);
        let l = self.len[n - 1];
        (self.cost[n - 1] / l.max(1) as f32, l)
    }
}

fn norm(v: &Vector) -> f32 {
    v.iter().map(|a| a * a).sum::<f32>().sqrt().max(1e-6)
}

/// Cosine distance, 0 (same direction) to 2 (opposite).
fn distance(x: &Vector, xn: f32, t: &Vector) -> f32 {
    let dot: f32 = (0..N_CEPS).map(|i| x[i] * t[i]).sum();
    1.0 - dot / (xn * norm(t))
}

/// The live detector: feed it audio, it reports names.
pub struct Spotter {
    features: Features,
    templates: Vec<Template>,
    pub threshold: f32,
    /// Feature frames fed.
    frame_index: u64,
    quiet_until: u64,
    /// The best score seen for each name since the last [`Spotter::take_best`] (for
    /// tuning: how close a near miss came).
    best: Vec<(String, f32)>,
    /// The best detection of the last few frames, fired once nothing beats it.
    candidate: Option<Detection>,
    candidate_at: u64,
}

/// The default threshold, from 25 minutes of fixtures over four seeds
/// (tools/wake_fixtures): the enrolled voice's names score about 0.6–0.8, the loudest
/// other speech up to about 0.68; at 0.66 it caught 83 % with one false wake
/// (`assistant wake test` prints the scores to tune it).
pub const DEFAULT_THRESHOLD: f32 = 0.66;

impl Spotter {
    pub fn new(templates: Vec<Template>, threshold: f32) -> Self {
        Self {
            features: Features::new(),
            templates,
            threshold,
            frame_index: 0,
            quiet_until: 0,
            best: Vec::new(),
            candidate: None,
            candidate_at: 0,
        }
    }

    pub fn names(&self) -> Vec<String> {
        let mut n: Vec<String> = self.templates.iter().map(|t| t.name.clone()).collect();
        n.dedup();
        n
    }

    pub fn is_empty(&self) -> bool {
        self.templates.is_empty()
    }

    /// Feed 24 kHz mono samples; detections are pushed to `found`.
    pub fn push(&mut self, samples: &[f32], found: &mut Vec<Detection>) {
        let Self {
            features,
            templates,
            threshold,
            frame_index,
            quiet_until,
            best,
            candidate,
            candidate_at,
        } = self;
        features.push(samples, |x, _db| {
            *frame_index += 1;
            let xn = norm(x);
            let mut top: Option<(usize, f32, u32)> = None;
            for t in templates.iter_mut() {
                let (mean, len) = t.step(x, xn);
                // A path much shorter than the take is a fragment of it.
                let score = if (len as usize) * 2 < t.frames.len() {
                    0.0
                } else {
                    1.0 - mean
                };
                t.peak = score.max(t.peak - PEAK_DECAY);
            }
            // A name's score: the mean over its takes of their recent best, so one
            // take matching by chance is not enough.
            for (i, t) in templates.iter().enumerate() {
                let (sum, n) = templates
                    .iter()
                    .filter(|u| u.name == t.name)
                    .fold((0.0, 0), |(s, n), u| (s + u.peak, n + 1));
                let score = sum / n as f32;
                if top.is_none_or(|b| score > b.1) {
                    top = Some((i, score, t.len[t.frames.len() - 1]));
                }
            }
            let Some((i, score, len)) = top else { return };
            let name = &templates[i].name;
            match best.iter_mut().find(|b| &b.0 == name) {
                Some(b) => b.1 = b.1.max(score),
                None => best.push((name.clone(), score)),
            }
            if *frame_index < *quiet_until {
                return;
            }
            // Hold the best-scoring name until its score has stopped rising for a
            // moment: a name fires at its peak, and the right one of two similar
            // names wins.
            if score >= *threshold && candidate.as_ref().is_none_or(|c| score > c.score) {
                *candidate = Some(Detection {
                    name: name.clone(),
                    score,
                    end_sample: (*frame_index - 1) * HOP as u64 + WIN as u64,
                    frames: len,
                });
                *candidate_at = *frame_index;
            }
            if candidate.is_some() && *frame_index >= *candidate_at + HOLD_FRAMES {
                found.extend(candidate.take());
                *quiet_until = *frame_index + REFRACTORY_FRAMES as u64;
                for t in templates.iter_mut() {
                    t.reset();
                }
            }
        });
    }

    /// Forget the audio so far (the gate opened and closed again).
    pub fn reset(&mut self) {
        self.candidate = None;
        for t in &mut self.templates {
            t.reset();
        }
    }

    pub fn take_best(&mut self) -> Vec<(String, f32)> {
        std::mem::take(&mut self.best)
    }

    pub fn rate(&self) -> u32 {
        RATE
    }
}
