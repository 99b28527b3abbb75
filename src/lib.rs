//! `assistant`: a full-duplex terminal voice assistant.
pub mod app;
pub mod audio;
pub mod bench;
pub mod cli;
pub mod doctor;
pub mod engine;
pub mod headless;
pub mod persona;
pub mod session;
pub mod telemetry;
pub mod ui;
