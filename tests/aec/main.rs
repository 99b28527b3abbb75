//! Echo cancellation: the offline command, delay finding, the engine's canceller, hard
//! rooms, latency and scored scenes.
//!
//! One test binary per area (tests/README.md): each module was a test binary of its own.

#[path = "../aec_common/mod.rs"]
mod aec_common;

mod command;
mod delay;
mod engine;
mod hard_room;
mod latency;
mod random_rooms;
mod scene;
