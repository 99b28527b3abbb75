//! The terminal UI: state, colours, its loop, snapshots and a real terminal (tmux).
//!
//! One test binary per area (tests/README.md): each module was a test binary of its own.

#[path = "../common/mod.rs"]
mod common;
#[path = "../pulse_support/mod.rs"]
mod pulse_support;
#[path = "../tmux_support/mod.rs"]
mod tmux_support;
#[path = "../ui_support/mod.rs"]
mod ui_support;

mod colours;
mod event_loop;
mod picker_snapshots;
mod picker_tmux;
mod settings_persist;
mod settings_snapshots;
mod snapshots;
mod state;
mod tmux;
mod typed_snapshots;
mod typed_turns;
