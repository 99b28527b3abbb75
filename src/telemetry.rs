//! Logging to a file (never to the terminal the TUI owns) and a panic hook that
//! restores the terminal before anything is printed.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use tracing_subscriber::EnvFilter;

static TERMINAL_RESTORE: OnceLock<fn()> = OnceLock::new();

/// Register how to give the terminal back (raw mode off, main screen, cursor on).
/// The panic hook and error exits call it; it must be safe to call twice.
pub fn set_terminal_restore(restore: fn()) {
    let _ = TERMINAL_RESTORE.set(restore);
}

pub fn restore_terminal() {
    if let Some(f) = TERMINAL_RESTORE.get() {
        f();
    }
}

/// The default log file: `$XDG_STATE_HOME/assistant/assistant.log`
/// (falling back to the data directory, then the temp directory).
pub fn default_log_path() -> PathBuf {
    let base = std::env::var_os("XDG_STATE_HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .or_else(|| directories::BaseDirs::new().map(|d| d.state_dir().unwrap_or(d.data_local_dir()).to_path_buf()))
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
    let file = match std::fs::OpenOptions::new().create(true).append(true).open(&path) {
        Ok(f) => f,
        Err(_) => return LogGuard { _guard: None, path },
    };
    let (writer, guard) = tracing_appender::non_blocking(file);
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_writer(writer).with_ansi(false).try_init();
    LogGuard { _guard: Some(guard), path }
}

/// Restore the terminal, log the panic, then print it to stderr. The engine
/// thread contains its own panics (the UI stays up and shows the error), so
/// those are only logged.
pub fn install_panic_hook() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if std::thread::current().name() == Some(crate::engine::runner::THREAD_NAME) {
            tracing::error!("engine panic (contained): {info}");
            return;
        }
        restore_terminal();
        tracing::error!("panic: {info}");
        default(info);
    }));
}
