//! The engine thread, the model boundary and the models.
pub mod events;
pub mod loopback;
pub mod model;
pub mod moshi;
pub mod residency;
pub mod runner;
pub mod stats;

pub use events::{Command, EngineEvent};
pub use model::{DuplexModel, ModelInfo, Sampling, StepOutput};
