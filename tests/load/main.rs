//! Loading weights: downloads from a local hub, cancelling, quitting while loading, Pocket
//! TTS's files.
//!
//! One test binary per area (tests/README.md): each module was a test binary of its own.

#[path = "../load_server/mod.rs"]
mod load_server;
#[path = "../tmux_support/mod.rs"]
mod tmux_support;

mod cancel;
mod download;
mod pocket_download;
mod quit;
