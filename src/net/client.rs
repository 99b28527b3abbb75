//! `assistant --connect URL`: the "model" is a session on a server speaking Kyutai's
//! protocol. [`RemoteModel`] is a [`DuplexModel`]: its `step` hands the frame to a
//! network thread (which encodes it to Ogg/Opus and sends it) and returns whatever
//! audio and text the server has sent back, so the whole local path (devices, rings,
//! echo cancellation, TUI, journal, files) is the one a local model uses.
//!
//! Playback is by stream position: step `n` plays the server's audio at positions
//! `[n*1920 - delay, (n+1)*1920 - delay)`, where `delay` starts at 0 (the answer to the
//! frame just sent). Two pacings:
//! - **real time** (a microphone, or a paced file): `step` waits at most one Opus frame
//!   (40 ms) for that audio: the jitter buffer. When it is late, the step plays
//!   silence and `delay` grows by one Opus frame (960 samples), up to 8; it never grows
//!   otherwise, and audio older than the position played is dropped, as the local engine
//!   drops input, so delay cannot pile up. On a LAN the remote path then adds the round
//!   trip and the codec, not a whole frame.
//! - **lock step** (a file read as fast as possible): `step` waits for the answer to the
//!   frame it sent, so the file goes through at the speed of the round trip.
//!
//! Nothing waits forever: connecting, the handshake, a lock-step answer and every
//! reconnection have a deadline, and each wait also ends on the user's quit (the
//! options' `cancel`). A link is alive while something arrives: the client pings every
//! second (Kyutai's servers, ours and the Python one answer WebSocket pings), and a link
//! with nothing received for `dead_after` (3 s) counts as dropped and is reconnected.
//! The queues between the engine and the network thread are bounded (`queues`).

mod queues;

use super::opus_ogg::{OggOpusReader, OggOpusWriter, ReaderLimits};
use super::protocol::{Handshake, Limits, Message, SessionParams};
use super::server::{ws_config, API_KEY_HEADER};
use crate::bus::{Cancel, Happening, LinkStats};
use crate::models::duplex::{DuplexModel, ModelInfo, StepOutput};
use futures_util::{SinkExt, StreamExt};
use queues::{Inbox, Outbox, Samples, Waited};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message as WsMessage;

const FRAME_LEN: usize = 1920;
const RATE: u32 = 24_000;
/// One Opus frame (40 ms): the jitter buffer's unit, and the longest a real-time step waits.
const OPUS_FRAME: usize = 960;
/// Largest delay the jitter buffer grows to, in Opus frames (320 ms).
pub const MAX_JITTER: usize = 8;
/// Largest lag, in 80 ms frames, a lock-step client lets a server's answers have.
pub const MAX_LOCKSTEP_LAG: usize = 8;
/// Frames the send queue holds (2 s); beyond that the oldest is dropped.
const SEND_QUEUE_FRAMES: usize = 25;
/// Audio the receive queue holds (2 s); beyond that the oldest is dropped.
const RECEIVE_QUEUE_SAMPLES: usize = 2 * RATE as usize;
/// How often a blocking wait on the engine thread looks at the quit flag.
const QUIT_POLL: Duration = Duration::from_millis(20);
/// How long a quit waits for the close frame to go out, and drop for the thread.
const CLOSE_GRACE: Duration = Duration::from_millis(250);

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

/// What the network thread hands the model.
enum Incoming {
    Audio(Vec<f32>, Instant),
    Text(String),
    /// The session's first frame is frame `seq` of the stream.
    SessionStart(u64),
    /// The connection dropped; retrying.
    Lost {
        why: String,
        attempt: u32,
        of: u32,
        retry_in: Duration,
    },
    /// A new session after a drop.
    Back {
        info: ServerInfo,
        outage: Duration,
    },
    /// The session is over for good (the server left and retries ran out).
    Closed(String),
}

impl Samples for Incoming {
    fn samples(&self) -> usize {
        match self {
            Incoming::Audio(pcm, _) => pcm.len(),
            _ => 0,
        }
    }
}

/// A frame to send: its number in the stream, and its samples.
type Frame = (u64, Vec<f32>);

/// A session on a remote server, stepped like a local model.
pub struct RemoteModel {
    info: ServerInfo,
    lockstep: bool,
    answer_timeout: Duration,
    lag_probe: Duration,
    cancel: Cancel,
    to_net: Arc<Outbox<Frame>>,
    from_net: Arc<Inbox<Incoming>>,
    /// Received samples from stream position `buf_start` on.
    buffer: VecDeque<f32>,
    buf_start: u64,
    text: String,
    /// Numbers and send times of frames whose answer has not fully arrived.
    sent_at: VecDeque<(u64, Instant)>,
    /// Samples received toward the oldest unanswered frame.
    partial: usize,
    /// Samples sent so far (the stream position of the next frame).
    sent: u64,
    /// How far playback lags what was sent, in samples (a multiple of 960).
    delay: u64,
    closed: Option<String>,
    /// False while the connection is down and retried.
    link_up: bool,
    /// When an answer last came too late (real time).
    last_late: Option<Instant>,
    /// Connection news for the engine to pass on.
    happenings: VecDeque<Happening>,
    stats: Arc<NetStats>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// What the network thread tells `connect` while it opens the first session.
enum Opening {
    Phase(ConnectPhase),
    Done(Result<ServerInfo, ConnectError>),
}

/// Connect, wait for the server's handshake, and return a model ready to step.
pub fn connect(opts: &ConnectOptions) -> Result<RemoteModel, ConnectError> {
    connect_with(opts, &mut |_, _| {})
}

/// `connect`, calling `waiting` about every 100 ms with the phase and the time spent,
/// so a caller can show progress and handle input meanwhile. Ends early, with
/// `ConnectError::Cancelled`, once `opts.cancel` is set.
pub fn connect_with(
    opts: &ConnectOptions,
    waiting: &mut dyn FnMut(ConnectPhase, Duration),
) -> Result<RemoteModel, ConnectError> {
    let url = chat_url(&opts.url, &opts.params)?;
    let stats = Arc::new(NetStats::default());
    let (ready_tx, ready_rx) = crossbeam_channel::unbounded();
    let to_net = Arc::new(Outbox::new(SEND_QUEUE_FRAMES));
    let from_net = Arc::new(Inbox::new(RECEIVE_QUEUE_SAMPLES));
    let (o, st, u) = (opts.clone(), stats.clone(), url.clone());
    let (outbox, inbox) = (to_net.clone(), from_net.clone());
    let thread = std::thread::Builder::new()
        .name("net-client".into())
        .spawn(move || {
            // However this thread ends, a step waiting for it wakes.
            let _ended = WriterGone(inbox.clone());
            let rt = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    let _ = ready_tx.send(Opening::Done(Err(ConnectError::Connect {
                        url: u,
                        why: e.to_string(),
                    })));
                    return;
                }
            };
            rt.block_on(async move {
                let phase = |p| {
                    let _ = ready_tx.send(Opening::Phase(p));
                };
                let opened = tokio::select! {
                    r = open(&u, &o, &phase) => r,
                    _ = outbox.closed() => return,
                };
                let mut ws = match opened {
                    Err(e) => {
                        let _ = ready_tx.send(Opening::Done(Err(e)));
                        return;
                    }
                    Ok((ws, info)) => {
                        let _ = ready_tx.send(Opening::Done(Ok(info)));
                        ws
                    }
                };
                loop {
                    let why = match pump(ws, &outbox, &inbox, &o, &st).await {
                        Stop::Quit => return,
                        Stop::Fatal(why) => {
                            tracing::warn!("connect: {why}");
                            inbox.push(Incoming::Closed(why));
                            return;
                        }
                        Stop::Dropped(why) => why,
                    };
                    tracing::warn!("connect: {why}");
                    match reconnect(&u, &o, why, &outbox, &inbox).await {
                        Some(w) => ws = w,
                        None => return,
                    }
                }
            });
        })
        .map_err(|e| ConnectError::Connect {
            url: url.clone(),
            why: e.to_string(),
        })?;
    let started = Instant::now();
    let mut phase = ConnectPhase::Connecting;
    let mut reported = Instant::now();
    let give_up = || {
        // The thread sees the closed queues at its next wait and ends on its own.
        to_net.close();
        from_net.close_reader();
    };
    let info = loop {
        if opts.cancel.is_cancelled() {
            give_up();
            return Err(ConnectError::Cancelled { url });
        }
        match ready_rx.recv_timeout(QUIT_POLL) {
            Ok(Opening::Phase(p)) => phase = p,
            Ok(Opening::Done(r)) => match r {
                Ok(info) => break info,
                Err(e) => return Err(e),
            },
            Err(crossbeam_channel::RecvTimeoutError::Timeout) => {}
            Err(crossbeam_channel::RecvTimeoutError::Disconnected) => {
                return Err(ConnectError::Connect {
                    url,
                    why: "the network thread ended".into(),
                })
            }
        }
        if reported.elapsed() >= Duration::from_millis(100) {
            reported = Instant::now();
            waiting(phase, started.elapsed());
        }
    };
    Ok(RemoteModel {
        info,
        lockstep: opts.lockstep,
        answer_timeout: opts.answer_timeout,
        lag_probe: opts.lag_probe,
        cancel: opts.cancel.clone(),
        to_net,
        from_net,
        buffer: VecDeque::with_capacity(FRAME_LEN * 8),
        buf_start: 0,
        text: String::new(),
        sent_at: VecDeque::new(),
        partial: 0,
        sent: 0,
        delay: 0,
        closed: None,
        link_up: true,
        last_late: None,
        happenings: VecDeque::new(),
        stats,
        thread: Some(thread),
    })
}

/// Marks the inbox's writer gone when the network thread ends, however it ends.
struct WriterGone(Arc<Inbox<Incoming>>);

impl Drop for WriterGone {
    fn drop(&mut self) {
        self.0.close_writer();
    }
}

/// Resolves only when the engine side closed the outbox; meanwhile the frames it
/// sends are thrown away (no session takes them).
async fn discard_until_closed(outbox: &Outbox<Frame>) {
    while outbox.recv().await.is_some() {}
}

/// The connection dropped (`why`): retry with backoff, dropping the frames sent
/// meanwhile (the new session starts fresh). `None`: retries ran out (the model is
/// told) or the model is gone.
async fn reconnect(
    url: &str,
    opts: &ConnectOptions,
    why: String,
    outbox: &Outbox<Frame>,
    incoming: &Inbox<Incoming>,
) -> Option<Ws> {
    let lost = Instant::now();
    let r = &opts.reconnect;
    let mut last = why.clone();
    for attempt in 1..=r.attempts {
        let wait = r.delay(attempt);
        let news = Incoming::Lost {
            why: last.clone(),
            attempt,
            of: r.attempts,
            retry_in: wait,
        };
        if !incoming.push(news) {
            return None;
        }
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = discard_until_closed(outbox) => return None,
        }
        let opened = tokio::select! {
            r = open(url, opts, &|_| {}) => r,
            _ = discard_until_closed(outbox) => return None,
        };
        match opened {
            Ok((ws, info)) => {
                outbox.clear();
                let outage = lost.elapsed();
                tracing::info!("connect: back after {:.1} s", outage.as_secs_f64());
                incoming.push(Incoming::Back { info, outage });
                return Some(ws);
            }
            Err(e) => last = e.to_string(),
        }
    }
    incoming.push(Incoming::Closed(if r.attempts == 0 {
        why
    } else {
        format!(
            "{why}; gave up reconnecting after {} attempts in {:.0} s: {last}",
            r.attempts,
            lost.elapsed().as_secs_f64()
        )
    }));
    None
}

/// The full URL: `/api/chat` when no path is given, and the session's query.
pub fn chat_url(url: &str, params: &SessionParams) -> Result<String, ConnectError> {
    let bad = |why: &str| ConnectError::BadUrl {
        url: url.into(),
        why: why.into(),
    };
    let (scheme, rest) = if let Some(r) = url.strip_prefix("ws://") {
        ("ws", r)
    } else if let Some(r) = url.strip_prefix("wss://") {
        ("wss", r)
    } else if let Some((scheme, _)) = url.split_once("://") {
        return Err(bad(&format!(
            "scheme {scheme}:// is neither ws:// nor wss://"
        )));
    } else {
        return Err(bad("no ws:// or wss:// scheme"));
    };
    let (host, path) = match rest.find(['/', '?']) {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, ""),
    };
    if host.is_empty() {
        return Err(bad("no host"));
    }
    let (path, query) = path.split_once('?').unwrap_or((path, ""));
    let path = if path.is_empty() || path == "/" {
        super::server::CHAT_PATH
    } else {
        path
    };
    let extra = params.to_query();
    let query = match (query.is_empty(), extra.is_empty()) {
        (true, true) => String::new(),
        (true, false) => format!("?{extra}"),
        (false, true) => format!("?{query}"),
        (false, false) => format!("?{query}&{extra}"),
    };
    Ok(format!("{scheme}://{host}{path}{query}"))
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn open(
    url: &str,
    opts: &ConnectOptions,
    phase: &dyn Fn(ConnectPhase),
) -> Result<(Ws, ServerInfo), ConnectError> {
    let mut req = url
        .into_client_request()
        .map_err(|e| ConnectError::BadUrl {
            url: url.into(),
            why: e.to_string(),
        })?;
    if let Some(t) = &opts.token {
        let v = t.parse().map_err(|_| ConnectError::BadUrl {
            url: url.into(),
            why: "the token is not a valid header value".into(),
        })?;
        req.headers_mut().insert(API_KEY_HEADER, v);
    }
    let connector = if url.starts_with("wss://") {
        let config = super::tls::client_config(opts.insecure).map_err(|why| ConnectError::Tls {
            url: url.into(),
            why,
        })?;
        tokio_tungstenite::Connector::Rustls(config)
    } else {
        tokio_tungstenite::Connector::Plain
    };
    let connecting = tokio_tungstenite::connect_async_tls_with_config(
        req,
        Some(ws_config(&opts.limits)),
        true,
        Some(connector),
    );
    let (mut ws, _) = match tokio::time::timeout(opts.connect_timeout, connecting).await {
        Err(_) => {
            return Err(ConnectError::Timeout {
                url: url.into(),
                secs: opts.connect_timeout.as_secs_f64(),
            })
        }
        Ok(Err(e)) => return Err(upgrade_error(url, e)),
        Ok(Ok(x)) => x,
    };
    phase(ConnectPhase::AwaitingHandshake);
    // Metadata may come first (moshi-backend); the handshake says the model is ready.
    let mut metadata = None;
    let deadline = tokio::time::Instant::now() + opts.handshake_timeout;
    loop {
        let msg = match tokio::time::timeout_at(deadline, ws.next()).await {
            Err(_) => {
                return Err(ConnectError::Timeout {
                    url: url.into(),
                    secs: opts.handshake_timeout.as_secs_f64(),
                })
            }
            Ok(None) => {
                return Err(ConnectError::NotKyutai {
                    url: url.into(),
                    why: "it closed the connection before its handshake".into(),
                })
            }
            Ok(Some(Err(e))) => {
                return Err(ConnectError::NotKyutai {
                    url: url.into(),
                    why: e.to_string(),
                })
            }
            Ok(Some(Ok(m))) => m,
        };
        let bytes = match msg {
            WsMessage::Binary(b) => b,
            WsMessage::Close(f) => {
                return Err(ConnectError::NotKyutai {
                    url: url.into(),
                    why: format!(
                        "it closed the connection before its handshake{}",
                        f.map(|f| format!(": {}", f.reason)).unwrap_or_default()
                    ),
                })
            }
            WsMessage::Text(_) => {
                return Err(ConnectError::NotKyutai {
                    url: url.into(),
                    why: "it sent a text frame (the protocol is binary)".into(),
                })
            }
            _ => continue,
        };
        match Message::parse(&bytes, &opts.limits) {
            Ok(Message::Handshake(h)) => {
                return Ok((
                    ws,
                    ServerInfo {
                        url: url.into(),
                        handshake: h,
                        metadata,
                        unchecked_certificate: opts.insecure && url.starts_with("wss://"),
                    },
                ))
            }
            Ok(Message::Metadata(m)) => metadata = Some(m),
            Ok(Message::Error(e)) => {
                return Err(ConnectError::Server {
                    url: url.into(),
                    message: e,
                })
            }
            Ok(_) => {}
            Err(e) => {
                return Err(ConnectError::NotKyutai {
                    url: url.into(),
                    why: e.to_string(),
                })
            }
        }
    }
}

fn upgrade_error(url: &str, e: tokio_tungstenite::tungstenite::Error) -> ConnectError {
    use tokio_tungstenite::tungstenite::Error as E;
    match e {
        E::Http(resp) => {
            let body = resp
                .body()
                .as_ref()
                .map(|b| {
                    String::from_utf8_lossy(&b[..b.len().min(300)])
                        .trim()
                        .to_string()
                })
                .filter(|b| !b.is_empty())
                .map(|b| format!(": {b}"))
                .unwrap_or_default();
            ConnectError::Http {
                url: url.into(),
                status: resp.status().as_u16(),
                body,
            }
        }
        E::Io(io) => match io
            .get_ref()
            .and_then(|e| e.downcast_ref::<rustls::Error>())
        {
            Some(tls) => ConnectError::Tls {
                url: url.into(),
                why: super::tls::describe(tls),
            },
            None if url.starts_with("wss://")
                && io.kind() == std::io::ErrorKind::UnexpectedEof =>
            {
                ConnectError::Tls {
                    url: url.into(),
                    why: format!("the server hung up during the TLS handshake ({io}); does it serve plain ws://? then connect with ws://"),
                }
            }
            None => ConnectError::Connect {
                url: url.into(),
                why: io.to_string(),
            },
        },
        E::Tls(tls) => ConnectError::Tls {
            url: url.into(),
            why: tls.to_string(),
        },
        E::Protocol(tokio_tungstenite::tungstenite::error::ProtocolError::HttparseError(h))
            if url.starts_with("ws://") =>
        {
            ConnectError::NotKyutai {
                url: url.into(),
                why: format!("its answer is not HTTP ({h}); if it serves TLS, connect with wss://"),
            }
        }
        other => ConnectError::NotKyutai {
            url: url.into(),
            why: other.to_string(),
        },
    }
}

/// Why a session's pump stopped.
enum Stop {
    /// The model was dropped (the user quit).
    Quit,
    /// The connection dropped: reconnect.
    Dropped(String),
    /// The server misbehaved or refused: reconnecting would get the same.
    Fatal(String),
}

type Sink = futures_util::stream::SplitSink<Ws, WsMessage>;

/// Send one message, within `dead_after`, unless the user quits first.
async fn send(
    sink: &mut Sink,
    msg: WsMessage,
    opts: &ConnectOptions,
    outbox: &Outbox<Frame>,
) -> Result<(), Stop> {
    tokio::select! {
        r = tokio::time::timeout(opts.dead_after, sink.send(msg)) => match r {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(Stop::Dropped(format!("sending to the server: {e}"))),
            Err(_) => Err(Stop::Dropped(format!(
                "the server took nothing for {:.0} s",
                opts.dead_after.as_secs_f64()
            ))),
        },
        _ = outbox.closed() => Err(Stop::Quit),
    }
}

/// The session: frames from the engine out as Opus, the server's audio and text in,
/// a ping every `ping_every`, and a dead link after `dead_after` of silence.
async fn pump(
    ws: Ws,
    outbox: &Outbox<Frame>,
    incoming: &Inbox<Incoming>,
    opts: &ConnectOptions,
    stats: &NetStats,
) -> Stop {
    let (mut sink, mut source) = ws.split();
    let stop = session(&mut sink, &mut source, outbox, incoming, opts, stats).await;
    if matches!(stop, Stop::Quit) {
        // A close frame if the socket takes it at once; a dead one is not waited for.
        let _ = tokio::time::timeout(CLOSE_GRACE, sink.close()).await;
    }
    stop
}

async fn session(
    sink: &mut Sink,
    source: &mut futures_util::stream::SplitStream<Ws>,
    outbox: &Outbox<Frame>,
    incoming: &Inbox<Incoming>,
    opts: &ConnectOptions,
    stats: &NetStats,
) -> Stop {
    let fatal = |e: anyhow::Error| Stop::Fatal(format!("{e:#}"));
    let mut writer = match OggOpusWriter::new() {
        Ok(w) => w,
        Err(e) => return fatal(e),
    };
    let mut reader = match OggOpusReader::new(opts.reader) {
        Ok(r) => r,
        Err(e) => return fatal(e),
    };
    let mut pcm = Vec::with_capacity(4 * FRAME_LEN);
    let mut first = true;
    let mut heard = tokio::time::Instant::now();
    let mut ping = tokio::time::interval(opts.ping_every);
    ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ping.tick().await; // the first tick is immediate
    loop {
        tokio::select! {
            _ = tokio::time::sleep_until(heard + opts.dead_after) => {
                return Stop::Dropped(format!(
                    "nothing from the server for {:.0} s",
                    opts.dead_after.as_secs_f64()
                ));
            }
            _ = ping.tick() => {
                if let Err(s) = send(sink, WsMessage::Ping(Default::default()), opts, outbox).await {
                    return s;
                }
            }
            frame = outbox.recv() => {
                let Some((seq, frame)) = frame else {
                    return Stop::Quit;
                };
                if std::mem::take(&mut first) && !incoming.push(Incoming::SessionStart(seq)) {
                    return Stop::Quit;
                }
                if let Err(e) = writer.push(&frame) {
                    return fatal(e);
                }
                let pages = writer.take();
                if !pages.is_empty() {
                    let bytes = Message::Audio(pages).encode();
                    stats.bytes_sent.fetch_add(bytes.len() as u64, Ordering::Relaxed);
                    if let Err(s) = send(sink, WsMessage::Binary(bytes.into()), opts, outbox).await {
                        return s;
                    }
                }
            }
            msg = source.next() => {
                // Anything at all, a pong included, says the link is alive.
                heard = tokio::time::Instant::now();
                let bytes = match msg {
                    None => return Stop::Dropped("the server closed the connection".into()),
                    Some(Err(e)) => {
                        use tokio_tungstenite::tungstenite::Error as E;
                        let why = format!("the connection failed: {e}");
                        return match e {
                            E::Io(_) | E::ConnectionClosed | E::AlreadyClosed | E::Protocol(_) => Stop::Dropped(why),
                            _ => Stop::Fatal(why),
                        };
                    }
                    Some(Ok(WsMessage::Binary(b))) => b,
                    Some(Ok(WsMessage::Close(f))) => {
                        return Stop::Dropped(format!(
                            "the server closed the session{}",
                            f.map(|f| format!(": {}", f.reason)).unwrap_or_default()
                        ))
                    }
                    Some(Ok(WsMessage::Text(_))) => {
                        return Stop::Fatal("the server sent a text frame (the protocol is binary)".into())
                    }
                    Some(Ok(_)) => continue, // ping (answered by tungstenite), pong
                };
                stats.bytes_received.fetch_add(bytes.len() as u64, Ordering::Relaxed);
                let delivered = match Message::parse(&bytes, &opts.limits) {
                    Ok(Message::Audio(pages)) => {
                        pcm.clear();
                        if let Err(e) = reader.feed(&pages, &mut pcm) {
                            return Stop::Fatal(format!("the server's audio: {e}"));
                        }
                        pcm.is_empty() || incoming.push(Incoming::Audio(pcm.clone(), Instant::now()))
                    }
                    Ok(Message::Text(t)) => incoming.push(Incoming::Text(t)),
                    Ok(Message::Error(e)) => return Stop::Fatal(format!("the server said: {e}")),
                    // Metadata, handshakes, pings, controls and moshi-server's extensions.
                    Ok(_) => true,
                    Err(e) => return Stop::Fatal(format!("the server sent a malformed message: {e}")),
                };
                if !delivered {
                    return Stop::Quit;
                }
            }
        }
    }
}

impl RemoteModel {
    pub fn server(&self) -> &ServerInfo {
        &self.info
    }

    pub fn stats(&self) -> Arc<NetStats> {
        self.stats.clone()
    }

    fn take(&mut self, ev: Incoming) {
        match ev {
            Incoming::Audio(pcm, at) => {
                self.stats
                    .frames_received
                    .fetch_add(pcm.len() as u64 / FRAME_LEN as u64, Ordering::Relaxed);
                self.partial += pcm.len();
                while self.partial >= FRAME_LEN {
                    self.partial -= FRAME_LEN;
                    if let Some((_, sent)) = self.sent_at.pop_front() {
                        let us = at.saturating_duration_since(sent).as_micros() as u64;
                        let s = &self.stats;
                        s.rtt_last_us.store(us, Ordering::Relaxed);
                        s.rtt_sum_us.fetch_add(us, Ordering::Relaxed);
                        s.rtt_count.fetch_add(1, Ordering::Relaxed);
                        s.rtt_max_us.fetch_max(us, Ordering::Relaxed);
                    }
                }
                self.buffer.extend(pcm);
                // A server sending more than it was sent cannot fill our memory.
                let cap = 4 * RATE as usize;
                if self.buffer.len() > cap {
                    let extra = self.buffer.len() - cap;
                    self.buffer.drain(..extra);
                    self.buf_start += extra as u64;
                }
            }
            Incoming::Text(t) => self.text.push_str(&t),
            Incoming::SessionStart(first) => {
                // The session's stream position 0 is our position `first * 1920`.
                self.buf_start = first * FRAME_LEN as u64;
                self.partial = 0;
                self.sent_at.retain(|(s, _)| *s >= first);
            }
            Incoming::Lost {
                why,
                attempt,
                of,
                retry_in,
            } => {
                if attempt == 1 {
                    self.stats.drops.fetch_add(1, Ordering::Relaxed);
                }
                self.link_up = false;
                self.happenings.push_back(Happening::LinkLost {
                    why,
                    attempt,
                    of,
                    retry_in_s: retry_in.as_secs_f64(),
                });
            }
            Incoming::Back { info, outage } => {
                self.stats.reconnects.fetch_add(1, Ordering::Relaxed);
                self.link_up = true;
                self.info = info;
                self.buffer.clear();
                self.buf_start = self.sent;
                self.partial = 0;
                self.delay = 0;
                self.last_late = None;
                self.stats.jitter_opus_frames.store(0, Ordering::Relaxed);
                self.happenings.push_back(Happening::LinkBack {
                    outage_s: outage.as_secs_f64(),
                });
            }
            Incoming::Closed(why) => self.closed = Some(why),
        }
    }

    /// Lock step with the connection down: wait until it is back, given up (each
    /// attempt has its deadline, and there are finitely many), or the user quits.
    fn wait_for_link(&mut self) -> anyhow::Result<()> {
        while !self.link_up && !self.cancel.is_cancelled() {
            if self.closed.is_some() {
                return Err(self.gone());
            }
            match self.from_net.recv_timeout(QUIT_POLL) {
                Waited::Item(ev) => self.take(ev),
                Waited::Timeout => {}
                Waited::Gone => return Err(self.gone()),
            }
        }
        if self.closed.is_some() {
            return Err(self.gone());
        }
        Ok(())
    }

    fn drain(&mut self) {
        while let Some(ev) = self.from_net.try_recv() {
            self.take(ev);
        }
        // Audio the bounded queues dropped: counted, and shown as a server behind.
        let s = &self.stats;
        let dropped = self.to_net.dropped.load(Ordering::Relaxed)
            + self.from_net.dropped.load(Ordering::Relaxed);
        let before =
            s.send_dropped.load(Ordering::Relaxed) + s.receive_dropped.load(Ordering::Relaxed);
        if dropped > before {
            s.send_dropped.store(
                self.to_net.dropped.load(Ordering::Relaxed),
                Ordering::Relaxed,
            );
            s.receive_dropped.store(
                self.from_net.dropped.load(Ordering::Relaxed),
                Ordering::Relaxed,
            );
            self.last_late = Some(Instant::now());
        }
    }

    fn gone(&self) -> anyhow::Error {
        anyhow::anyhow!(
            "{}: {}",
            self.info.url,
            self.closed.as_deref().unwrap_or("the session ended")
        )
    }

    /// Play stream positions `[end - 1920, end)` into `out` (positions before the
    /// stream are silence), waiting until `wait` for them. Returns false if they did
    /// not all arrive in time.
    fn play(&mut self, end: u64, wait: Duration, out: &mut [f32]) -> anyhow::Result<bool> {
        let deadline = Instant::now() + wait;
        while self.buf_start + (self.buffer.len() as u64) < end {
            if self.closed.is_some() {
                return Err(self.gone());
            }
            if !self.link_up || self.cancel.is_cancelled() {
                // Nothing to play while down, and not late; a quit is not waited out.
                return Ok(true);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match self.from_net.recv_timeout(left.min(QUIT_POLL)) {
                Waited::Item(ev) => self.take(ev),
                Waited::Timeout if Instant::now() >= deadline => return Ok(false),
                Waited::Timeout => {}
                Waited::Gone => return Err(self.gone()),
            }
        }
        let start = end.saturating_sub(FRAME_LEN as u64);
        // What is older than the frame due now is stale (it came too late): dropped.
        let stale = start.saturating_sub(self.buf_start) as usize;
        if stale > 0 {
            self.buffer.drain(..stale);
            self.buf_start += stale as u64;
            self.stats
                .dropped_frames
                .fetch_add(stale.div_ceil(FRAME_LEN) as u64, Ordering::Relaxed);
        }
        // Positions before the stream, or before this session's start, are silence.
        let n = end.saturating_sub(self.buf_start) as usize;
        for (o, s) in out[FRAME_LEN - n..].iter_mut().zip(self.buffer.drain(..n)) {
            *o = s;
        }
        self.buf_start += n as u64;
        Ok(true)
    }
}

impl DuplexModel for RemoteModel {
    fn info(&self) -> ModelInfo {
        ModelInfo {
            name: match self.info.model() {
                Some(m) => format!("{m} at {}", self.info.url),
                None => format!("remote {}", self.info.url),
            },
            device: "remote".into(),
            dtype: "opus".into(),
        }
    }
    fn sample_rate(&self) -> u32 {
        RATE
    }
    fn frame_len(&self) -> usize {
        FRAME_LEN
    }
    fn delay_frames(&self) -> usize {
        (self.delay as usize).div_ceil(FRAME_LEN)
    }
    fn step(&mut self, pcm_in: &[f32], out: &mut StepOutput) -> anyhow::Result<()> {
        anyhow::ensure!(
            pcm_in.len() == FRAME_LEN,
            "remote model: frame of {} samples, expected {FRAME_LEN}",
            pcm_in.len()
        );
        self.drain();
        if let Some(why) = &self.closed {
            anyhow::bail!("{}: {why}", self.info.url);
        }
        let seq = self.sent / FRAME_LEN as u64;
        // Stamped before the send: on a busy machine the answer can arrive before this
        // thread runs again, and a later stamp would make the round trip 0.
        let sent_at = Instant::now();
        if !self.to_net.push((seq, pcm_in.to_vec())) {
            return Err(self.gone());
        }
        self.sent_at.push_back((seq, sent_at));
        self.stats.frames_sent.fetch_add(1, Ordering::Relaxed);
        self.sent += FRAME_LEN as u64;
        let end = self.sent.saturating_sub(self.delay);
        if !self.link_up {
            // Down: silence. A file in lock step waits for the link (this frame is
            // lost with the old session); real time plays on.
            if self.lockstep {
                self.wait_for_link()?;
            }
        } else if self.lockstep {
            let probe = self.lag_probe.min(self.answer_timeout);
            if !self.play(end, probe, &mut out.pcm)?
                && self.delay < (MAX_LOCKSTEP_LAG * FRAME_LEN) as u64
            {
                // No answer yet: the server holds answers back (moshi-server sends no
                // audio during its model's acoustic delay). Play one frame further
                // behind from now on, and keep sending.
                self.delay += FRAME_LEN as u64;
                self.stats
                    .jitter_opus_frames
                    .store(self.delay / OPUS_FRAME as u64, Ordering::Relaxed);
            } else if !self.play(end, self.answer_timeout, &mut out.pcm)? {
                anyhow::bail!(
                    "{}: no audio from the server for {:.0} s",
                    self.info.url,
                    self.answer_timeout.as_secs_f64()
                );
            }
        } else {
            let wait = Duration::from_millis(40);
            if !self.play(end, wait, &mut out.pcm)? {
                // Late: silence now, and one more Opus frame of buffer from now on.
                self.stats.underruns.fetch_add(1, Ordering::Relaxed);
                self.last_late = Some(Instant::now());
                if self.delay < (MAX_JITTER * OPUS_FRAME) as u64 {
                    self.delay += OPUS_FRAME as u64;
                    self.stats
                        .jitter_opus_frames
                        .store(self.delay / OPUS_FRAME as u64, Ordering::Relaxed);
                }
            }
        }
        if !self.text.is_empty() {
            out.text = Some(std::mem::take(&mut self.text));
        }
        Ok(())
    }
    fn reset(&mut self) {
        // The server keeps its conversation; the text queued here is dropped.
        self.text.clear();
    }
    fn link(&self) -> Option<LinkStats> {
        let rtt = self.stats.rtt_last_us.load(Ordering::Relaxed);
        let frame_us = (FRAME_LEN as u64 * 1_000_000) / RATE as u64;
        let keeping_pace = self.link_up
            && if self.lockstep {
                rtt <= frame_us
            } else {
                self.last_late
                    .is_none_or(|t| t.elapsed() > Duration::from_secs(2))
            };
        Some(LinkStats {
            rtt_ms: rtt as f64 / 1000.0,
            jitter_ms: (self.delay * 1000 / RATE as u64) as u32,
            keeping_pace,
            connected: self.link_up,
        })
    }
    fn take_happening(&mut self) -> Option<Happening> {
        self.happenings.pop_front()
    }
}

impl Drop for RemoteModel {
    fn drop(&mut self) {
        // Closing the queues makes the network thread end whatever it waits on (a send,
        // a connect, a backoff): it sends a close frame if the socket takes it within
        // CLOSE_GRACE. Waited for no longer than that; a thread still running then is
        // left to end on its own.
        self.to_net.close();
        self.from_net.close_reader();
        if let Some(t) = self.thread.take() {
            let until = Instant::now() + CLOSE_GRACE + Duration::from_millis(50);
            while !t.is_finished() && Instant::now() < until {
                std::thread::sleep(Duration::from_millis(2));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The network thread's end of a fake model's inbox.
    struct Tx(Arc<Inbox<Incoming>>);

    impl Tx {
        fn send(&self, ev: Incoming) -> Result<(), ()> {
            self.0.push(ev).then_some(()).ok_or(())
        }
    }

    /// A model wired to queues instead of a network thread.
    fn fake(lockstep: bool) -> (RemoteModel, Tx, Arc<Outbox<Frame>>) {
        let to_net = Arc::new(Outbox::new(SEND_QUEUE_FRAMES));
        let from_net = Arc::new(Inbox::new(RECEIVE_QUEUE_SAMPLES));
        let (tx, frames) = (Tx(from_net.clone()), to_net.clone());
        let m = RemoteModel {
            info: ServerInfo {
                url: "ws://test/api/chat".into(),
                handshake: Handshake::Short,
                metadata: Some(serde_json::json!({"model": "fake"})),
                unchecked_certificate: false,
            },
            lockstep,
            answer_timeout: Duration::from_millis(200),
            lag_probe: Duration::from_millis(100),
            cancel: Cancel::new(),
            to_net,
            from_net,
            buffer: VecDeque::new(),
            buf_start: 0,
            text: String::new(),
            sent_at: VecDeque::new(),
            partial: 0,
            sent: 0,
            delay: 0,
            closed: None,
            link_up: true,
            last_late: None,
            happenings: VecDeque::new(),
            stats: Arc::new(NetStats::default()),
            thread: None,
        };
        (m, tx, frames)
    }

    fn frame(v: f32) -> Incoming {
        Incoming::Audio(vec![v; FRAME_LEN], Instant::now())
    }

    fn step(m: &mut RemoteModel) -> anyhow::Result<StepOutput> {
        let mut out = StepOutput::default();
        out.clear(FRAME_LEN);
        m.step(&[0.0; FRAME_LEN], &mut out)?;
        Ok(out)
    }

    #[test]
    fn jitter_buffer_grows_by_one_opus_frame_when_late_and_drops_stale_audio() {
        let (mut m, tx, sent) = fake(false);
        let jitter = |m: &RemoteModel| m.stats.jitter_opus_frames.load(Ordering::Relaxed);
        // The answer is there in time (text first): played at once, no added delay.
        tx.send(Incoming::Text(" hi".into())).unwrap();
        tx.send(frame(1.0)).unwrap();
        let out = step(&mut m).unwrap();
        assert_eq!((out.pcm[0], out.text.as_deref()), (1.0, Some(" hi")));
        assert_eq!(sent.try_recv().unwrap().1.len(), FRAME_LEN);
        assert_eq!(m.delay_frames(), 0);
        // Late by more than one Opus frame: silence, and the buffer grows by 40 ms.
        let t = Instant::now();
        assert_eq!(step(&mut m).unwrap().pcm[0], 0.0);
        assert!(t.elapsed() >= Duration::from_millis(40));
        assert_eq!(
            (m.stats.underruns.load(Ordering::Relaxed), jitter(&m)),
            (1, 1)
        );
        // Then play lags by 960 samples: the late audio's first half is stale.
        tx.send(frame(2.0)).unwrap();
        tx.send(frame(3.0)).unwrap();
        let out = step(&mut m).unwrap();
        assert_eq!((out.pcm[0], out.pcm[959], out.pcm[960]), (2.0, 2.0, 3.0));
        assert_eq!(m.stats.dropped_frames.load(Ordering::Relaxed), 1);
        // Late again: 80 ms of buffer now.
        assert_eq!(step(&mut m).unwrap().pcm[0], 0.0);
        assert_eq!(jitter(&m), 2);
        assert_eq!(m.delay_frames(), 1);
        tx.send(frame(4.0)).unwrap();
        assert_eq!(step(&mut m).unwrap().pcm, vec![4.0; FRAME_LEN]);
        // A burst after a stall plays in order, without waiting.
        for v in [5.0, 6.0, 7.0] {
            tx.send(frame(v)).unwrap();
        }
        let t = Instant::now();
        for v in [5.0, 6.0, 7.0] {
            assert_eq!(step(&mut m).unwrap().pcm[FRAME_LEN - 1], v);
        }
        assert!(t.elapsed() < Duration::from_millis(40));
        assert_eq!(m.stats.underruns.load(Ordering::Relaxed), 2);
    }

    #[test]
    fn lockstep_waits_for_the_answer_and_names_a_silent_or_gone_server() {
        let (mut m, tx, _sent) = fake(true);
        let t = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(30));
            tx.send(Incoming::Audio(vec![0.5; 960], Instant::now()))
                .unwrap();
            tx.send(Incoming::Audio(vec![0.5; 960], Instant::now()))
                .unwrap();
            tx
        });
        assert_eq!(step(&mut m).unwrap().pcm[FRAME_LEN - 1], 0.5);
        let tx = t.join().unwrap();
        // The round trip: from the frame's send to its answer's arrival.
        let rtt = m.stats.rtt_last_us.load(Ordering::Relaxed);
        assert!((25_000..1_000_000).contains(&rtt), "{rtt} µs");
        // A silent server: the lag grows one frame per probe, then the step gives up.
        for k in 1..=MAX_LOCKSTEP_LAG {
            assert_eq!(step(&mut m).unwrap().pcm, vec![0.0; FRAME_LEN]);
            assert_eq!(m.delay_frames(), k);
        }
        let e = step(&mut m).unwrap_err().to_string();
        assert!(e.contains("no audio from the server"), "{e}");
        tx.send(Incoming::Closed("the server closed the connection".into()))
            .unwrap();
        let e = step(&mut m).unwrap_err().to_string();
        assert!(e.contains("ws://test/api/chat: the server closed"), "{e}");
    }

    #[test]
    fn a_quit_ends_every_wait_of_a_step_at_once() {
        // Lock step, the server silent: without a quit the step waits for its answer.
        let (mut m, _tx, _sent) = fake(true);
        m.answer_timeout = Duration::from_secs(60);
        m.lag_probe = Duration::from_secs(60);
        let quit = m.cancel.clone();
        let t = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(100));
            quit.cancel();
        });
        let start = Instant::now();
        assert_eq!(step(&mut m).unwrap().pcm, vec![0.0; FRAME_LEN]);
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "{:?}",
            start.elapsed()
        );
        t.join().unwrap();
        // Lock step with the link down: the wait for it to come back ends on a quit too.
        let (mut m, tx, _sent) = fake(true);
        tx.send(Incoming::Lost {
            why: "test".into(),
            attempt: 1,
            of: 8,
            retry_in: Duration::from_secs(4),
        })
        .unwrap();
        let quit = m.cancel.clone();
        let t = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(100));
            quit.cancel();
        });
        let start = Instant::now();
        step(&mut m).unwrap();
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "{:?}",
            start.elapsed()
        );
        t.join().unwrap();
        // The network thread gone while a step waits: the step ends with the reason.
        let (mut m, tx, _sent) = fake(true);
        m.answer_timeout = Duration::from_secs(60);
        m.lag_probe = Duration::from_secs(60);
        let t = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(100));
            tx.0.close_writer();
        });
        let e = step(&mut m).unwrap_err().to_string();
        assert!(e.contains("the session ended"), "{e}");
        t.join().unwrap();
    }

    #[test]
    fn lockstep_follows_a_server_that_answers_frames_late() {
        // As moshi-server: no audio during its model's first two steps, then one frame
        // per frame received.
        let (mut m, tx, _sent) = fake(true);
        assert_eq!(step(&mut m).unwrap().pcm[0], 0.0);
        assert_eq!(step(&mut m).unwrap().pcm[0], 0.0);
        assert_eq!(m.delay_frames(), 2);
        for v in [1.0, 2.0, 3.0] {
            tx.send(frame(v)).unwrap();
            let t = Instant::now();
            assert_eq!(step(&mut m).unwrap().pcm, vec![v; FRAME_LEN]);
            assert!(t.elapsed() < Duration::from_millis(50));
        }
        assert_eq!(m.delay_frames(), 2);
    }

    #[test]
    fn urls() {
        let p = SessionParams::default();
        assert_eq!(
            chat_url("ws://127.0.0.1:8998", &p).unwrap(),
            "ws://127.0.0.1:8998/api/chat"
        );
        assert_eq!(
            chat_url("ws://h:1/other?x=1", &p).unwrap(),
            "ws://h:1/other?x=1"
        );
        let p = SessionParams {
            text_temperature: Some(0.0),
            ..Default::default()
        };
        assert_eq!(
            chat_url("ws://h:1/", &p).unwrap(),
            "ws://h:1/api/chat?text_temperature=0"
        );
        assert_eq!(
            chat_url("wss://h:1", &p).unwrap(),
            "wss://h:1/api/chat?text_temperature=0"
        );
        assert!(matches!(
            chat_url("http://h", &p),
            Err(ConnectError::BadUrl { .. })
        ));
        assert!(matches!(
            chat_url("h:8998", &p),
            Err(ConnectError::BadUrl { .. })
        ));
        assert!(matches!(
            chat_url("ws:///api/chat", &p),
            Err(ConnectError::BadUrl { .. })
        ));
    }
}
