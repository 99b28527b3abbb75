//! PersonaPlex: loading, voices, the switch, the reference outputs and figures.
//!
//! One test binary per area (tests/README.md): each module was a test binary of its own.

#[path = "../personaplex_common/mod.rs"]
mod personaplex_common;

mod figures;
mod load;
mod reference;
mod switch;
mod voice_files;
