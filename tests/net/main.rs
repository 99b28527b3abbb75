//! Kyutai's websocket protocol: client and server, end to end, reconnection, TLS, hostile
//! input.
//!
//! One test binary per area (tests/README.md): each module was a test binary of its own.

#[path = "../personaplex_common/mod.rs"]
mod personaplex_common;
#[path = "../tmux_support/mod.rs"]
mod tmux_support;

mod client_servers;
mod client_stalls;
mod e2e;
mod fuzz;
mod reconnect;
mod serve_batch;
mod serve_haproxy;
mod serve_prompts;
mod serve_service;
mod serve_sessions;
mod serve_shared_weights;
mod server_hostile;
mod tls;
