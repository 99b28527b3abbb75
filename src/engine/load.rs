//! How the engine gets a model: a loader the app provides, asked for a voice (the
//! weights) every time one is needed (start, `r`, a reload after an idle unload, a
//! retry after a fallback), so a reload always brings back the current persona's voice.

use crate::bus::{Cancel, LoadProgress, Notice, Weights};
use crate::models::duplex::DuplexModel;

/// A model that loaded, with anything the user should be told about it.
pub struct Loaded {
    pub model: Box<dyn DuplexModel>,
    pub notices: Vec<Notice>,
    /// Why it runs somewhere worse than asked (a CPU fallback), shown as a degraded state.
    pub degraded: Option<String>,
}

impl Loaded {
    /// A model with nothing to report.
    pub fn plain(model: Box<dyn DuplexModel>) -> Self {
        Self {
            model,
            notices: Vec::new(),
            degraded: None,
        }
    }
}

/// A model that did not load: what went wrong (file, tensor, expectation) and what to do.
#[derive(Debug, Clone, PartialEq)]
pub struct LoadFailure {
    pub message: String,
    pub remedy: String,
}

impl LoadFailure {
    /// The load stopped because the user quit or picked something else.
    pub fn cancelled() -> Self {
        Self {
            message: "loading was cancelled".into(),
            remedy: String::new(),
        }
    }
}

/// One load: which voice, where progress goes, and the flag to stop early on.
pub struct LoadRequest<'a> {
    /// The voice to load (never `Weights::Default`: the engine resolves it first).
    pub weights: &'a Weights,
    pub progress: &'a mut dyn FnMut(LoadProgress),
    pub cancel: &'a Cancel,
}

/// Builds a model for a voice on the engine thread, reporting progress and polling
/// the cancel flag.
pub type Loader = Box<dyn FnMut(&mut LoadRequest<'_>) -> Result<Loaded, LoadFailure> + Send>;

/// Box a closure as a [`Loader`] (gives the closure its signature).
pub fn loader(
    f: impl FnMut(&mut LoadRequest<'_>) -> Result<Loaded, LoadFailure> + Send + 'static,
) -> Loader {
    Box::new(f)
}
