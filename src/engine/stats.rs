//! Run statistics: collected by the engine thread, written by `--stats-json`.

use crate::models::duplex::ModelInfo;
use serde::Serialize;

/// Where the algorithmic latency comes from, in ms.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq)]
pub struct Latency {
    /// Accumulating one model frame before it can be stepped.
    pub frame_ms: f64,
    pub resampler_in_ms: f64,
    pub resampler_out_ms: f64,
    /// Silence queued ahead of the first output to absorb jitter.
    pub ring_prefill_ms: f64,
    /// The echo canceller on the microphone path (0 when it is not running).
    pub echo_canceller_ms: f64,
    /// The model's own delay (1 frame for loopback); not part of `total_ms`.
    pub model_delay_ms: f64,
}

impl Latency {
    /// frame + resampler delays + ring prefill + echo canceller.
    pub fn total_ms(&self) -> f64 {
        self.frame_ms
            + self.resampler_in_ms
            + self.resampler_out_ms
            + self.ring_prefill_ms
            + self.echo_canceller_ms
    }
}

#[derive(Debug, Clone, Default)]
pub struct RunStats {
    pub model: ModelInfo,
    /// Frames assembled from the input (stepped or dropped).
    pub frames_in: u64,
    /// Frames the model produced.
    pub frames_out: u64,
    pub dropped_frames: u64,
    pub xruns_in: u64,
    pub xruns_out: u64,
    pub step_ms: Vec<f64>,
    pub overhead_ms: Vec<f64>,
    pub frame_ms: f64,
    pub latency: Latency,
    pub input_seconds: f64,
    pub output_seconds: f64,
    pub load_ms: f64,
    /// Set when the run ended on an error.
    pub error: Option<String>,
    pub residency: ResidencyStats,
}

/// Idle unloads and what they cost and saved.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ResidencyStats {
    pub unloads: u64,
    pub reloads: u64,
    /// Input frames held while the model was away, and those dropped past the bound.
    pub held_frames: u64,
    pub held_dropped: u64,
    /// (input seconds, process RSS in MB), every 10 s of input and around each unload.
    pub rss_mb: Vec<(f64, f64)>,
}

#[derive(Debug, Serialize, PartialEq)]
pub struct Percentiles {
    pub p50: f64,
    pub p95: f64,
    pub p99: f64,
    pub max: f64,
}

/// Nearest-rank percentiles; zeros for an empty sample.
pub fn percentiles(values: &[f64]) -> Percentiles {
    if values.is_empty() {
        return Percentiles {
            p50: 0.0,
            p95: 0.0,
            p99: 0.0,
            max: 0.0,
        };
    }
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let at = |q: f64| v[((q * v.len() as f64).ceil() as usize).clamp(1, v.len()) - 1];
    Percentiles {
        p50: at(0.50),
        p95: at(0.95),
        p99: at(0.99),
        max: v[v.len() - 1],
    }
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

impl RunStats {
    pub fn rtf(&self) -> f64 {
        if self.step_ms.is_empty() || self.frame_ms == 0.0 {
            return 0.0;
        }
        self.step_ms.iter().sum::<f64>() / self.step_ms.len() as f64 / self.frame_ms
    }

    pub fn to_json(&self) -> serde_json::Value {
        let step = percentiles(&self.step_ms);
        let over = percentiles(&self.overhead_ms);
        serde_json::json!({
            "model": self.model.name,
            "device": self.model.device,
            "dtype": self.model.dtype,
            "frames_in": self.frames_in,
            "frames_out": self.frames_out,
            "dropped_frames": self.dropped_frames,
            "xruns_in": self.xruns_in,
            "xruns_out": self.xruns_out,
            "step_ms": { "p50": round3(step.p50), "p95": round3(step.p95), "p99": round3(step.p99), "max": round3(step.max) },
            "rtf": round3(self.rtf()),
            "overhead_ms": { "p50": round3(over.p50), "p99": round3(over.p99) },
            "latency_ms": round3(self.latency.total_ms()),
            "latency_breakdown_ms": self.latency,
            "input_seconds": round3(self.input_seconds),
            "output_seconds": round3(self.output_seconds),
            "load_ms": round3(self.load_ms),
            "error": self.error,
            "residency": self.residency,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        let p = percentiles(&v);
        assert_eq!((p.p50, p.p95, p.p99, p.max), (50.0, 95.0, 99.0, 100.0));
        assert_eq!(percentiles(&[]).max, 0.0);
    }
}
