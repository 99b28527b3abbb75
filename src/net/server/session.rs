//! One session of `serve`: the engine on its thread, the client's audio into it, its
//! output to a writer task through a bounded queue (never awaited, so the idle and
//! ping timers run whatever the client does), until the client leaves, stalls, a
//! drain closes it, or the engine stops.

use super::{EventTap, LoaderFactory, Phase, ServeOptions, ServerStats, Stream, DRAIN_REASON};
use crate::audio::device::{ring_for, AudioFormat};
use crate::audio::meters::Meters;
use crate::audio::port::{InputPort, OutputPort};
use crate::engine::runner::{self, EngineSetup};
use crate::engine::{Command, EngineEvent};
use crate::net::opus_ogg::{OggOpusReader, OggOpusWriter, SAMPLE_RATE};
use crate::net::protocol::{Handshake, Message, SessionParams, PROTOCOL_VERSION};
use futures_util::{SinkExt, StreamExt};
use ringbuf::traits::{Consumer, Producer};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, watch};
use tokio_tungstenite::tungstenite::Message as WsMessage;

/// What the engine thread tells the session.
enum FromEngine {
    Ready,
    Text(String),
    Step,
    Failed(String),
    Stopped,
}

#[derive(Debug, Default)]
pub(super) struct Summary {
    pub(super) samples_in: usize,
    pub(super) samples_out: usize,
    /// Input samples that did not fit the engine's input ring.
    pub(super) overflow: usize,
    /// Frames the engine dropped to keep up.
    pub(super) dropped_frames: u64,
    pub(super) ended: String,
    pub(super) protocol_error: bool,
    /// The client stopped reading or went silent.
    pub(super) stalled: bool,
    /// Closed by a drain's deadline.
    pub(super) drained: bool,
}

pub(super) type WsSink =
    futures_util::stream::SplitSink<tokio_tungstenite::WebSocketStream<Stream>, WsMessage>;
pub(super) type WsSource =
    futures_util::stream::SplitStream<tokio_tungstenite::WebSocketStream<Stream>>;

/// What a session needs from its server.
pub(super) struct SessionCtx<'a> {
    pub(super) opts: &'a ServeOptions,
    pub(super) factory: &'a LoaderFactory,
    pub(super) peer: SocketAddr,
    pub(super) tap: Option<EventTap>,
    pub(super) stats: Arc<ServerStats>,
    pub(super) phase: watch::Receiver<Phase>,
}

/// Messages waiting for the writer: about ten seconds of a session's output. A client
/// that lets it fill is not reading, and its session ends.
const OUT_QUEUE: usize = 256;

/// Why a session ended: the reason, whether the client misbehaved (a protocol error),
/// and whether it stalled (stopped reading, went silent).
struct End {
    why: String,
    hostile: bool,
    stalled: bool,
}

impl End {
    fn bad(why: impl Into<String>, hostile: bool) -> Self {
        Self {
            why: why.into(),
            hostile,
            stalled: false,
        }
    }
    fn stalled(why: String) -> Self {
        Self {
            why,
            hostile: false,
            stalled: true,
        }
    }
}

/// The session's side of its writer: a bounded queue, never awaited.
struct Outbox {
    tx: mpsc::Sender<WsMessage>,
}

impl Outbox {
    fn put(&self, m: &Message) -> Result<(), End> {
        self.put_ws(WsMessage::Binary(m.encode().into()))
    }

    fn put_ws(&self, m: WsMessage) -> Result<(), End> {
        self.tx.try_send(m).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => End::stalled(format!(
                "the client is not reading: {OUT_QUEUE} messages wait for it"
            )),
            // The writer ended: it said why (a send timed out or failed).
            mpsc::error::TrySendError::Closed(_) => End::bad("the connection closed", false),
        })
    }
}

/// Sends the queue's messages, each within `deadline`; on the queue's end, closes.
/// Returns why it stopped early, if it did.
async fn write_loop(
    mut sink: WsSink,
    mut rx: mpsc::Receiver<WsMessage>,
    deadline: Duration,
    stats: Arc<ServerStats>,
) -> Option<String> {
    while let Some(m) = rx.recv().await {
        let n = m.len() as u64;
        match tokio::time::timeout(deadline, sink.send(m)).await {
            Ok(Ok(())) => {
                stats.bytes_out.fetch_add(n, Ordering::Relaxed);
            }
            Ok(Err(e)) => return Some(format!("sending: {e}")),
            Err(_) => {
                return Some(format!(
                    "the client took nothing for {:.0} s",
                    deadline.as_secs_f64()
                ))
            }
        }
    }
    let _ = tokio::time::timeout(deadline, sink.close()).await;
    None
}

pub(super) struct Session;

impl Session {
    pub(super) async fn run(
        sink: WsSink,
        mut source: WsSource,
        params: SessionParams,
        ctx: SessionCtx<'_>,
    ) -> Summary {
        let SessionCtx {
            opts,
            factory,
            peer,
            tap,
            stats,
            mut phase,
        } = ctx;
        let mut summary = Summary::default();
        let format = AudioFormat {
            sample_rate: SAMPLE_RATE,
            channels: 1,
        };
        let (mut in_prod, in_cons) = ring_for(format, 2.0);
        let (out_prod, mut out_cons) = ring_for(format, 2.0);
        let ended = Arc::new(AtomicBool::new(false));
        let (ev_tx, ev_rx) = crossbeam_channel::unbounded();
        // For the session's summary in its journal, before the engine's end.
        let note_tx = ev_tx.clone();
        let started = Instant::now();
        let dropped = Arc::new(AtomicU64::new(0));
        let dropped_seen = dropped.clone();
        let (cmd_tx, cmd_rx) = crossbeam_channel::unbounded();
        let setup = EngineSetup {
            speaker: Some(OutputPort {
                prod: out_prod,
                format,
                prefill_ms: 0.0,
                // Every frame goes to the client, whose own buffer plays it.
                cut: None,
            }),
            max_backlog: opts.max_backlog,
            ..EngineSetup::new(
                factory(&params),
                InputPort::Ring {
                    cons: in_cons,
                    format,
                    ended: ended.clone(),
                },
                Arc::new(Meters::default()),
                ev_tx,
                cmd_rx,
            )
        };
        let engine = runner::spawn(setup);
        let ev_rx = match tap {
            Some(tap) => tap(peer, ev_rx),
            None => ev_rx,
        };
        // Engine events to the session, on a plain thread (crossbeam's recv blocks).
        let (from_engine, mut engine_rx) = mpsc::unbounded_channel();
        let step_stats = stats.clone();
        let bridge = std::thread::Builder::new()
            .name("net-session".into())
            .spawn(move || {
                let mut last_dropped = 0;
                for ev in ev_rx.iter() {
                    let m = match ev {
                        EngineEvent::ModelReady { .. } => FromEngine::Ready,
                        EngineEvent::Text(t) => FromEngine::Text(t),
                        EngineEvent::Step(s) => {
                            dropped_seen.store(s.dropped_frames, Ordering::Relaxed);
                            step_stats.step(s.step_ms / 1000.0, s.rtf);
                            step_stats.frames_dropped.fetch_add(
                                s.dropped_frames.saturating_sub(last_dropped),
                                Ordering::Relaxed,
                            );
                            last_dropped = s.dropped_frames;
                            FromEngine::Step
                        }
                        EngineEvent::ModelFailed { error, .. } => FromEngine::Failed(error),
                        EngineEvent::Stopped => FromEngine::Stopped,
                        _ => continue,
                    };
                    if from_engine.send(m).is_err() {
                        break;
                    }
                }
            });

        let (out_tx, out_rx) = mpsc::channel(OUT_QUEUE);
        let outbox = Outbox { tx: out_tx };
        let mut writer = tokio::spawn(write_loop(sink, out_rx, opts.send_timeout, stats.clone()));
        let metadata = Message::Metadata(metadata(&params, opts));
        let result: Result<String, End> = async {
            outbox.put(&metadata)?;
            let mut writer_out = OggOpusWriter::new().map_err(|e| End::bad(format!("{e:#}"), false))?;
            let mut reader =
                OggOpusReader::new(opts.reader).map_err(|e| End::bad(format!("{e:#}"), false))?;
            let mut pcm_in = Vec::with_capacity(4 * 1920);
            let mut pcm_out = vec![0f32; 2 * SAMPLE_RATE as usize];
            // A client must both send (audio) and read (answer pings) to keep its slot.
            let (mut last_heard, mut last_pong) = (Instant::now(), Instant::now());
            let mut ready = false;
            // At least three pings per idle period, so a reading client is never idle.
            let mut ping = tokio::time::interval(opts.ping_interval.min(opts.idle / 3));
            ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                // Before the handshake a client has nothing to say (a prefill may take
                // a while): only its pongs count then.
                let silent = if ready {
                    last_heard.elapsed().max(last_pong.elapsed())
                } else {
                    last_pong.elapsed()
                };
                let idle_left = opts.idle.saturating_sub(silent);
                tokio::select! {
                    incoming = source.next() => {
                        // A pong shows the client reads; only messages, that it talks.
                        match &incoming {
                            Some(Ok(WsMessage::Pong(_))) => last_pong = Instant::now(),
                            Some(Ok(WsMessage::Ping(_))) => {}
                            _ => last_heard = Instant::now(),
                        }
                        let bytes = match incoming {
                            None => return Ok("the client left".to_string()),
                            Some(Err(e)) => return Err(End::bad(format!("connection: {e}"), is_capacity(&e))),
                            Some(Ok(WsMessage::Binary(b))) => b,
                            Some(Ok(WsMessage::Close(_))) => return Ok("the client closed".into()),
                            Some(Ok(WsMessage::Text(_))) => {
                                return Err(End::bad("a WebSocket text frame: this protocol is binary", true))
                            }
                            // Pings are answered by tungstenite as it reads; pongs are ours.
                            Some(Ok(_)) => continue,
                        };
                        stats.bytes_in.fetch_add(bytes.len() as u64, Ordering::Relaxed);
                        match Message::parse(&bytes, &opts.limits) {
                            Ok(Message::Audio(pages)) => {
                                pcm_in.clear();
                                reader.feed(&pages, &mut pcm_in).map_err(|e| End::bad(e.to_string(), true))?;
                                let pushed = in_prod.push_slice(&pcm_in);
                                // The engine waits parked for input: wake it now.
                                engine.thread().unpark();
                                summary.overflow += pcm_in.len() - pushed;
                                summary.samples_in += pcm_in.len();
                            }
                            Ok(Message::Error(e)) => return Ok(format!("the client said: {e}")),
                            // Clients send only audio; the rest is harmless and ignored.
                            Ok(_) => {}
                            Err(e) => return Err(End::bad(e.to_string(), true)),
                        }
                    }
                    ev = engine_rx.recv() => match ev {
                        Some(FromEngine::Ready) => {
                            ready = true;
                            last_heard = Instant::now();
                            outbox.put(&Message::Handshake(Handshake::Versions {
                                protocol: PROTOCOL_VERSION,
                                model: 0,
                            }))?;
                        }
                        Some(FromEngine::Text(t)) => outbox.put(&Message::Text(t))?,
                        Some(FromEngine::Step) => {
                            let n = out_cons.pop_slice(&mut pcm_out);
                            summary.samples_out += n;
                            writer_out.push(&pcm_out[..n]).map_err(|e| End::bad(format!("{e:#}"), false))?;
                            let pages = writer_out.take();
                            if !pages.is_empty() {
                                outbox.put(&Message::Audio(pages)).inspect_err(|_| {
                                    stats.messages_unsent.fetch_add(1, Ordering::Relaxed);
                                })?;
                            }
                        }
                        Some(FromEngine::Failed(e)) => {
                            let _ = outbox.put(&Message::Error(format!("the model failed: {e}")));
                            return Ok(format!("the model failed: {e}"));
                        }
                        Some(FromEngine::Stopped) | None => return Ok("the engine stopped".into()),
                    },
                    _ = ping.tick() => outbox.put_ws(WsMessage::Ping(Vec::new().into()))?,
                    stopped = &mut writer => {
                        let why = stopped.ok().flatten().unwrap_or_else(|| "the writer stopped".into());
                        return Err(End::stalled(why));
                    }
                    _ = phase.wait_for(|p| *p == Phase::Closing) => {
                        summary.drained = true;
                        return Err(End::bad(DRAIN_REASON, false));
                    }
                    _ = tokio::time::sleep(idle_left) => {
                        let why = if ready && last_heard.elapsed() >= opts.idle {
                            "nothing received from the client"
                        } else {
                            "the client sends but reads nothing (no pong to the pings)"
                        };
                        return Err(End::stalled(format!("{why} for {:.0} s", opts.idle.as_secs_f64())));
                    }
                }
            }
        }
        .await;
        match result {
            Ok(why) => summary.ended = why,
            Err(end) => {
                summary.protocol_error = end.hostile;
                summary.stalled = end.stalled;
                // The writer may be gone (it timed out); then this goes nowhere.
                let _ = outbox.put(&Message::Error(end.why.clone()));
                summary.ended = end.why;
            }
        }
        // The writer sends what is queued and closes, within its deadlines.
        drop(outbox);
        if !writer.is_finished() {
            let _ =
                tokio::time::timeout(opts.send_timeout + Duration::from_secs(1), &mut writer).await;
            writer.abort();
        }
        let _ = note_tx.send(EngineEvent::info(format!(
            "network session from {peer}: {:.1} s, {} frames in, {} frames out, {} dropped by the engine, {:.2} s lost to a full input ring; ended: {}",
            started.elapsed().as_secs_f64(),
            summary.samples_in / 1920,
            summary.samples_out / 1920,
            dropped.load(Ordering::Relaxed),
            summary.overflow as f64 / SAMPLE_RATE as f64,
            summary.ended
        )));
        drop(note_tx);
        ended.store(true, Ordering::Release);
        let _ = cmd_tx.send(Command::Shutdown);
        let stats = tokio::task::spawn_blocking(move || {
            let stats = engine.join();
            if let Ok(b) = bridge {
                let _ = b.join();
            }
            stats
        })
        .await;
        if let Ok(Ok(s)) = stats {
            summary.dropped_frames = s.dropped_frames;
        }
        summary
    }
}

fn is_capacity(e: &tokio_tungstenite::tungstenite::Error) -> bool {
    matches!(e, tokio_tungstenite::tungstenite::Error::Capacity(_))
}

/// The metadata `moshi-backend` sends, with our values.
fn metadata(p: &SessionParams, opts: &ServeOptions) -> serde_json::Value {
    serde_json::json!({
        "text_temperature": p.text_temperature.unwrap_or(0.7),
        "text_topk": p.text_topk.unwrap_or(250),
        "audio_temperature": p.audio_temperature.unwrap_or(0.8),
        "audio_topk": p.audio_topk.unwrap_or(250),
        "pad_mult": p.pad_mult.unwrap_or(0.0),
        "repetition_penalty_context": p.repetition_penalty_context.unwrap_or(32),
        "repetition_penalty": p.repetition_penalty.unwrap_or(1.0),
        "lm_model_file": opts.model_name,
        "mimi_model_file": opts.model_name,
        "build_info": {"package": "assistant", "version": env!("CARGO_PKG_VERSION")},
        "instance_name": "assistant",
        "model": opts.model_name,
    })
}
