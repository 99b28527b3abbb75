//! Template spotting: each reference take of a name is a sequence of feature vectors,
//! and live audio is matched against every take at once by open-start dynamic time
//! warping (the SPRING recurrence), one column per 10 ms. A match ends where the take
//! ends, so a detection comes as the name is finished, not a window later.
//!
//! Three corrections make one threshold hold across rooms and names (each measured on
//! the tuning fixtures of tools/wake_fixtures, and kept because it raised the
//! detection rate at no false wake; docs/wake-word.md has the figures):
//! - the take's quiet frames (its consonants and edges, which noise covers first) weigh
//!   less in the match than its loud ones;
//! - a match heard close to the noise floor gets a bonus that grows as the margin
//!   shrinks, since noise lowers a true match's score more than anything else does;
//! - a short take (a one-syllable name) must match better than a long one, since a
//!   short stretch of other speech matches it by chance more easily.

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
    /// How much each frame counts in the match (its loudness within the take).
    weight: Vec<f32>,
    /// Running DTW cost (weighted), path length and weight sum ending at each
    /// template frame.
    cost: Vec<f32>,
    len: Vec<u32>,
    wsum: Vec<f32>,
    next_cost: Vec<f32>,
    next_len: Vec<u32>,
    next_wsum: Vec<f32>,
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
/// A take's frames this far below its loudest weigh least in the match (dB); the
/// weight rises linearly over the upper half of the range.
const WEIGHT_RANGE_DB: f32 = 25.0;
const MIN_WEIGHT: f32 = 0.2;
/// The bonus for a match close to the noise floor: up to `SNR_BONUS` × 1.5, growing
/// by `SNR_BONUS` for every 10 dB its loudest frame is under `SNR_FULL_DB` above the
/// floor.
const SNR_BONUS: f32 = 0.07;
const SNR_FULL_DB: f32 = 25.0;
/// How fast the noise floor estimate rises (dB a frame: 1 dB/s); it falls at once.
const FLOOR_RISE_DB: f32 = 0.01;
/// The short-take correction: `LENGTH_K` × (1/√frames − 1/√40), so a 40-frame
/// (400 ms) take is unchanged and a 20-frame one loses about 0.03.
const LENGTH_K: f32 = 0.5;
/// Switching to another persona takes this much more than waking the active one (a
/// false wake once switched to HAL at a score just over the threshold).
pub const SWITCH_MARGIN: f32 = 0.03;

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
        let weight = feats[first..=last]
            .iter()
            .map(|f| {
                ((f.1 - (peak - WEIGHT_RANGE_DB)) / (WEIGHT_RANGE_DB / 2.0)).clamp(MIN_WEIGHT, 1.0)
            })
            .collect();
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
            weight,
            cost: vec![f32::INFINITY; n],
            len: vec![0; n],
            wsum: vec![0.0; n],
            next_cost: vec![f32::INFINITY; n],
            next_len: vec![0; n],
            next_wsum: vec![0.0; n],
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
        self.wsum.fill(0.0);
    }

    /// One input column; returns the weighted mean cost of the best path ending at
    /// the take's last frame, and its length.
    fn step(&mut self, x: &Vector, xn: f32) -> (f32, u32) {
        let n = self.frames.len();
        for j in 0..n {
            let d = distance(x, xn, &self.frames[j]);
            let w = self.weight[j];
            // Predecessors: a new start (j = 0), the same take frame (stay), the
            // previous one (diagonal), or one skipped (a faster speaker).
            let mut best = if j == 0 {
                (0.0, 0u32, 0.0f32)
            } else {
                (f32::INFINITY, 0, 0.0)
            };
            let mut consider = |c: f32, l: u32, ws: f32, extra: f32| {
                if c.is_finite() {
                    let cand = (c + extra * w, l, ws);
                    let mean = |p: (f32, u32, f32)| (p.0 + w * d) / (p.2 + w);
                    if !best.0.is_finite() || mean(cand) < mean(best) {
                        best = cand;
                    }
                }
            };
            consider(self.cost[j], self.len[j], self.wsum[j], STAY_PENALTY);
            if j >= 1 {
                consider(self.cost[j - 1], self.len[j - 1], self.wsum[j - 1], 0.0);
            }
            if j >= 2 {
                consider(self.cost[j - 2], self.len[j - 2], self.wsum[j - 2], 0.0);
            }
            self.next_cost[j] = best.0 + w * d;
            self.next_len[j] = best.1 + 1;
            self.next_wsum[j] = best.2 + w;
        }
        std::mem::swap(&mut self.cost, &mut self.next_cost);
        std::mem::swap(&mut self.len, &mut self.next_len);
        std::mem::swap(&mut self.wsum, &mut self.next_wsum);
        let l = self.len[n - 1];
        (self.cost[n - 1] / self.wsum[n - 1].max(1e-6), l)
    }
}

/// Recent frame levels kept, for a match's loudest frame (2 s, longer than any take).
const LEVELS_KEPT: usize = 200;

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
    /// The active persona's phrases: others need `SWITCH_MARGIN` more (none listed:
    /// every phrase has the same bar).
    pub active: Vec<String>,
    /// Feature frames fed.
    frame_index: u64,
    quiet_until: u64,
    /// The best score seen for each name since the last [`Spotter::take_best`] (for
    /// tuning: how close a near miss came).
    best: Vec<(String, f32)>,
    /// The best detection of the last few frames, fired once nothing beats it.
    candidate: Option<Detection>,
    candidate_at: u64,
    /// The noise floor of the frame level (dB full scale), and the recent levels.
    floor_db: Option<f32>,
    levels: std::collections::VecDeque<f32>,
}

/// The default threshold, from 25 minutes of fixtures over four seeds
/// (tools/wake_fixtures, docs/wake-word.md has the table); `assistant wake test`
/// prints the scores to tune it.
pub const DEFAULT_THRESHOLD: f32 = 0.77;

impl Spotter {
    pub fn new(templates: Vec<Template>, threshold: f32) -> Self {
        Self {
            features: Features::new(),
            templates,
            threshold,
            active: Vec::new(),
            frame_index: 0,
            quiet_until: 0,
            best: Vec::new(),
            candidate: None,
            candidate_at: 0,
            floor_db: None,
            levels: std::collections::VecDeque::with_capacity(LEVELS_KEPT + 1),
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
            active,
            frame_index,
            quiet_until,
            best,
            candidate,
            candidate_at,
            floor_db,
            levels,
        } = self;
        features.push(samples, |x, db| {
            *frame_index += 1;
            let xn = norm(x);
            let floor = match *floor_db {
                Some(f) if db >= f => f + FLOOR_RISE_DB,
                _ => db,
            };
            *floor_db = Some(floor);
            levels.push_back(db);
            if levels.len() > LEVELS_KEPT {
                levels.pop_front();
            }
            let mut top: Option<(usize, f32, u32)> = None;
            for t in templates.iter_mut() {
                let (mean, len) = t.step(x, xn);
                // A path much shorter than the take is a fragment of it.
                let score = if (len as usize) * 2 < t.frames.len() {
                    0.0
                } else {
                    let loudest = levels
                        .iter()
                        .rev()
                        .take(len as usize)
                        .fold(f32::MIN, |a, &b| a.max(b));
                    let near_floor = ((SNR_FULL_DB - (loudest - floor)) / 10.0).clamp(0.0, 1.5);
                    let short =
                        LENGTH_K * (1.0 / (t.frames.len() as f32).sqrt() - 1.0 / 40f32.sqrt());
                    1.0 - mean + SNR_BONUS * near_floor - short
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
                match best.iter_mut().find(|b| b.0 == t.name) {
                    Some(b) => b.1 = b.1.max(score),
                    None => best.push((t.name.clone(), score)),
                }
                // The best of the names over their bar.
                let bar = if active.is_empty() || active.contains(&t.name) {
                    *threshold
                } else {
                    *threshold + SWITCH_MARGIN
                };
                if score >= bar && top.is_none_or(|b| score > b.1) {
                    top = Some((i, score, t.len[t.frames.len() - 1]));
                }
            }
            let name = top.map(|(i, _, _)| templates[i].name.clone());
            if *frame_index < *quiet_until {
                return;
            }
            // Hold the best-scoring name until its score has stopped rising for a
            // moment: a name fires at its peak, and the right one of two similar
            // names wins.
            if let (Some((_, score, len)), Some(name)) = (top, name) {
                if candidate.as_ref().is_none_or(|c| score > c.score) {
                    *candidate = Some(Detection {
                        name,
                        score,
                        end_sample: (*frame_index - 1) * HOP as u64 + WIN as u64,
                        frames: len,
                    });
                    *candidate_at = *frame_index;
                }
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A made-up word: a gliding voiced sound from `f0_from` to `f0_to` Hz, 0.5 s,
    /// between two 0.3 s pauses, over faint noise.
    fn word(f0_from: f32, f0_to: f32) -> Vec<f32> {
        let n = RATE as usize / 2;
        let mut phase = 0f32;
        let mut seed = 12345u32;
        let mut out = vec![0f32; (RATE as usize * 3) / 10];
        for i in 0..n {
            let t = i as f32 / n as f32;
            let f0 = f0_from + (f0_to - f0_from) * t;
            phase += std::f32::consts::TAU * f0 / RATE as f32;
            let env = (std::f32::consts::PI * t).sin();
            let v: f32 = (1..12).map(|h| (h as f32 * phase).sin() / h as f32).sum();
            out.push(0.2 * env * v);
        }
        out.extend(vec![0f32; (RATE as usize * 3) / 10]);
        for s in &mut out {
            seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            *s += 1e-3 * ((seed >> 8) as f32 / (1u32 << 24) as f32 - 0.5);
        }
        out
    }

    fn spotter(threshold: f32, active: &[&str]) -> Spotter {
        let mut takes = Vec::new();
        for (name, (a, b)) in [("jarvis", (120.0, 220.0)), ("hal", (260.0, 110.0))] {
            for k in 0..3 {
                let k = k as f32 * 6.0;
                takes.push(Template::from_take(name, &word(a + k, b + k)).unwrap());
            }
        }
        let mut s = Spotter::new(takes, threshold);
        s.active = active.iter().map(|a| a.to_string()).collect();
        s
    }

    fn heard(s: &mut Spotter) -> Vec<Detection> {
        let mut found = Vec::new();
        let audio = [word(263.0, 113.0), vec![0.0; RATE as usize]].concat();
        for chunk in audio.chunks(1920) {
            s.push(chunk, &mut found);
        }
        found
    }

    #[test]
    fn another_personas_name_needs_a_higher_score_to_switch_than_to_wake() {
        let free = heard(&mut spotter(0.5, &[]));
        assert_eq!(free.len(), 1, "{free:?}");
        assert_eq!(free[0].name, "hal");
        // A threshold just under the score: the active persona's name wakes it, and
        // another persona's (the margin higher) does not.
        let t = free[0].score - SWITCH_MARGIN / 2.0;
        assert_eq!(heard(&mut spotter(t, &["hal"])).len(), 1);
        assert!(heard(&mut spotter(t, &["jarvis"])).is_empty());
    }
}
