//! Tools: MCP servers, the built-in actions, consent, and their screens.
//!
//! One test binary per area (tests/README.md): each module was a test binary of its own.

#[path = "../common/mod.rs"]
mod common;
#[path = "../tmux_support/mod.rs"]
mod tmux_support;
#[path = "../ui_support/mod.rs"]
mod ui_support;

mod headless;
mod mcp;
mod persona_switch;
mod screen;
mod ui_state;
