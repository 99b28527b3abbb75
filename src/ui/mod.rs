//! The terminal UI: one thread owns `UiState`; engine events, terminal input and
//! ticks arrive on one channel; `render` draws the state and nothing else.
//!
//! The app calls [`run`] (real terminal) or [`run_main_loop`] (any backend), and
//! its panic hook calls [`terminal::restore`].

pub mod bench;
pub mod chooser;
pub mod clock;
pub mod context;
pub mod event;
pub mod feed;
pub mod format;
pub mod keymap;
pub mod layout;
pub mod main_loop;
pub mod picker;
pub mod render;
pub mod settings_view;
pub mod state;
pub mod sysmon;
pub mod terminal;
pub mod theme;
pub mod typing;
pub mod vad;
pub mod widgets;
pub mod words;

pub use bench::bench_ui;
pub use clock::{Clock, ManualClock};
pub use context::UiContext;
pub use event::AppEvent;
pub use main_loop::{run, run_main_loop, run_main_loop_report, ExitReason, LoopReport};
pub use render::render;
pub use state::UiState;
pub use theme::Theme;
