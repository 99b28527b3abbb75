//! The engine thread: the state table (`state`, `state_*`), the frame source, the
//! output, ports, residency, turns, stats, and the cascade's turn machine (`cascade`).
//! It steps any model behind `models::duplex::DuplexModel`.
//!
//! May import `models`, `audio`, `tools` (consent) and `bus`; never `net`, `ui` or `app`.
pub mod cascade;
pub mod command;
pub mod frames;
pub mod load;
pub mod loopback;
pub mod output;
pub mod residency;
pub mod runner;
pub mod state;
mod state_failed;
mod state_loading;
mod state_running;
mod state_unloaded;
pub mod stats;
pub mod turns;
pub mod voice;
pub mod wake_gate;

pub use crate::bus::EngineEvent;
pub use crate::models::duplex::{DuplexModel, ModelInfo, Sampling, StepOutput};
pub use command::Command;
