//! The `assistant` binary's commands: doctor, first start, residency flags, the GPU check's
//! dry run, the docs' command lines (parsed, and run).
//!
//! One test binary per area (tests/README.md): each module was a test binary of its own.

#[path = "../common/mod.rs"]
mod common;
#[path = "../personaplex_common/mod.rs"]
mod personaplex_common;
#[path = "../tmux_support/mod.rs"]
mod tmux_support;
#[path = "../ui_support/mod.rs"]
mod ui_support;

mod cli_residency;
mod docs_commands;
mod docs_run;
mod doctor;
mod first_start;
mod gpu_check_dry_run;
mod wake_word;
