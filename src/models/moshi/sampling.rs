//! Token samplers from the user's `Sampling`, through candle-transformers.

use crate::bus::Sampling;
use candle_transformers::generation::{LogitsProcessor, Sampling as Strategy};

pub struct Samplers {
    pub text: LogitsProcessor,
    pub audio: LogitsProcessor,
}

fn strategy(temperature: f64, top_k: usize) -> Strategy {
    if temperature <= 0.0 || top_k <= 1 {
        Strategy::ArgMax
    } else {
        Strategy::TopK {
            k: top_k,
            temperature,
        }
    }
}

impl Samplers {
    /// Temperature 0 is greedy (arg max), so fully deterministic whatever the seed.
    pub fn new(s: &Sampling) -> Self {
        Self {
            text: LogitsProcessor::from_sampling(s.seed, strategy(s.text_temperature, s.top_k)),
            // A separate stream of randomness so text and audio draws do not interleave.
            audio: LogitsProcessor::from_sampling(
                s.seed.wrapping_add(1),
                strategy(s.temperature, s.top_k),
            ),
        }
    }
}
