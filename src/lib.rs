//! `assistant`: a full-duplex terminal voice assistant.
pub mod audio;
pub mod cli;
pub mod engine;
pub mod ui;
