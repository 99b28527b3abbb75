//! The two queues between the engine thread and the client's network thread. Both are
//! bounded: when one side stalls (a link that stopped moving, an engine that stopped
//! stepping) the oldest audio goes, counted, so memory and latency stay bounded.
//! Everything else (text, connection news) is never dropped: it is small and the
//! transcript must not lose words.
//!
//! Closing either end wakes the other at once, which is how a quit reaches a network
//! thread that waits on a socket, and how a network thread that ended reaches a step
//! that waits for an answer.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Engine → network: frames to send (their number in the stream, and the samples).
pub(crate) struct Outbox<T> {
    state: Mutex<OutState<T>>,
    notify: tokio::sync::Notify,
    cap: usize,
    /// Frames dropped because the queue was full.
    pub dropped: AtomicU64,
}

struct OutState<T> {
    items: VecDeque<T>,
    closed: bool,
}

fn lock<S>(m: &Mutex<S>) -> MutexGuard<'_, S> {
    // A panic elsewhere cannot leave these plain queues inconsistent.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl<T> Outbox<T> {
    pub fn new(cap: usize) -> Self {
        Self {
            state: Mutex::new(OutState {
                items: VecDeque::with_capacity(cap),
                closed: false,
            }),
            notify: tokio::sync::Notify::new(),
            cap: cap.max(1),
            dropped: AtomicU64::new(0),
        }
    }

    /// Queue `item`, dropping the oldest when full; false once closed.
    pub fn push(&self, item: T) -> bool {
        {
            let mut s = lock(&self.state);
            if s.closed {
                return false;
            }
            if s.items.len() >= self.cap {
                s.items.pop_front();
                self.dropped.fetch_add(1, Ordering::Relaxed);
            }
            s.items.push_back(item);
        }
        self.notify.notify_waiters();
        true
    }

    /// The engine side is gone: wakes every waiter.
    pub fn close(&self) {
        lock(&self.state).closed = true;
        self.notify.notify_waiters();
    }

    pub fn clear(&self) {
        lock(&self.state).items.clear();
    }

    #[cfg(test)]
    pub fn try_recv(&self) -> Option<T> {
        lock(&self.state).items.pop_front()
    }

    /// The next item; `None` once closed (what is still queued is not sent).
    pub async fn recv(&self) -> Option<T> {
        loop {
            let woken = self.notify.notified();
            tokio::pin!(woken);
            // Registered before looking, so a push in between is not missed.
            woken.as_mut().enable();
            {
                let mut s = lock(&self.state);
                if s.closed {
                    return None;
                }
                if let Some(item) = s.items.pop_front() {
                    return Some(item);
                }
            }
            woken.await;
        }
    }

    /// Resolves once the engine side closed: raced against every other wait.
    pub async fn closed(&self) {
        loop {
            let woken = self.notify.notified();
            tokio::pin!(woken);
            woken.as_mut().enable();
            if lock(&self.state).closed {
                return;
            }
            woken.await;
        }
    }
}

/// What the inbox can tell a waiting reader.
#[derive(Debug, PartialEq)]
pub(crate) enum Waited<T> {
    Item(T),
    Timeout,
    /// The network thread ended and everything it sent has been read.
    Gone,
}

/// Network → engine: the server's audio, text and connection news, in order.
pub(crate) struct Inbox<T> {
    state: Mutex<InState<T>>,
    ready: Condvar,
    /// Samples of audio the queue holds at most.
    cap_samples: usize,
    /// 1920-sample frames of audio dropped because the queue was full.
    pub dropped: AtomicU64,
}

struct InState<T> {
    items: VecDeque<T>,
    samples: usize,
    reader_gone: bool,
    writer_gone: bool,
}

/// An inbox item: how many audio samples it holds (0 for anything that is not audio).
pub(crate) trait Samples {
    fn samples(&self) -> usize;
}

impl<T: Samples> Inbox<T> {
    pub fn new(cap_samples: usize) -> Self {
        Self {
            state: Mutex::new(InState {
                items: VecDeque::new(),
                samples: 0,
                reader_gone: false,
                writer_gone: false,
            }),
            ready: Condvar::new(),
            cap_samples,
            dropped: AtomicU64::new(0),
        }
    }

    /// Queue `item`; when audio passes the cap, the oldest audio goes. False once the
    /// reader (the model) is gone.
    pub fn push(&self, item: T) -> bool {
        let mut s = lock(&self.state);
        if s.reader_gone {
            return false;
        }
        s.samples += item.samples();
        s.items.push_back(item);
        while s.samples > self.cap_samples {
            let Some(i) = s.items.iter().position(|x| x.samples() > 0) else {
                break;
            };
            let n = s.items.remove(i).map_or(0, |x| x.samples());
            s.samples -= n;
            self.dropped
                .fetch_add(n.div_ceil(1920) as u64, Ordering::Relaxed);
        }
        drop(s);
        self.ready.notify_all();
        true
    }

    pub fn try_recv(&self) -> Option<T> {
        let mut s = lock(&self.state);
        let item = s.items.pop_front()?;
        s.samples -= item.samples();
        Some(item)
    }

    /// Wait at most `wait` for the next item.
    pub fn recv_timeout(&self, wait: Duration) -> Waited<T> {
        let deadline = Instant::now() + wait;
        let mut s = lock(&self.state);
        loop {
            if let Some(item) = s.items.pop_front() {
                s.samples -= item.samples();
                return Waited::Item(item);
            }
            if s.writer_gone {
                return Waited::Gone;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Waited::Timeout;
            }
            s = self
                .ready
                .wait_timeout(s, left)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }

    /// The model is gone: later pushes fail, so the network thread ends.
    pub fn close_reader(&self) {
        let mut s = lock(&self.state);
        s.reader_gone = true;
        s.items.clear();
        s.samples = 0;
    }

    /// The network thread ended: a waiting step wakes at once.
    pub fn close_writer(&self) {
        lock(&self.state).writer_gone = true;
        self.ready.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq)]
    enum Item {
        Audio(usize),
        Text(&'static str),
    }
    impl Samples for Item {
        fn samples(&self) -> usize {
            match self {
                Item::Audio(n) => *n,
                Item::Text(_) => 0,
            }
        }
    }

    #[test]
    fn the_inbox_drops_the_oldest_audio_and_keeps_text_and_order() {
        let q = Inbox::new(3 * 1920);
        q.push(Item::Text("a"));
        for _ in 0..5 {
            q.push(Item::Audio(1920));
        }
        q.push(Item::Text("b"));
        assert_eq!(q.dropped.load(Ordering::Relaxed), 2);
        let got: Vec<_> = std::iter::from_fn(|| q.try_recv()).collect();
        assert_eq!(
            got,
            [
                Item::Text("a"),
                Item::Audio(1920),
                Item::Audio(1920),
                Item::Audio(1920),
                Item::Text("b")
            ]
        );
    }

    #[test]
    fn a_waiting_reader_wakes_when_the_writer_ends_and_a_writer_sees_the_reader_gone() {
        let q = std::sync::Arc::new(Inbox::<Item>::new(1920));
        let w = q.clone();
        let t = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            w.close_writer();
        });
        let start = Instant::now();
        assert_eq!(q.recv_timeout(Duration::from_secs(30)), Waited::Gone);
        assert!(start.elapsed() < Duration::from_secs(10));
        t.join().unwrap();
        q.close_reader();
        assert!(!q.push(Item::Text("late")));
    }

    #[test]
    fn the_outbox_drops_the_oldest_frame_and_closing_wakes_its_reader() {
        let q = std::sync::Arc::new(Outbox::new(2));
        for i in 0..4 {
            assert!(q.push(i));
        }
        assert_eq!(q.dropped.load(Ordering::Relaxed), 2);
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            assert_eq!(q.recv().await, Some(2));
            assert_eq!(q.recv().await, Some(3));
            let c = q.clone();
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(50));
                c.close();
            });
            let waited = tokio::time::timeout(Duration::from_secs(30), async {
                tokio::join!(q.recv(), q.closed()).0
            })
            .await;
            assert_eq!(waited, Ok(None));
        });
        assert!(!q.push(9));
    }
}
