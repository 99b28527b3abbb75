//! Shared by the PersonaPlex tests: the fixtures and the parts of a checkpoint directory
//! the reference fixture does not carry.
#![allow(dead_code)]

use assistant::bus::Sampling;
use assistant::engine::moshi::config::{demo_mimi, ModelConfig, MIMI_CONFIG_FILE};
use assistant::engine::moshi::demo::random_model;
use assistant::engine::moshi::files::{MIMI_FILE, TOKENIZER_FILE};
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
