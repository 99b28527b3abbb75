//! Logging to a file (never to the terminal the TUI owns) and a panic hook that
//! restores the terminal before anything is printed.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use tracing_subscriber::EnvFilter;

static TERMINAL_RESTORE: OnceLock<(fn(), std::thread::ThreadId)> = OnceLock::new();
type PanicReport = Box<dyn Fn(String) + Send + Sync>;
static HELPER_PANIC_REPORT: OnceLock<PanicReport> = OnceLock::new();

/// Register how to give the terminal back (raw mode off, main screen, cursor on), from
/// the thread that owns the terminal (the UI thread). The panic hook and error exits
/// call it; it must be safe to call twice.
pub fn set_terminal_restore(restore: fn()) {
    let _ = TERMINAL_RESTORE.set((restore, std::thread::current().id()));
}

/// Where a contained helper-thread panic is reported (the TUI's feed).
pub fn set_helper_panic_report(report: impl Fn(String) + Send + Sync + 'static) {
    let _ = HELPER_PANIC_REPORT.set(Box::new(report));
}

/// What the panic hook does for a panic on some thread.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PanicPlan {
    /// The engine contains its own panics; only log.
    Log,
    /// A helper thread while the TUI owns the terminal: log, tell the UI, keep the
    /// terminal as it is (the UI is still drawing on it).
    Contain,
    /// The thread that owns the terminal, or no TUI: give the terminal back and print.
    RestoreAndPrint,
}

pub fn panic_plan(
    thread_name: Option<&str>,
    thread: std::thread::ThreadId,
    terminal_owner: Option<std::thread::ThreadId>,
) -> PanicPlan {
    if thread_name == Some(crate::engine::runner::THREAD_NAME) {
        return PanicPlan::Log;
    }
    match terminal_owner {
        Some(owner) if owner != thread => PanicPlan::Contain,
        _ => PanicPlan::RestoreAndPrint,
    }
}

pub fn restore_terminal() {
    if let Some((f, _)) = TERMINAL_RESTORE.get() {
        f();
    }
}

/// The default log file: `$XDG_STATE_HOME/assistant/assistant.log`
/// (falling back to the data directory, then the temp directory).
pub fn default_log_path() -> PathBuf {
    let base = std::env::var_os("XDG_STATE_HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .or_else(|| {
            directories::BaseDirs::new()
                .map(|d| d.state_dir().unwrap_or(d.data_local_dir()).to_path_buf())
        })
        .unwrap_or_else(std::env::temp_dir);
    base.join("assistant").join("assistant.log")
}

/// Keeps the log writer alive; drop it last to flush.
pub struct LogGuard {
    _guard: Option<tracing_appender::non_blocking::WorkerGuard>,
    pub path: PathBuf,
}

/// Send tracing to `path`, filtered by ASSISTANT_LOG, then RUST_LOG, else `info`.
/// A log file that cannot be opened costs the logs, not the run.
pub fn init_logging(path: Option<&Path>) -> LogGuard {
    let path = path.map(Path::to_path_buf).unwrap_or_else(default_log_path);
    let filter = std::env::var("ASSISTANT_LOG")
        .ok()
        .and_then(|f| EnvFilter::try_new(f).ok())
        .or_else(|| EnvFilter::try_from_default_env().ok())
        .unwrap_or_else(|| EnvFilter::new("info"));
    if let Some(dir) = path.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    let file = match std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
    {
        Ok(f) => f,
        Err(_) => return LogGuard { _guard: None, path },
    };
    let (writer, guard) = tracing_appender::non_blocking(file);
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer)
        .with_ansi(false)
        .try_init();
    LogGuard {
        _guard: Some(guard),
        path,
    }
}

/// Restore the terminal, log the panic, then print it to stderr; but a panic on a
/// helper thread while the TUI runs is contained (logged and shown in the feed), and
/// the engine thread contains its own panics (the UI shows the error), so those are
/// only logged.
pub fn install_panic_hook() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let me = std::thread::current();
        match panic_plan(
            me.name(),
            me.id(),
            TERMINAL_RESTORE.get().map(|(_, owner)| *owner),
        ) {
            PanicPlan::Log => tracing::error!("engine panic (contained): {info}"),
            PanicPlan::Contain => {
                tracing::error!(
                    "panic on thread {} (contained): {info}",
                    me.name().unwrap_or("unnamed")
                );
                if let Some(report) = HELPER_PANIC_REPORT.get() {
                    let what = info
                        .payload()
                        .downcast_ref::<&str>()
                        .map(|s| s.to_string())
                        .or_else(|| info.payload().downcast_ref::<String>().cloned())
                        .unwrap_or_default();
                    report(format!(
                        "internal error on the {} thread: {what}",
                        me.name().unwrap_or("unnamed")
                    ));
                }
            }
            PanicPlan::RestoreAndPrint => {
                restore_terminal();
                tracing::error!("panic: {info}");
                default(info);
            }
        }
    }));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_terminal_owner_restores_the_terminal() {
        let ui = std::thread::current().id();
        let helper = std::thread::spawn(|| std::thread::current().id())
            .join()
            .unwrap();
        assert_eq!(
            panic_plan(Some("voice-loader"), helper, Some(ui)),
            PanicPlan::Contain
        );
        assert_eq!(panic_plan(None, helper, Some(ui)), PanicPlan::Contain);
        assert_eq!(
            panic_plan(Some("main"), ui, Some(ui)),
            PanicPlan::RestoreAndPrint
        );
        assert_eq!(
            panic_plan(Some("voice-loader"), helper, None),
            PanicPlan::RestoreAndPrint,
            "no TUI: print as usual"
        );
        assert_eq!(panic_plan(Some("engine"), helper, Some(ui)), PanicPlan::Log);
    }
}
