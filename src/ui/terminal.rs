//! Taking over the terminal and giving it back. `restore` is idempotent and safe
//! from any thread, so the panic hook, the exit paths and `Drop` can all call it.

use ratatui::backend::CrosstermBackend;
use ratatui::crossterm::cursor::{Hide, Show};
use ratatui::crossterm::event::{
    DisableBracketedPaste, DisableMouseCapture, EnableBracketedPaste, EnableMouseCapture,
};
use ratatui::crossterm::execute;
use ratatui::crossterm::terminal::{
    disable_raw_mode, enable_raw_mode, EnterAlternateScreen, LeaveAlternateScreen,
};
use ratatui::Terminal;
use std::io::{self, Stdout};
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};

/// Whether the TUI owns the terminal now.
static ACTIVE: AtomicBool = AtomicBool::new(false);

pub type Tui = Terminal<CrosstermBackend<Stdout>>;

/// Owns the terminal while alive; restores it when dropped.
pub struct TerminalGuard {
    pub terminal: Tui,
}

impl Drop for TerminalGuard {
    fn drop(&mut self) {
        let _ = restore();
    }
}

/// Raw mode, the alternate screen, mouse capture, hidden cursor. On failure
/// whatever was already changed is undone.
pub fn enter() -> io::Result<TerminalGuard> {
    enable_raw_mode()?;
    ACTIVE.store(true, SeqCst);
    quiet_stderr::hush();
    let setup = || -> io::Result<Tui> {
        // Bracketed paste: a pasted line reaches the typed-turn editor whole, its line
        // breaks not taken for Enter.
        execute!(
            io::stdout(),
            EnterAlternateScreen,
            EnableMouseCapture,
            EnableBracketedPaste,
            Hide
        )?;
        let mut t = Terminal::new(CrosstermBackend::new(io::stdout()))?;
        t.clear()?;
        Ok(t)
    };
    match setup() {
        Ok(terminal) => Ok(TerminalGuard { terminal }),
        Err(e) => {
            let _ = restore();
            Err(e)
        }
    }
}

/// Gives the terminal back: mouse capture off, main screen, cursor shown, raw
/// mode off. Does nothing when the TUI does not own the terminal (a second call,
/// headless mode), so it never writes escape codes to a redirected stdout.
pub fn restore() -> io::Result<()> {
    if !ACTIVE.swap(false, SeqCst) {
        return Ok(());
    }
    // Try every step even if one fails: a half-restored terminal is the worst case.
    let screen = execute!(
        io::stdout(),
        DisableMouseCapture,
        DisableBracketedPaste,
        LeaveAlternateScreen,
        Show
    );
    let raw = disable_raw_mode();
    quiet_stderr::restore();
    screen.and(raw)
}

/// Native libraries write to stderr on their own (JACK's client library, when the
/// device picker asks ALSA's `jack` plugin for its config, prints "Cannot connect to
/// server socket"): while the TUI owns the terminal, fd 2 goes to /dev/null, so
/// nothing scribbles over the screen (our own logs go to the log file).
#[cfg(unix)]
mod quiet_stderr {
    use std::sync::atomic::{AtomicI32, Ordering::SeqCst};

    /// The terminal's stderr, kept while fd 2 is hushed (-1: not hushed).
    static SAVED: AtomicI32 = AtomicI32::new(-1);

    pub fn hush() {
        // SAFETY: plain fd calls on fds this function owns or on fd 2.
        unsafe {
            let null = libc::open(c"/dev/null".as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
            if null < 0 {
                return;
            }
            let saved = libc::dup(2);
            if saved >= 0 && libc::dup2(null, 2) >= 0 {
                if SAVED.swap(saved, SeqCst) >= 0 {
                    libc::close(saved);
                }
            } else if saved >= 0 {
                libc::close(saved);
            }
            libc::close(null);
        }
    }

    pub fn restore() {
        let saved = SAVED.swap(-1, SeqCst);
        if saved >= 0 {
            // SAFETY: `saved` is the dup of the terminal's stderr made in `hush`.
            unsafe {
                libc::dup2(saved, 2);
                libc::close(saved);
            }
        }
    }
}

#[cfg(not(unix))]
mod quiet_stderr {
    pub fn hush() {}
    pub fn restore() {}
}

pub fn is_active() -> bool {
    ACTIVE.load(SeqCst)
}

#[cfg(test)]
mod tests {
    #[test]
    fn restore_without_enter_is_a_no_op_and_repeatable() {
        assert!(!super::is_active());
        super::restore().unwrap();
        super::restore().unwrap();
        assert!(!super::is_active());
    }
}
