//! `kyutai-tiny-checkpoint DIR PORT`: a tiny random Moshi LM (8 audio codebooks of 2048
//! bins, as moshiko) with a random Mimi of the published size (moshi-server loads Mimi
//! with the published config), Kyutai's layout and a `moshi-server` config serving its
//! `Lm` module at /api/chat on 127.0.0.1:PORT.

use anyhow::{Context, Result};
use assistant::models::moshi::config::{lm_config, lm_to_toml, ModelConfig};
use assistant::models::moshi::demo::{random_model, DEMO_TOKENIZER};
use moshi::candle::Device;
use std::collections::HashMap;
use std::path::PathBuf;

fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let dir = PathBuf::from(
        args.next()
            .context("usage: kyutai-tiny-checkpoint DIR PORT")?,
    );
    let port: u16 = args.next().unwrap_or_else(|| "8999".into()).parse()?;
    std::fs::create_dir_all(dir.join("static"))?;
    std::fs::create_dir_all(dir.join("logs"))?;
    let lm = lm_config(64, 4, 2, 3000, 64, 4, 1, 512, 2048);
    let cfg = ModelConfig::from_parts(lm, moshi::mimi::Config::v0_1(Some(8)));
    let m = random_model(&cfg, 1, &Device::Cpu)?;
    let save =
        |t: &assistant::models::moshi::random_init::TensorMap, name: &str| -> Result<PathBuf> {
            let p = dir.join(name);
            let map: HashMap<String, _> = t.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
            moshi::candle::safetensors::save(&map, &p)?;
            Ok(p)
        };
    let lm_file = save(&m.lm_tensors, "lm.safetensors")?;
    let mimi_file = save(&m.mimi_tensors, "mimi.safetensors")?;
    let spm = dir.join("tokenizer.model");
    std::fs::write(&spm, DEMO_TOKENIZER)?;

    let model: toml::Table = toml::from_str(&lm_to_toml(&cfg.lm).map_err(anyhow::Error::msg)?)?;
    let g = &cfg.gen;
    let mut gen = toml::Table::new();
    gen.insert(
        "generated_audio_codebooks".into(),
        (g.generated_audio_codebooks as i64).into(),
    );
    gen.insert(
        "input_audio_codebooks".into(),
        (g.input_audio_codebooks as i64).into(),
    );
    gen.insert(
        "audio_vocab_size".into(),
        (g.audio_vocab_size as i64).into(),
    );
    gen.insert("acoustic_delay".into(), (g.acoustic_delay as i64).into());
    gen.insert("text_pad_token".into(), (g.text_pad_token as i64).into());
    gen.insert("text_eop_token".into(), (g.text_eop_token as i64).into());
    gen.insert(
        "text_start_token".into(),
        (g.text_start_token as i64).into(),
    );
    let s = |p: &PathBuf| toml::Value::from(p.display().to_string());
    let mut lm_mod = toml::Table::new();
    lm_mod.insert("type".into(), "Lm".into());
    lm_mod.insert("path".into(), "/api/chat".into());
    lm_mod.insert("lm_model_file".into(), s(&lm_file));
    lm_mod.insert("text_tokenizer_file".into(), s(&spm));
    lm_mod.insert("audio_tokenizer_file".into(), s(&mimi_file));
    lm_mod.insert("dtype_override".into(), "f32".into());
    lm_mod.insert("model".into(), model.into());
    lm_mod.insert("gen".into(), gen.into());
    let mut modules = toml::Table::new();
    modules.insert("lm".into(), lm_mod.into());
    let mut top = toml::Table::new();
    top.insert("static_dir".into(), s(&dir.join("static")));
    top.insert("log_dir".into(), s(&dir.join("logs")));
    top.insert("instance_name".into(), "tiny".into());
    top.insert(
        "authorized_ids".into(),
        toml::Value::Array(vec!["open".into()]),
    );
    top.insert("modules".into(), modules.into());
    std::fs::write(dir.join("config.toml"), toml::to_string(&top)?)?;
    let _ = port; // the port is moshi-server's --port
    println!("{}", dir.join("config.toml").display());
    Ok(())
}
