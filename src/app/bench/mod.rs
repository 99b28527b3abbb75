//! The bench commands (`assistant bench ...`): suites that print figures, each over
//! the parts it measures.

pub mod audio;
pub mod cascade;
pub mod cpu_cascade;
pub mod cpu_script;
pub mod echo;
pub mod gpu;
pub mod model;
pub mod net;
pub mod pocket;
pub mod serve;
