//! The network thread: connect, then pump one session (frames out as Ogg/Opus, the
//! server's audio and text in, pings, a dead link after `dead_after` of silence), and
//! after a drop reconnect with backoff, telling the model through its inbox.

use super::handshake::{chat_url, open, Ws};
use super::queues::{Inbox, Outbox};
use super::{
    ConnectError, ConnectOptions, ConnectPhase, Frame, Incoming, NetStats, RemoteModel, ServerInfo,
    CLOSE_GRACE, FRAME_LEN, QUIT_POLL, RECEIVE_QUEUE_SAMPLES, SEND_QUEUE_FRAMES,
};
use crate::net::opus_ogg::{OggOpusReader, OggOpusWriter};
use crate::net::protocol::Message;
use futures_util::{SinkExt, StreamExt};
use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::Message as WsMessage;

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
