//! The jitter buffer: the server's audio kept by stream position, and played at
//! `sent - delay`; audio older than the frame due is dropped, counted. (The step in
//! `client.rs` grows `delay` when an answer comes late.)

use super::queues::Waited;
use super::{Incoming, RemoteModel, FRAME_LEN, QUIT_POLL, RATE};
use crate::bus::Happening;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

impl RemoteModel {
    pub(super) fn take(&mut self, ev: Incoming) {
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

    /// Play stream positions `[end - 1920, end)` into `out` (positions before the
    /// stream are silence), waiting until `wait` for them. Returns false if they did
    /// not all arrive in time.
    pub(super) fn play(
        &mut self,
        end: u64,
        wait: Duration,
        out: &mut [f32],
    ) -> anyhow::Result<bool> {
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
