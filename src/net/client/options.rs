//! What a client session is given (`ConnectOptions`, `Reconnect`), why one fails to
//! start (`ConnectError`), what the server said about itself, and the network figures.

use crate::bus::Cancel;
use crate::net::opus_ogg::ReaderLimits;
use crate::net::protocol::{Handshake, Limits, SessionParams};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct ConnectOptions {
    /// `ws://host:port` or `wss://host:port` (the path defaults to `/api/chat`), or a
    /// full URL.
    pub url: String,
    /// `wss://`: accept any certificate (self-signed ones, as `moshi-backend` makes).
    pub insecure: bool,
    pub params: SessionParams,
    /// Sent as the `kyutai-api-key` header.
    pub token: Option<String>,
    pub connect_timeout: Duration,
    /// How long the server may take to load its model and send its handshake.
    pub handshake_timeout: Duration,
    /// Wait in `step` for the server's answer (a file read as fast as possible).
    pub lockstep: bool,
    /// How long a lock-step `step` waits before calling the server gone.
    pub answer_timeout: Duration,
    /// How long a lock-step `step` waits for the answer to the frame just sent before
    /// it lets the server lag one more frame (up to `MAX_LOCKSTEP_LAG`).
    pub lag_probe: Duration,
    pub limits: Limits,
    pub reader: ReaderLimits,
    /// After a dropped connection: how often and how fast to retry.
    pub reconnect: Reconnect,
    /// A WebSocket ping this often, so that a quiet but live server still answers.
    pub ping_every: Duration,
    /// Nothing received (audio, text, pong) for this long, or a send stuck this long:
    /// the link is dead, and reconnection starts.
    pub dead_after: Duration,
    /// The user's quit: every wait (connect, handshake, answer, reconnect) ends on it.
    pub cancel: Cancel,
}

/// Retries after a dropped connection: `attempts` tries, waiting `first`, then twice
/// as long each time, up to `max` (0 attempts: a drop ends the session at once).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Reconnect {
    pub attempts: u32,
    pub first: Duration,
    pub max: Duration,
}

impl Default for Reconnect {
    fn default() -> Self {
        // 0.25 + 0.5 + 1 + 2 + 4 × 10 s: about 44 s of retries, plus the connects. Longer
        // than a server's idle timeout (`serve` allowed 30 s before it pinged), so a
        // server that has not yet noticed the old session's drop (it answers "busy")
        // frees the slot in time.
        Self {
            attempts: 14,
            first: Duration::from_millis(250),
            max: Duration::from_secs(4),
        }
    }
}

impl Reconnect {
    /// The wait before attempt `n` (from 1).
    pub fn delay(&self, n: u32) -> Duration {
        self.first
            .saturating_mul(1u32 << n.saturating_sub(1).min(16))
            .min(self.max)
    }
}

impl ConnectOptions {
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            insecure: false,
            params: SessionParams::default(),
            token: None,
            connect_timeout: Duration::from_secs(10),
            handshake_timeout: Duration::from_secs(60),
            lockstep: false,
            answer_timeout: Duration::from_secs(10),
            lag_probe: Duration::from_secs(2),
            limits: Limits::default(),
            reader: ReaderLimits::default(),
            reconnect: Reconnect::default(),
            ping_every: Duration::from_secs(1),
            dead_after: Duration::from_secs(3),
            cancel: Cancel::new(),
        }
    }
}

/// Why the client could not start a session. Each names what failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ConnectError {
    #[error("bad server URL {url:?}: {why} (expected ws://HOST:PORT or wss://HOST:PORT, e.g. ws://127.0.0.1:8998)")]
    BadUrl { url: String, why: String },
    #[error("{url}: TLS failed: {why}")]
    Tls { url: String, why: String },
    #[error("cannot connect to {url}: {why}")]
    Connect { url: String, why: String },
    #[error("{url}: the server refused the WebSocket upgrade: HTTP {status}{body}")]
    Http {
        url: String,
        status: u16,
        body: String,
    },
    #[error("{url}: no answer within {secs:.0} s")]
    Timeout { url: String, secs: f64 },
    #[error("{url}: the server does not speak Kyutai's protocol: {why}")]
    NotKyutai { url: String, why: String },
    #[error("{url}: the server said: {message}")]
    Server { url: String, message: String },
    #[error("{url}: connecting was cancelled")]
    Cancelled { url: String },
}

/// Where a connect is, for a progress line while it waits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectPhase {
    /// Opening TCP (and TLS) and the WebSocket upgrade.
    Connecting,
    /// Upgraded; waiting for the server's handshake (it may be loading its model).
    AwaitingHandshake,
}

/// What the server told us about itself.
#[derive(Debug, Clone, PartialEq)]
pub struct ServerInfo {
    pub url: String,
    pub handshake: Handshake,
    pub metadata: Option<serde_json::Value>,
    /// `wss://` with `--insecure`: the server's certificate was not checked.
    pub unchecked_certificate: bool,
}

impl ServerInfo {
    /// The model, as the metadata names it (`model`, else `lm_model_file`).
    pub fn model(&self) -> Option<String> {
        let m = self.metadata.as_ref()?;
        ["model", "lm_model_file", "instance_name"]
            .iter()
            .find_map(|k| m.get(k).and_then(|v| v.as_str()).map(str::to_owned))
    }
}

/// Network figures, shared between the model (engine thread) and whoever reports them.
#[derive(Debug, Default)]
pub struct NetStats {
    pub frames_sent: AtomicU64,
    pub frames_received: AtomicU64,
    pub bytes_sent: AtomicU64,
    pub bytes_received: AtomicU64,
    pub rtt_last_us: AtomicU64,
    pub rtt_sum_us: AtomicU64,
    pub rtt_count: AtomicU64,
    pub rtt_max_us: AtomicU64,
    pub underruns: AtomicU64,
    pub dropped_frames: AtomicU64,
    /// The jitter buffer, in 40 ms Opus frames.
    pub jitter_opus_frames: AtomicU64,
    /// Connections lost, and sessions started again after one.
    pub drops: AtomicU64,
    pub reconnects: AtomicU64,
    /// 80 ms frames of audio dropped by the bounded queues: ours, not yet sent (the
    /// link too slow), and the server's, not yet played (the engine too slow).
    pub send_dropped: AtomicU64,
    pub receive_dropped: AtomicU64,
}

impl NetStats {
    pub fn rtt_mean_ms(&self) -> f64 {
        let n = self.rtt_count.load(Ordering::Relaxed);
        if n == 0 {
            return 0.0;
        }
        self.rtt_sum_us.load(Ordering::Relaxed) as f64 / n as f64 / 1000.0
    }

    pub fn to_json(&self) -> serde_json::Value {
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        serde_json::json!({
            "frames_sent": g(&self.frames_sent),
            "frames_received": g(&self.frames_received),
            "bytes_sent": g(&self.bytes_sent),
            "bytes_received": g(&self.bytes_received),
            "rtt_mean_ms": self.rtt_mean_ms(),
            "rtt_max_ms": g(&self.rtt_max_us) as f64 / 1000.0,
            "underruns": g(&self.underruns),
            "dropped_frames": g(&self.dropped_frames),
            "jitter_ms": g(&self.jitter_opus_frames) * 40,
            "drops": g(&self.drops),
            "reconnects": g(&self.reconnects),
            "send_dropped": g(&self.send_dropped),
            "receive_dropped": g(&self.receive_dropped),
        })
    }
}
