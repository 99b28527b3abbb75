//! The demo model: Moshi's architecture at a tiny size with seeded random weights, built
//! in memory so it starts anywhere in well under a second.

use super::config::{self, ModelConfig};
use super::lm_sources::dense_sources;
use super::model::MoshiModel;
use super::placed_lm::PlacedLm;
use super::placement::Placement;
use super::random_init::{RandomBackend, TensorMap};
use super::text::{TextAssembler, Vocab};
use crate::bus::{ModelInfo, Sampling};
use moshi::candle::{DType, Device, Result};
use moshi::lm::LmModel;
use moshi::mimi::Mimi;
use moshi::nn::MaybeQuantizedVarBuilder;

/// The demo's SentencePiece model (512 pieces; see assets/make_demo_tokenizer.py).
pub const DEMO_TOKENIZER: &[u8] = include_bytes!("../../../assets/demo_spm_512.model");
/// The demo weights are always the same; `--seed` only drives sampling.
pub const DEMO_WEIGHT_SEED: u64 = 0x00de_3001;
pub const DEMO_NAME: &str = "demo (tiny Moshi, random weights)";

/// A Mimi and an LM with random weights, plus the tensors they were built from.
pub struct RandomModel {
    pub mimi: Mimi,
    pub lm: PlacedLm,
    pub mimi_tensors: TensorMap,
    pub lm_tensors: TensorMap,
}

pub fn random_model(cfg: &ModelConfig, seed: u64, device: &Device) -> Result<RandomModel> {
    let (vb, mimi_made) = RandomBackend::var_builder(seed, DType::F32, device);
    let mimi = Mimi::new(cfg.mimi.clone(), vb)?;
    let (vb, lm_made) = lm_var_builder(seed, device);
    let lm = PlacedLm::new(
        &cfg.lm,
        dense_sources(vb, Placement::default(), cfg.lm.transformer.num_layers),
    )?;
    let take = |m: std::sync::Arc<std::sync::Mutex<TensorMap>>| {
        m.lock()
            .map(|mut g| std::mem::take(&mut *g))
            .map_err(|_| moshi::candle::Error::Msg("poisoned".into()))
    };
    Ok(RandomModel {
        mimi,
        lm,
        mimi_tensors: take(mimi_made)?,
        lm_tensors: take(lm_made)?,
    })
}

/// The LM's weights of `random_model` (its seed is the Mimi's plus one).
fn lm_var_builder(
    seed: u64,
    device: &Device,
) -> (
    moshi::candle_nn::VarBuilder<'static>,
    std::sync::Arc<std::sync::Mutex<TensorMap>>,
) {
    RandomBackend::var_builder(seed.wrapping_add(1), DType::F32, device)
}

/// The LM of `random_model` with its layers placed as asked (the same weights).
pub fn random_lm(
    cfg: &ModelConfig,
    seed: u64,
    placement: Placement,
    device: &Device,
) -> Result<PlacedLm> {
    PlacedLm::new(
        &cfg.lm,
        dense_sources(
            lm_var_builder(seed, device).0,
            placement,
            cfg.lm.transformer.num_layers,
        ),
    )
}

/// The demo model with a batched LM of `slots` sessions (`serve --batch --demo`).
pub fn demo_model_batched(
    sampling: &Sampling,
    device: &Device,
    device_name: &str,
    slots: usize,
) -> Result<MoshiModel> {
    random_moshi_model_batched(
        &config::demo(),
        DEMO_WEIGHT_SEED,
        sampling,
        (device, device_name),
        slots,
    )
}

/// `random_moshi_model` with a batched LM of `slots` sessions: the same weights.
pub fn random_moshi_model_batched(
    cfg: &ModelConfig,
    seed: u64,
    sampling: &Sampling,
    (device, device_name): (&Device, &str),
    slots: usize,
) -> Result<MoshiModel> {
    let mimi = random_model_mimi(cfg, seed, device)?;
    let lm = random_batched_lm(cfg, seed, slots, device)?;
    let text = TextAssembler::new(demo_vocab(), cfg.gen.text_pad_token, cfg.gen.text_eop_token);
    let info = ModelInfo {
        name: DEMO_NAME.into(),
        device: device_name.into(),
        dtype: "f32".into(),
    };
    MoshiModel::batched(
        mimi,
        lm,
        cfg.gen.clone(),
        text,
        sampling.clone(),
        info,
        device.clone(),
    )
    .map_err(|e| moshi::candle::Error::Msg(format!("{e:#}")))
}

/// The Mimi of `random_model`.
fn random_model_mimi(cfg: &ModelConfig, seed: u64, device: &Device) -> Result<Mimi> {
    let (vb, _) = RandomBackend::var_builder(seed, DType::F32, device);
    Mimi::new(cfg.mimi.clone(), vb)
}

/// The LM of `random_model` with a batched temporal transformer of `slots` sessions.
pub fn random_batched_lm(
    cfg: &ModelConfig,
    seed: u64,
    slots: usize,
    device: &Device,
) -> Result<PlacedLm> {
    PlacedLm::new_batched(
        &cfg.lm,
        dense_sources(
            lm_var_builder(seed, device).0,
            Placement::default(),
            cfg.lm.transformer.num_layers,
        ),
        slots,
    )
}

/// moshi's own `LmModel` on the same weights as `random_model`, for equality tests.
pub fn reference_lm(cfg: &ModelConfig, seed: u64, device: &Device) -> Result<LmModel> {
    LmModel::new(
        &cfg.lm,
        MaybeQuantizedVarBuilder::Real(lm_var_builder(seed, device).0),
    )
}

pub fn demo_vocab() -> Vocab {
    // The bytes are compiled in and covered by a test, so this cannot fail at run time.
    Vocab::from_bytes(DEMO_TOKENIZER)
        .unwrap_or_else(|e| unreachable!("shipped demo tokenizer: {e}"))
}

pub fn demo_model(sampling: &Sampling, device: &Device, device_name: &str) -> Result<MoshiModel> {
    random_moshi_model(
        &config::demo(),
        DEMO_WEIGHT_SEED,
        sampling,
        device,
        device_name,
    )
}

/// A full model of any config with seeded random weights and the demo tokenizer (whose
/// 512 pieces the config's text vocabulary must match).
pub fn random_moshi_model(
    cfg: &ModelConfig,
    seed: u64,
    sampling: &Sampling,
    device: &Device,
    device_name: &str,
) -> Result<MoshiModel> {
    let RandomModel { mimi, lm, .. } = random_model(cfg, seed, device)?;
    let text = TextAssembler::new(demo_vocab(), cfg.gen.text_pad_token, cfg.gen.text_eop_token);
    let info = ModelInfo {
        name: DEMO_NAME.into(),
        device: device_name.into(),
        dtype: "f32".into(),
    };
    Ok(MoshiModel::new(
        mimi,
        lm,
        cfg.gen.clone(),
        text,
        sampling.clone(),
        info,
        device.clone(),
    ))
}
