//! Kyutai's WebSocket protocol: framing, Ogg/Opus, and the client and server
//! sessions. Network I/O runs on tokio threads that talk to the engine only through
//! rings and channels; the engine thread never awaits.

pub mod client;
pub mod http;
pub mod metrics;
pub mod opus_ogg;
pub mod protocol;
pub mod server;
pub mod tls;
