//! Shared by the PersonaPlex tests: the fixtures and the parts of a checkpoint directory
//! the reference fixture does not carry.
#![allow(dead_code)]

use assistant::bus::Sampling;
use assistant::models::moshi::config::{demo_mimi, ModelConfig, MIMI_CONFIG_FILE};
use assistant::models::moshi::demo::random_model;
use assistant::models::moshi::files::{MIMI_FILE, TOKENIZER_FILE};
use moshi::candle::Device;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// Complete a checkpoint directory that already holds its LM: the fixture's
/// `lm_config.toml`, the repository's tiny tokenizer, and a random tiny Mimi with 2048
/// bins (the voice and user codes come from the fixture).
pub fn complete_checkpoint(dir: &Path) {
    let src = fixtures().join("personaplex");
    std::fs::copy(src.join("lm_config.toml"), dir.join("lm_config.toml")).unwrap();
    std::fs::copy(fixtures().join("spm_300.model"), dir.join(TOKENIZER_FILE)).unwrap();
    let mut mimi = demo_mimi();
    mimi.quantizer_bins = 2048;
    std::fs::write(dir.join(MIMI_CONFIG_FILE), toml::to_string(&mimi).unwrap()).unwrap();
    let lm: moshi::lm::Config =
        toml::from_str(&std::fs::read_to_string(src.join("lm_config.toml")).unwrap()).unwrap();
    let cfg = ModelConfig::from_parts(lm, mimi.to_mimi());
    let m = random_model(&cfg, 7, &Device::Cpu).unwrap();
    let tensors: HashMap<String, _> = m.mimi_tensors.into_iter().collect();
    moshi::candle::safetensors::save(&tensors, dir.join(MIMI_FILE)).unwrap();
}

/// Greedy sampling, as the reference ran.
pub fn greedy() -> Sampling {
    Sampling {
        temperature: 0.0,
        text_temperature: 0.0,
        top_k: 1,
        seed: 1,
    }
}

/// One step of NVIDIA's token stream as `tools/personaplex_reference` writes it.
#[derive(serde::Deserialize)]
pub struct RefStep {
    pub phase: String,
    pub offset: usize,
    pub column: Vec<u32>,
    pub provided: Vec<bool>,
}

/// Codebooks compared: the text and audio codebooks 0-14. NVIDIA's ring KV cache hides
/// depformer step 0 from step 15, which only touches the user's codebook 7, always forced.
pub const COMPARED: usize = 16;

/// How our steps compare with NVIDIA's: every forced token must be equal (asserted
/// here, naming the step); generated ones are counted.
#[derive(Debug, Default)]
pub struct Agreement {
    pub forced: usize,
    pub generated: usize,
    pub agree: usize,
    /// The first generated token that differs: (step, stream).
    pub first_miss: Option<(usize, usize)>,
}

impl Agreement {
    pub fn rate(&self) -> f64 {
        self.agree as f64 / self.generated as f64
    }
}

pub fn compare(
    ours: &[assistant::models::moshi::personaplex::step::PlexStep],
    theirs: &[&RefStep],
) -> Agreement {
    assert_eq!(ours.len(), theirs.len());
    let mut a = Agreement::default();
    for (o, t) in ours.iter().zip(theirs) {
        assert_eq!(o.position, t.offset);
        assert_eq!(
            o.provided, t.provided,
            "provided flags at step {}",
            t.offset
        );
        for k in 0..COMPARED {
            if t.provided[k] {
                a.forced += 1;
                assert_eq!(
                    o.column[k], t.column[k],
                    "forced token, step {} ({}), stream {k}",
                    t.offset, t.phase
                );
            } else {
                a.generated += 1;
                if o.column[k] == t.column[k] {
                    a.agree += 1;
                } else if a.first_miss.is_none() {
                    a.first_miss = Some((t.offset, k));
                }
            }
        }
    }
    a
}
