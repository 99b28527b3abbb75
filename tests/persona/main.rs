//! Personas: their files, the switch, the voice load and their screens.
//!
//! One test binary per area (tests/README.md): each module was a test binary of its own.

#[path = "../ui_support/mod.rs"]
mod ui_support;

mod files;
mod snapshots;
mod switch;
mod ui;
mod voice_load;
