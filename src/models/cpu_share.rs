//! Who gets the cores when they are short. The engine thread feeds the recogniser and
//! hands the speaker a frame once per 80 ms, and the synthesiser's thread
//! (`speech::tts::worker`) makes those frames: if either is late, the speaker runs dry.
//! The parts that can wait (Whisper's transcriptions, the LLM's reading and writing)
//! run their candle work in thread pools of their own at a lower priority (a higher
//! `nice`), so the kernel gives the engine its core first and them whatever is left;
//! on an idle machine they still use every core. Whisper's words come before the
//! LLM's, which reads them.
//!
//! `Policy::Shared` turns this off (every part in candle's one pool at normal
//! priority), for comparing in `assistant bench cascade --published`.

use std::sync::atomic::{AtomicU8, Ordering};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Policy {
    /// Background parts in pools of their own at a lower priority (the default).
    Prioritised,
    /// Everything in candle's global pool at normal priority.
    Shared,
}

static POLICY: AtomicU8 = AtomicU8::new(0);

/// Set the policy for parts started from now on.
pub fn set_policy(p: Policy) {
    POLICY.store(matches!(p, Policy::Shared) as u8, Ordering::Relaxed);
}

pub fn policy() -> Policy {
    match POLICY.load(Ordering::Relaxed) {
        0 => Policy::Prioritised,
        _ => Policy::Shared,
    }
}

/// A background part's place in the queue.
#[derive(Debug, Clone, Copy)]
pub enum Part {
    /// Whisper's transcriptions: the words the LLM waits for.
    Recogniser,
    /// The LLM's read-ahead and reply: it writes faster than speech is spoken.
    Llm,
}

impl Part {
    fn nice(self) -> i32 {
        match self {
            // Modest steps: a program of the user's at normal priority still leaves
            // these a quarter to a third of a core (CFS weights 1024 : 423 : 335).
            Part::Recogniser => 4,
            Part::Llm => 5,
        }
    }
    fn name(self) -> &'static str {
        match self {
            Part::Recogniser => "recogniser",
            Part::Llm => "llm",
        }
    }
}

/// Lower the calling thread's priority (Linux: `nice` is per thread). Best effort:
/// a kernel that refuses leaves the thread as it was.
pub fn lower_this_thread(nice: i32) {
    #[cfg(target_os = "linux")]
    unsafe {
        let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
        if libc::setpriority(libc::PRIO_PROCESS, tid, nice) != 0 {
            tracing::debug!(
                "cpu_share: setpriority({nice}) failed: {}",
                std::io::Error::last_os_error()
            );
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = nice;
}

/// The calling thread's nice value (Linux; 0 elsewhere).
pub fn this_thread_nice() -> i32 {
    #[cfg(target_os = "linux")]
    unsafe {
        let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
        libc::getpriority(libc::PRIO_PROCESS, tid)
    }
    #[cfg(not(target_os = "linux"))]
    0
}

/// Run `f` (a part's whole thread loop) as `part`: under the prioritised policy, on the
/// calling thread with its priority lowered and candle's parallel work going to a pool
/// of its own at the same priority; under the shared policy, as it is.
pub fn run_as<R>(part: Part, f: impl FnOnce() -> R + Send) -> R
where
    R: Send,
{
    if policy() == Policy::Shared {
        return f();
    }
    let nice = part.nice();
    lower_this_thread(nice);
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2);
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .thread_name(move |i| format!("{}-{i}", part.name()))
        .start_handler(move |_| lower_this_thread(nice))
        .build();
    match pool {
        Ok(pool) => pool.install(f),
        Err(e) => {
            tracing::warn!("cpu_share: no thread pool for the {}: {e}", part.name());
            f()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[cfg(target_os = "linux")]
    fn a_background_part_and_its_pool_run_at_a_lower_priority() {
        let (outer, inner) = std::thread::spawn(|| {
            run_as(Part::Llm, || {
                let outer = this_thread_nice();
                // Work rayon hands out runs on the part's pool, also lowered.
                let inner = rayon::join(this_thread_nice, this_thread_nice);
                (outer, inner)
            })
        })
        .join()
        .unwrap();
        let base = this_thread_nice();
        assert!(outer > base, "{outer} vs {base}");
        assert!(inner.0 > base && inner.1 > base, "{inner:?}");
    }
}
