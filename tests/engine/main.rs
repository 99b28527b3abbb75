//! The engine: its states, faults, backlog, the headless cascade and the crash journal.
//!
//! One test binary per area (tests/README.md): each module was a test binary of its own.

#[path = "../common/mod.rs"]
mod common;

mod backlog;
mod cascade_headless;
mod faults;
mod journal_crash;
mod states;
mod wake_words;
