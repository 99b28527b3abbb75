//! The server's counters and their Prometheus text exposition (`GET /metrics`).
//!
//! A handful of counters, gauges and one histogram: written here in the text format
//! (version 0.0.4) rather than through a metrics crate, which would bring a registry
//! and an HTTP stack the server does not need.

use crate::models::duplex::BatchStats;
pub use crate::models::duplex::STEP_BUCKETS;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

/// Counters over the server's life (for `/metrics`, logs and tests).
#[derive(Debug, Default)]
pub struct ServerStats {
    pub accepted: AtomicU64,
    pub sessions: AtomicU64,
    pub busy: AtomicU64,
    /// Clients waiting for a session now.
    pub queued: AtomicU64,
    pub rejected: AtomicU64,
    pub protocol_errors: AtomicU64,
    pub active: AtomicU64,
    /// Sessions that have ended.
    pub sessions_ended: AtomicU64,
    /// WebSocket payload bytes received from and sent to clients.
    pub bytes_in: AtomicU64,
    pub bytes_out: AtomicU64,
    /// Engine steps that took longer than their frame (80 ms).
    pub frames_late: AtomicU64,
    /// Input frames the engines dropped to keep up.
    pub frames_dropped: AtomicU64,
    /// Messages not sent because the client was not reading.
    pub messages_unsent: AtomicU64,
    /// Sessions ended because the client stopped reading or went silent.
    pub sessions_stalled: AtomicU64,
    /// Sessions closed by a drain's deadline.
    pub sessions_drained: AtomicU64,
    pub steps: Histogram,
    /// The last step's real-time factor (step time / frame time), as f64 bits.
    pub rtf_bits: AtomicU64,
    /// `serve --batch`: the stepper's counters, read at each scrape.
    pub batch: OnceLock<BatchSource>,
}

/// Where a scrape reads the batch stepper's counters (the stepper keeps them).
pub struct BatchSource(pub Box<dyn Fn() -> Option<BatchStats> + Send + Sync>);

impl std::fmt::Debug for BatchSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BatchSource")
    }
}

impl ServerStats {
    /// One engine step of any session.
    pub fn step(&self, step_s: f64, rtf: f64) {
        self.steps.observe(step_s);
        self.rtf_bits.store(rtf.to_bits(), Ordering::Relaxed);
        if rtf > 1.0 {
            self.frames_late.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub fn rtf(&self) -> f64 {
        f64::from_bits(self.rtf_bits.load(Ordering::Relaxed))
    }
}

/// A Prometheus histogram over `STEP_BUCKETS` (counts per bucket, not cumulative).
#[derive(Debug, Default)]
pub struct Histogram {
    buckets: [AtomicU64; STEP_BUCKETS.len()],
    /// Above the last bound.
    over: AtomicU64,
    /// The sum in microseconds (an atomic integer; plenty for step times).
    sum_us: AtomicU64,
}

impl Histogram {
    pub fn observe(&self, seconds: f64) {
        match STEP_BUCKETS.iter().position(|&b| seconds <= b) {
            Some(i) => self.buckets[i].fetch_add(1, Ordering::Relaxed),
            None => self.over.fetch_add(1, Ordering::Relaxed),
        };
        self.sum_us
            .fetch_add((seconds.max(0.0) * 1e6) as u64, Ordering::Relaxed);
    }

    pub fn count(&self) -> u64 {
        self.buckets
            .iter()
            .map(|b| b.load(Ordering::Relaxed))
            .sum::<u64>()
            + self.over.load(Ordering::Relaxed)
    }
}

/// Gauges the stats do not hold.
pub struct Capacity {
    pub max_sessions: usize,
    /// The model is loaded.
    pub loaded: bool,
    pub ready: bool,
    pub draining: bool,
}

fn metric(out: &mut String, name: &str, kind: &str, help: &str, value: impl std::fmt::Display) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
    let _ = writeln!(out, "{name} {value}");
}

/// The exposition of everything, in Prometheus' text format.
pub fn render(s: &ServerStats, cap: &Capacity) -> String {
    let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
    let mut out = String::new();
    let gauges: [(&str, &str, u64); 4] = [
        (
            "assistant_sessions_active",
            "sessions running now",
            get(&s.active),
        ),
        (
            "assistant_sessions_queued",
            "clients waiting for a session now",
            get(&s.queued),
        ),
        (
            "assistant_sessions_max",
            "sessions at once (--max-sessions)",
            cap.max_sessions as u64,
        ),
        (
            "assistant_ready",
            "1 when the model is loaded, a slot is free and the server is not draining",
            u64::from(cap.ready),
        ),
    ];
    for (name, help, v) in gauges {
        metric(&mut out, name, "gauge", help, v);
    }
    metric(
        &mut out,
        "assistant_draining",
        "gauge",
        "1 while the server drains",
        u64::from(cap.draining),
    );
    metric(
        &mut out,
        "assistant_loaded",
        "gauge",
        "1 once the model is loaded",
        u64::from(cap.loaded),
    );
    let counters: [(&str, &str, &AtomicU64); 12] = [
        (
            "assistant_connections_total",
            "TCP connections accepted",
            &s.accepted,
        ),
        ("assistant_sessions_total", "sessions started", &s.sessions),
        (
            "assistant_sessions_busy_total",
            "clients told busy",
            &s.busy,
        ),
        (
            "assistant_connections_rejected_total",
            "connections refused before a session (auth, path, handshake)",
            &s.rejected,
        ),
        (
            "assistant_protocol_errors_total",
            "sessions ended by a protocol error",
            &s.protocol_errors,
        ),
        (
            "assistant_sessions_stalled_total",
            "sessions ended because the client stopped reading or went silent",
            &s.sessions_stalled,
        ),
        (
            "assistant_sessions_drained_total",
            "sessions closed at a drain's deadline",
            &s.sessions_drained,
        ),
        (
            "assistant_received_bytes_total",
            "WebSocket payload bytes received",
            &s.bytes_in,
        ),
        (
            "assistant_sent_bytes_total",
            "WebSocket payload bytes sent",
            &s.bytes_out,
        ),
        (
            "assistant_frames_late_total",
            "engine steps slower than real time (80 ms)",
            &s.frames_late,
        ),
        (
            "assistant_frames_dropped_total",
            "input frames the engines dropped to keep up",
            &s.frames_dropped,
        ),
        (
            "assistant_messages_unsent_total",
            "messages dropped because the client was not reading",
            &s.messages_unsent,
        ),
    ];
    for (name, help, c) in counters {
        metric(&mut out, name, "counter", help, get(c));
    }
    metric(
        &mut out,
        "assistant_rtf",
        "gauge",
        "the last engine step's real-time factor (step time / frame time)",
        s.rtf(),
    );
    let name = "assistant_step_seconds";
    let _ = writeln!(out, "# HELP {name} engine step time");
    let _ = writeln!(out, "# TYPE {name} histogram");
    let mut cumulative = 0;
    for (bound, b) in STEP_BUCKETS.iter().zip(&s.steps.buckets) {
        cumulative += get(b);
        let _ = writeln!(out, "{name}_bucket{{le=\"{bound}\"}} {cumulative}");
    }
    cumulative += get(&s.steps.over);
    let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {cumulative}");
    let _ = writeln!(out, "{name}_sum {}", get(&s.steps.sum_us) as f64 / 1e6);
    let _ = writeln!(out, "{name}_count {cumulative}");
    if let Some(b) = s.batch.get().and_then(|f| (f.0)()) {
        render_batch(&mut out, &b);
    }
    out
}

/// A histogram's lines from per-bucket (not cumulative) counts, the last one above the
/// last bound.
fn histogram(
    out: &mut String,
    name: &str,
    help: &str,
    bounds: &[String],
    counts: &[u64],
    sum: f64,
) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} histogram");
    let mut cumulative = 0;
    for (bound, n) in bounds.iter().zip(counts) {
        cumulative += n;
        let _ = writeln!(out, "{name}_bucket{{le=\"{bound}\"}} {cumulative}");
    }
    cumulative += counts.iter().skip(bounds.len()).sum::<u64>();
    let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {cumulative}");
    let _ = writeln!(out, "{name}_sum {sum}");
    let _ = writeln!(out, "{name}_count {cumulative}");
}

/// `serve --batch`: the stepper's series.
fn render_batch(out: &mut String, b: &BatchStats) {
    metric(
        out,
        "assistant_batch_slots",
        "gauge",
        "sessions one batched step can hold (--max-sessions with --batch)",
        b.slots,
    );
    metric(
        out,
        "assistant_batch_steps_total",
        "counter",
        "batched forward passes",
        b.steps,
    );
    metric(
        out,
        "assistant_batch_late_total",
        "counter",
        "sessions masked in a batched step because their frame was late",
        b.late,
    );
    metric(
        out,
        "assistant_batch_waited_out_total",
        "counter",
        "batched steps that waited the whole gather window (40 ms) for a frame",
        b.waited_out,
    );
    // One bucket per batch size, 0 (every stepped slot failed its input) to all slots.
    let sizes: Vec<String> = (0..b.sizes.len()).map(|n| n.to_string()).collect();
    histogram(
        out,
        "assistant_batch_size",
        "sessions stepped in each batched step",
        &sizes,
        &b.sizes,
        b.slot_steps as f64,
    );
    let bounds: Vec<String> = STEP_BUCKETS.iter().map(f64::to_string).collect();
    histogram(
        out,
        "assistant_batch_step_seconds",
        "wall time of each batched step (all its sessions' LM step)",
        &bounds,
        &b.step_buckets,
        b.step_seconds,
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each sample line's value by its name (with labels), as a scraper reads them.
    fn samples(text: &str) -> std::collections::BTreeMap<String, f64> {
        text.lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
            .map(|l| {
                let (k, v) = l.rsplit_once(' ').expect("name value");
                (k.to_string(), v.parse().expect("a number"))
            })
            .collect()
    }

    #[test]
    fn the_exposition_is_prometheus_text_with_cumulative_buckets() {
        let s = ServerStats::default();
        s.active.store(2, Ordering::Relaxed);
        s.bytes_out.store(1234, Ordering::Relaxed);
        for (t, rtf) in [(0.003, 0.04), (0.05, 0.6), (0.09, 1.1), (3.0, 37.5)] {
            s.step(t, rtf);
        }
        let text = render(
            &s,
            &Capacity {
                max_sessions: 4,
                loaded: true,
                ready: true,
                draining: false,
            },
        );
        let m = samples(&text);
        assert_eq!(m["assistant_sessions_active"], 2.0);
        assert_eq!(m["assistant_sessions_max"], 4.0);
        assert_eq!(m["assistant_ready"], 1.0);
        assert_eq!(m["assistant_sent_bytes_total"], 1234.0);
        // Two steps were slower than their frame.
        assert_eq!(m["assistant_frames_late_total"], 2.0);
        assert_eq!(m["assistant_rtf"], 37.5);
        assert_eq!(m["assistant_step_seconds_bucket{le=\"0.005\"}"], 1.0);
        assert_eq!(m["assistant_step_seconds_bucket{le=\"0.06\"}"], 2.0);
        assert_eq!(m["assistant_step_seconds_bucket{le=\"0.1\"}"], 3.0);
        assert_eq!(m["assistant_step_seconds_bucket{le=\"1\"}"], 3.0);
        assert_eq!(m["assistant_step_seconds_bucket{le=\"+Inf\"}"], 4.0);
        assert_eq!(m["assistant_step_seconds_count"], 4.0);
        assert!((m["assistant_step_seconds_sum"] - 3.143).abs() < 1e-6);
        // Every sample has its HELP and TYPE, once.
        for name in ["assistant_sessions_active", "assistant_step_seconds"] {
            assert_eq!(text.matches(&format!("# TYPE {name} ")).count(), 1);
            assert_eq!(text.matches(&format!("# HELP {name} ")).count(), 1);
        }
    }
}
