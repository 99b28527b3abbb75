//! `assistant serve`: Kyutai's `/api/chat` over WebSocket, one engine per session
//! (its model forked from the one `serve` loaded: `app::serve`).
//!
//! Each session: the client's Ogg/Opus is decoded on a tokio task and pushed into
//! the engine's input ring; the engine thread steps its own model and pushes into an
//! output ring; after each step (an engine event) the session drains that ring into
//! the Opus encoder and sends the pages, with the step's text before its audio, as
//! Kyutai's servers do. The engine thread never awaits and the network never waits
//! for the engine: the rings and a channel are all they share.
//!
//! Order on the wire, as `moshi-backend`: metadata (kind 4), then the handshake once
//! the session's model is ready, then text and audio.
//!
//! No client can hold the server: every send goes through a bounded queue to a writer
//! task whose sends have a deadline, the server pings every second, and a session
//! whose client sent no message (once it had its handshake) or answered no ping for
//! `idle` ends and frees its slot (`server/session.rs`). The same
//! port answers plain HTTP GETs (`net::http`): health, readiness and metrics. `drain`
//! stops accepting, lets sessions finish up to a deadline, then closes them with a
//! reason the client shows.

mod session;

use super::http::{self, Head, Prefixed};
use super::metrics::Capacity;
pub use super::metrics::ServerStats;
use super::opus_ogg::{ReaderLimits, SAMPLE_RATE};
use super::protocol::{Limits, Message, SessionParams};
use crate::engine::load::Loader;
use crate::engine::EngineEvent;
use futures_util::{SinkExt, StreamExt};
use session::{Session, SessionCtx, WsSource};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Semaphore};
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http::StatusCode;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message as WsMessage;

/// The path Kyutai's clients connect to.
pub const CHAT_PATH: &str = "/api/chat";
/// The header `moshi-server` reads a token from (as well as the `auth_id` query key).
pub const API_KEY_HEADER: &str = "kyutai-api-key";

/// Builds the engine's model loader for one session, from its query parameters.
pub type LoaderFactory = Arc<dyn Fn(&SessionParams) -> Loader + Send + Sync>;

/// Sees a session's engine events on their way to the session (a journal tees them):
/// given the peer and the events, returns the events to forward.
pub type EventTap = Arc<
    dyn Fn(
            SocketAddr,
            crossbeam_channel::Receiver<EngineEvent>,
        ) -> crossbeam_channel::Receiver<EngineEvent>
        + Send
        + Sync,
>;

#[derive(Debug, Clone)]
pub struct ServeOptions {
    pub addr: SocketAddr,
    /// Required from every client when set (query `auth_id` or header `kyutai-api-key`).
    pub token: Option<String>,
    /// Allow a non-local bind without a token (explicitly asked for).
    pub no_auth: bool,
    pub max_sessions: usize,
    /// Clients that may wait for a free session when all are in use.
    pub queue: usize,
    /// How long a queued client waits before it is told "busy".
    pub queue_wait: Duration,
    pub limits: Limits,
    pub reader: ReaderLimits,
    /// A session that has heard nothing from its client for this long (no audio, no
    /// pong to the server's pings: the client stopped reading or the link died) is
    /// closed and its slot freed. Well inside a client's reconnect window, so its
    /// reconnection finds the slot free.
    pub idle: Duration,
    /// A message the client does not take within this ends the session.
    pub send_timeout: Duration,
    /// How often the server pings each client.
    pub ping_interval: Duration,
    /// The HTTP upgrade must complete within this.
    pub handshake_timeout: Duration,
    /// Input frames the engine may fall behind before it drops the oldest.
    pub max_backlog: usize,
    /// Shown in the metadata (`instance_name`, `model`).
    pub model_name: String,
    /// Serve `wss://` with this (from `--cert` and `--key`); plain `ws://` without.
    pub tls: Option<Arc<rustls::ServerConfig>>,
}

impl Default for ServeOptions {
    fn default() -> Self {
        Self {
            addr: SocketAddr::from(([127, 0, 0, 1], 8998)),
            token: None,
            no_auth: false,
            max_sessions: 1,
            queue: 0,
            queue_wait: Duration::from_secs(30),
            limits: Limits::default(),
            reader: ReaderLimits::default(),
            idle: Duration::from_secs(5),
            send_timeout: Duration::from_secs(5),
            ping_interval: Duration::from_secs(1),
            handshake_timeout: Duration::from_secs(10),
            max_backlog: 3,
            model_name: "assistant".into(),
            tls: None,
        }
    }
}

/// A running server; dropping it (or `stop`) ends it and its sessions.
pub struct Server {
    addr: SocketAddr,
    pub stats: Arc<ServerStats>,
    phase: Arc<watch::Sender<Phase>>,
    /// The sessions' model, once loaded (`loaded`); until then sessions are refused
    /// with "loading" and `/readyz` says so.
    factory: Arc<std::sync::OnceLock<LoaderFactory>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// Where the server is in its life; sessions and the accept loop watch it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Serving,
    /// No new connections; sessions run on.
    Draining,
    /// The drain's deadline passed: sessions close now, with a reason.
    Closing,
}

/// What a drain did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Drained {
    /// Sessions running when the drain began.
    pub active: u64,
    /// Of those, the ones that ended by themselves before the deadline.
    pub finished: u64,
    /// Those closed at the deadline.
    pub closed: u64,
    pub waited: Duration,
}

/// What the client is told when a drain's deadline closes its session.
pub const DRAIN_REASON: &str =
    "the server is shutting down (drained for maintenance): reconnect to reach another instance";

/// Shortest token `serve` accepts: 16 bytes, so a guessable word never guards a
/// server reachable from other machines.
pub const MIN_TOKEN: usize = 16;

/// Why the server did not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("refusing to serve {0} without authentication: it is reachable from other machines; pass --token SECRET (clients send it as ?auth_id= or the kyutai-api-key header) or --no-auth")]
    NeedsAuth(SocketAddr),
    #[error("cannot listen on {addr}: {why}")]
    Bind { addr: SocketAddr, why: String },
    #[error("--max-sessions must be at least 1")]
    NoSessions,
    #[error("the token is {0} bytes long; it must be at least {MIN_TOKEN} (an empty --token= or ASSISTANT_TOKEN counts as none): generate one with `openssl rand -hex 16`")]
    WeakToken(usize),
}

impl Server {
    /// Bind and start serving on a thread of its own (a tokio runtime with two workers).
    pub fn start(opts: ServeOptions, factory: LoaderFactory) -> Result<Self, StartError> {
        Self::start_with(opts, factory, None)
    }

    /// As `start`, with a tap on every session's engine events.
    pub fn start_with(
        opts: ServeOptions,
        factory: LoaderFactory,
        tap: Option<EventTap>,
    ) -> Result<Self, StartError> {
        let s = Self::start_loading(opts, tap)?;
        s.loaded(factory);
        Ok(s)
    }

    /// Bind and answer before the model is loaded: `/healthz` says alive, `/readyz`
    /// "loading", and a client is told the server is loading; `loaded` opens it.
    pub fn start_loading(opts: ServeOptions, tap: Option<EventTap>) -> Result<Self, StartError> {
        if !opts.addr.ip().is_loopback() && opts.token.is_none() && !opts.no_auth {
            return Err(StartError::NeedsAuth(opts.addr));
        }
        if opts.max_sessions == 0 {
            return Err(StartError::NoSessions);
        }
        if let Some(t) = &opts.token {
            if t.len() < MIN_TOKEN {
                return Err(StartError::WeakToken(t.len()));
            }
        }
        let want = opts.addr;
        let bind_err = move |e: std::io::Error| StartError::Bind {
            addr: want,
            why: e.to_string(),
        };
        let std_listener = std::net::TcpListener::bind(opts.addr).map_err(bind_err)?;
        std_listener.set_nonblocking(true).map_err(bind_err)?;
        let addr = std_listener.local_addr().map_err(bind_err)?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("net-server")
            .enable_all()
            .build()
            .map_err(bind_err)?;
        let stats = Arc::new(ServerStats::default());
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel();
        let st = stats.clone();
        let phase = Arc::new(watch::Sender::new(Phase::Serving));
        let ph = phase.clone();
        let factory = Arc::new(std::sync::OnceLock::new());
        let f = factory.clone();
        let thread = std::thread::Builder::new()
            .name("net-serve".into())
            .spawn(move || {
                runtime.block_on(async move {
                    let listener = match TcpListener::from_std(std_listener) {
                        Ok(l) => l,
                        Err(e) => {
                            tracing::error!("serve: {e}");
                            return;
                        }
                    };
                    // The accept loop ends on a drain; the sessions run on until stopped.
                    tokio::spawn(accept_loop(listener, Arc::new(opts), (f, tap), st, ph));
                    let _ = stop_rx.await;
                });
                // Sessions still running end with the runtime; their engines see the
                // input end and stop.
                runtime.shutdown_timeout(Duration::from_secs(2));
            })
            .map_err(bind_err)?;
        Ok(Self {
            addr,
            stats,
            phase,
            factory,
            stop: Some(stop_tx),
            thread: Some(thread),
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The model is loaded: sessions start from now on (a second call changes nothing).
    pub fn loaded(&self, factory: LoaderFactory) {
        let _ = self.factory.set(factory);
    }

    /// Wait until the server stops (it does not, unless stopped from elsewhere).
    pub fn wait(mut self) {
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }

    pub fn stop(mut self) {
        self.shutdown();
    }

    /// Stop accepting (the port closes: a load balancer sends new clients elsewhere),
    /// let the sessions finish until `deadline`, then close those left with
    /// `DRAIN_REASON` and wait (a few seconds at most) for them to end.
    pub fn drain(&self, deadline: Duration) -> Drained {
        self.drain_until(deadline, || false)
    }

    /// As `drain`, closing the sessions at once when `now()` says so (a second signal).
    pub fn drain_until(&self, deadline: Duration, now: impl Fn() -> bool) -> Drained {
        let start = Instant::now();
        let active = self.stats.active.load(Ordering::Acquire);
        let ended = self.stats.sessions_ended.load(Ordering::Acquire);
        self.phase.send_replace(Phase::Draining);
        while self.stats.active.load(Ordering::Acquire) > 0 && start.elapsed() < deadline && !now()
        {
            std::thread::sleep(Duration::from_millis(20));
        }
        let finished = self.stats.sessions_ended.load(Ordering::Acquire) - ended;
        let left = self.stats.active.load(Ordering::Acquire);
        if left > 0 {
            self.phase.send_replace(Phase::Closing);
            let closing = Instant::now();
            while self.stats.active.load(Ordering::Acquire) > 0
                && closing.elapsed() < Duration::from_secs(5)
            {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        Drained {
            active,
            finished: finished.min(active),
            closed: left,
            waited: start.elapsed(),
        }
    }

    /// Whether the server is draining (or closing its sessions).
    pub fn phase(&self) -> Phase {
        *self.phase.borrow()
    }

    fn shutdown(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.shutdown();
    }
}

async fn accept_loop(
    listener: TcpListener,
    opts: Arc<ServeOptions>,
    hooks: Hooks,
    stats: Arc<ServerStats>,
    phase: Arc<watch::Sender<Phase>>,
) {
    let permits = Arc::new(Semaphore::new(opts.max_sessions));
    let mut watching = phase.subscribe();
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = watching.wait_for(|p| *p != Phase::Serving) => {
                tracing::info!("serve: draining: no new connections");
                return;
            }
        };
        let (stream, peer) = match accepted {
            Ok(s) => s,
            Err(e) => {
                // Out of file descriptors and the like: keep serving the others.
                tracing::warn!("serve: accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        stats.accepted.fetch_add(1, Ordering::Relaxed);
        let _ = stream.set_nodelay(true);
        let shared = Shared {
            opts: opts.clone(),
            hooks: hooks.clone(),
            stats: stats.clone(),
            permits: permits.clone(),
            phase: phase.subscribe(),
        };
        tokio::spawn(async move {
            connection(stream, peer, shared).await;
        });
    }
}

/// The sessions' model (once loaded) and the events' tap.
type Hooks = (Arc<std::sync::OnceLock<LoaderFactory>>, Option<EventTap>);

/// What every connection shares.
struct Shared {
    opts: Arc<ServeOptions>,
    hooks: Hooks,
    stats: Arc<ServerStats>,
    permits: Arc<Semaphore>,
    phase: watch::Receiver<Phase>,
}

impl Shared {
    fn capacity(&self) -> Capacity {
        let draining = *self.phase.borrow() != Phase::Serving;
        Capacity {
            max_sessions: self.opts.max_sessions,
            loaded: self.hooks.0.get().is_some(),
            ready: self.hooks.0.get().is_some()
                && !draining
                && self.permits.available_permits() > 0,
            draining,
        }
    }
}

/// A plain GET beside the WebSocket: health, readiness, metrics.
async fn answer_http(stream: &mut Stream, path: &str, shared: &Shared) {
    let cap = shared.capacity();
    let (status, kind, body) = match path {
        http::HEALTH_PATH => (200, "text/plain", "ok\n".to_string()),
        http::READY_PATH if cap.ready => (200, "text/plain", "ready\n".to_string()),
        http::READY_PATH if cap.draining => (503, "text/plain", "draining\n".to_string()),
        http::READY_PATH if !cap.loaded => (
            503,
            "text/plain",
            "loading the model\n".to_string(),
        ),
        http::READY_PATH => (
            503,
            "text/plain",
            format!("busy: all {} sessions in use\n", cap.max_sessions),
        ),
        http::METRICS_PATH => (
            200,
            "text/plain; version=0.0.4",
            super::metrics::render(&shared.stats, &cap),
        ),
        _ => (
            404,
            "text/plain",
            format!(
                "no endpoint here: Kyutai's protocol is at {CHAT_PATH} (WebSocket); {}, {} and {} answer GET\n",
                http::HEALTH_PATH,
                http::READY_PATH,
                http::METRICS_PATH
            ),
        ),
    };
    let _ = tokio::time::timeout(
        shared.opts.send_timeout,
        http::respond(stream, status, kind, &body),
    )
    .await;
}

/// The upgrade request's verdict: the session's parameters, or an HTTP refusal.
fn check_request(
    req: &Request,
    opts: &ServeOptions,
) -> Result<SessionParams, (StatusCode, String)> {
    if req.uri().path() != CHAT_PATH {
        return Err((
            StatusCode::NOT_FOUND,
            format!(
                "no endpoint at {}: this server speaks Kyutai's protocol at {CHAT_PATH}",
                req.uri().path()
            ),
        ));
    }
    let params = SessionParams::from_query(req.uri().query().unwrap_or(""))
        .map_err(|e| (StatusCode::BAD_REQUEST, e))?;
    if let Some(token) = &opts.token {
        let header = req
            .headers()
            .get(API_KEY_HEADER)
            .and_then(|v| v.to_str().ok());
        let given = params.auth_id.as_deref().or(header);
        if !given.is_some_and(|g| constant_time_eq(g.as_bytes(), token.as_bytes())) {
            return Err((
                StatusCode::UNAUTHORIZED,
                "a token is required: send it as ?auth_id= or the kyutai-api-key header".into(),
            ));
        }
    }
    Ok(params)
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

pub fn ws_config(limits: &Limits) -> WebSocketConfig {
    WebSocketConfig::default()
        .max_message_size(Some(limits.max_message))
        .max_frame_size(Some(limits.max_message))
        .max_write_buffer_size(4 * 1024 * 1024)
}

/// A client's byte stream: plain TCP or TLS over it.
trait Io: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send> Io for T {}
type Stream = Box<dyn Io>;

async fn connection(stream: TcpStream, peer: SocketAddr, shared: Shared) {
    let (opts, stats, permits) = (&shared.opts, &shared.stats, &shared.permits);
    let (factory, tap) = &shared.hooks;
    let mut params = None;
    // The callback's signature (an `http::Response` as its error) is tungstenite's.
    #[allow(clippy::result_large_err)]
    let callback = |req: &Request, resp: Response| -> Result<Response, ErrorResponse> {
        match check_request(req, opts) {
            Ok(p) => {
                params = Some(p);
                Ok(resp)
            }
            Err((status, why)) => {
                let mut r = ErrorResponse::new(Some(why));
                *r.status_mut() = status;
                Err(r)
            }
        }
    };
    let deadline = tokio::time::Instant::now() + opts.handshake_timeout;
    let mut stream: Stream = match &opts.tls {
        None => Box::new(stream),
        Some(config) => {
            let accept = tokio_rustls::TlsAcceptor::from(config.clone()).accept(stream);
            match tokio::time::timeout_at(deadline, accept).await {
                Ok(Ok(s)) => Box::new(s),
                Ok(Err(e)) => {
                    stats.rejected.fetch_add(1, Ordering::Relaxed);
                    tracing::info!("serve: {peer}: TLS handshake failed: {e}");
                    return;
                }
                Err(_) => {
                    stats.rejected.fetch_add(1, Ordering::Relaxed);
                    tracing::info!(
                        "serve: {peer}: no TLS handshake within {:?}",
                        opts.handshake_timeout
                    );
                    return;
                }
            }
        }
    };
    // Plain HTTP (health, metrics) or a WebSocket upgrade, on the same port.
    let head = match tokio::time::timeout_at(deadline, http::read_head(&mut stream)).await {
        Ok(Ok((bytes, head))) => (bytes, head),
        Ok(Err(e)) => {
            stats.rejected.fetch_add(1, Ordering::Relaxed);
            tracing::info!("serve: {peer}: no request: {e}");
            return;
        }
        Err(_) => {
            stats.rejected.fetch_add(1, Ordering::Relaxed);
            tracing::info!(
                "serve: {peer}: no request within {:?}",
                opts.handshake_timeout
            );
            return;
        }
    };
    let stream: Stream = match head {
        (_, Head::Get(path)) => {
            answer_http(&mut stream, &path, &shared).await;
            return;
        }
        (bytes, _) => Box::new(Prefixed::new(bytes, stream)),
    };
    let upgrade = tokio_tungstenite::accept_hdr_async_with_config(
        stream,
        callback,
        Some(ws_config(&opts.limits)),
    );
    let ws = match tokio::time::timeout_at(deadline, upgrade).await {
        Ok(Ok(ws)) => ws,
        Ok(Err(e)) => {
            stats.rejected.fetch_add(1, Ordering::Relaxed);
            tracing::info!("serve: {peer}: refused: {e}");
            return;
        }
        Err(_) => {
            stats.rejected.fetch_add(1, Ordering::Relaxed);
            tracing::info!(
                "serve: {peer}: no WebSocket upgrade within {:?}",
                opts.handshake_timeout
            );
            return;
        }
    };
    let params = params.unwrap_or_default();
    let (mut sink, mut source) = ws.split();
    let Some(factory) = factory.get() else {
        stats.busy.fetch_add(1, Ordering::Relaxed);
        let msg = Message::Error(
            "loading: the server is still loading its model; try again in a moment".into(),
        );
        let bye = async {
            let _ = sink.send(WsMessage::Binary(msg.encode().into())).await;
            let _ = sink.close().await;
        };
        let _ = tokio::time::timeout(opts.send_timeout, bye).await;
        return;
    };
    let waited = Instant::now();
    let permit = match permits.clone().try_acquire_owned() {
        Ok(p) => Some(p),
        Err(_) => {
            let phase = shared.phase.clone();
            queue(&mut source, peer, opts, stats, (permits.clone(), phase)).await
        }
    };
    // A client that queued, or upgraded, while a drain began gets no new session.
    if *shared.phase.borrow() != Phase::Serving {
        let msg = Message::Error(DRAIN_REASON.into());
        let bye = async {
            let _ = sink.send(WsMessage::Binary(msg.encode().into())).await;
            let _ = sink.close().await;
        };
        let _ = tokio::time::timeout(opts.send_timeout, bye).await;
        return;
    }
    let Some(_permit) = permit else {
        stats.busy.fetch_add(1, Ordering::Relaxed);
        tracing::info!(
            "serve: {peer}: busy ({} sessions, waited {:.1} s)",
            opts.max_sessions,
            waited.elapsed().as_secs_f64()
        );
        let msg = Message::Error(format!(
            "busy: this server runs {} session(s) at a time and all are in use; try again later",
            opts.max_sessions
        ));
        let bye = async {
            let _ = sink.send(WsMessage::Binary(msg.encode().into())).await;
            let _ = sink.close().await;
        };
        let _ = tokio::time::timeout(opts.send_timeout, bye).await;
        return;
    };
    stats.sessions.fetch_add(1, Ordering::Relaxed);
    stats.active.fetch_add(1, Ordering::AcqRel);
    let started = Instant::now();
    let ctx = SessionCtx {
        opts,
        factory,
        peer,
        tap: tap.clone(),
        stats: stats.clone(),
        phase: shared.phase.clone(),
    };
    let summary = Session::run(sink, source, params, ctx).await;
    stats.sessions_ended.fetch_add(1, Ordering::AcqRel);
    stats.active.fetch_sub(1, Ordering::AcqRel);
    if summary.stalled {
        stats.sessions_stalled.fetch_add(1, Ordering::Relaxed);
    }
    if summary.drained {
        stats.sessions_drained.fetch_add(1, Ordering::Relaxed);
    }
    if summary.protocol_error {
        stats.protocol_errors.fetch_add(1, Ordering::Relaxed);
    }
    tracing::info!(
        "serve: session {peer}: {:.1} s, audio {:.1} s in, {:.1} s out, {} frames dropped by the engine, {:.2} s lost to a full input ring, ended: {}",
        started.elapsed().as_secs_f64(),
        summary.samples_in as f64 / SAMPLE_RATE as f64,
        summary.samples_out as f64 / SAMPLE_RATE as f64,
        summary.dropped_frames,
        summary.overflow as f64 / SAMPLE_RATE as f64,
        summary.ended
    );
}

/// All sessions are in use: wait for one, in turn, if the queue has room, at most
/// `queue_wait`. What the client sends meanwhile is dropped; a client that leaves
/// gives up its place. `None`: no place, no slot in time, a drain, or the client left.
async fn queue(
    source: &mut WsSource,
    peer: SocketAddr,
    opts: &ServeOptions,
    stats: &ServerStats,
    (permits, mut phase): (Arc<Semaphore>, watch::Receiver<Phase>),
) -> Option<tokio::sync::OwnedSemaphorePermit> {
    let place = stats.queued.fetch_add(1, Ordering::AcqRel);
    let _leave = Leave(&stats.queued);
    if place >= opts.queue as u64 {
        return None;
    }
    tracing::info!(
        "serve: {peer}: all sessions in use; waiting (place {})",
        place + 1
    );
    let deadline = tokio::time::Instant::now() + opts.queue_wait;
    let acquire = permits.acquire_owned();
    tokio::pin!(acquire);
    loop {
        tokio::select! {
            p = &mut acquire => return p.ok(),
            _ = tokio::time::sleep_until(deadline) => return None,
            // A drain: no slot will be given out any more.
            _ = phase.wait_for(|p| *p != Phase::Serving) => return None,
            m = source.next() => match m {
                None | Some(Err(_)) | Some(Ok(WsMessage::Close(_))) => return None,
                Some(Ok(_)) => {}
            },
        }
    }
}

/// Leaves the queue when dropped.
struct Leave<'a>(&'a AtomicU64);

impl Drop for Leave<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}
