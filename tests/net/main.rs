//! Kyutai's websocket protocol: client and server, end to end, reconnection, TLS, hostile
//! input.
//!
//! One test binary per area (tests/README.md): each module was a test binary of its own.

#[path = "../personaplex_common/mod.rs"]
mod personaplex_common;

mod client_servers;
mod e2e;
mod fuzz;
mod reconnect;
mod serve_prompts;
mod serve_sessions;
mod server_hostile;
mod tls;
