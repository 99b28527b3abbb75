//! The process's resident memory, for the status line. Sampled by the main loop
//! on a slow tick, never while drawing.

use sysinfo::{Pid, ProcessRefreshKind, ProcessesToUpdate, System};

pub struct MemorySampler {
    sys: System,
    pid: Option<Pid>,
}

impl Default for MemorySampler {
    fn default() -> Self {
        Self {
            sys: System::new(),
            pid: sysinfo::get_current_pid().ok(),
        }
    }
}

impl MemorySampler {
    /// Resident set size in bytes, if the platform tells.
    pub fn sample(&mut self) -> Option<u64> {
        let pid = self.pid?;
        self.sys.refresh_processes_specifics(
            ProcessesToUpdate::Some(&[pid]),
            false,
            ProcessRefreshKind::nothing().with_memory(),
        );
        self.sys.process(pid).map(|p| p.memory()).filter(|&m| m > 0)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn reads_this_process_rss() {
        let rss = super::MemorySampler::default()
            .sample()
            .expect("RSS on this platform");
        assert!(
            rss > 1 << 20,
            "a test binary uses more than 1 MiB, got {rss}"
        );
    }
}
