//! Level probes for the device picker: every input opened at once on a small ring
//! nobody reads, only so that its callback raises a peak the picker shows, and the
//! user sees which microphone hears them. Opened on a thread of their own (a
//! PulseAudio stream can take a second or two to start), closed when the picker
//! closes.

use super::device::{open_input, InputStream};
use super::meters::Meters;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::{Arc, Mutex};

/// Ring length of a probe: its samples are never read, only their peak counts.
const RING_SECONDS: f32 = 0.05;

type Open = Vec<(usize, Arc<Meters>, InputStream)>;

pub struct Probes {
    /// (index in the picker's list, meters, the open stream): inputs that opened.
    open: Arc<Mutex<Open>>,
    stop: Arc<AtomicBool>,
}

fn lock(m: &Mutex<Open>) -> std::sync::MutexGuard<'_, Open> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Probes {
    /// Open each (index, selector) in the background; those that do not open (busy,
    /// gone) are left out.
    pub fn start(inputs: Vec<(usize, String)>) -> Self {
        let open = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (o, s) = (open.clone(), stop.clone());
        let spawned = std::thread::Builder::new()
            .name("level-probes".into())
            .spawn(move || {
                for (i, sel) in inputs {
                    if s.load(Relaxed) {
                        break;
                    }
                    let meters = Arc::new(Meters::default());
                    match open_input(Some(&sel), meters.clone(), RING_SECONDS) {
                        Ok((stream, _ring)) => lock(&o).push((i, meters, stream)),
                        Err(e) => tracing::debug!("level probe {sel}: {e}"),
                    }
                }
                if s.load(Relaxed) {
                    // Closed meanwhile: streams opened after the close go here.
                    lock(&o).clear();
                }
            });
        if let Err(e) = spawned {
            tracing::warn!("no level probes: {e}");
        }
        Self { open, stop }
    }

    /// Each open probe's peak since the last call.
    pub fn levels(&self) -> Vec<(usize, f32)> {
        lock(&self.open)
            .iter()
            .map(|(i, m, _)| (*i, m.take_mic_peak()))
            .collect()
    }
}

impl Drop for Probes {
    fn drop(&mut self) {
        self.stop.store(true, Relaxed);
        // Closing a stream can wait on its server: not on the UI's thread.
        let streams = std::mem::take(&mut *lock(&self.open));
        let _ = std::thread::Builder::new()
            .name("probe-drop".into())
            .spawn(move || drop(streams));
    }
}
