//! `assistant`: a full-duplex terminal voice assistant.
pub mod app;
pub mod audio;
pub mod bus;

pub mod cli;

pub mod engine;
pub mod models;
pub mod net;

pub mod persona;
pub mod session;
pub mod settings;
pub mod telemetry;
pub mod tools;
pub mod ui;
