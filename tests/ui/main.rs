//! The terminal UI: state, colours, its loop, snapshots and a real terminal (tmux).
//!
//! One test binary per area (tests/README.md): each module was a test binary of its own.

#[path = "../tmux_support/mod.rs"]
mod tmux_support;
#[path = "../ui_support/mod.rs"]
mod ui_support;

mod colours;
mod event_loop;
mod snapshots;
mod state;
mod tmux;
