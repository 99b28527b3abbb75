//! The duplex model: demo checkpoints, round trips, bad inputs, context, discovery,
//! placement, residency.
//!
//! One test binary per area (tests/README.md): each module was a test binary of its own.

#[path = "../common/mod.rs"]
mod common;
#[path = "../model_common/mod.rs"]
mod model_common;

mod bad_inputs;
mod context;
mod demo;
mod discovery;
mod placement;
mod residency;
mod roundtrip;
