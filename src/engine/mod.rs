//! The engine thread, the model boundary and the models.
pub mod cascade;
pub mod command;
pub mod cpu_share;
pub mod frames;
pub mod load;
pub mod loopback;
pub mod model;
pub mod moshi;
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
pub use command::Command;
pub use model::{DuplexModel, ModelInfo, Sampling, StepOutput};
