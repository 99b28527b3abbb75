//! Every bad checkpoint gets an error naming the file, the tensor and the expectation.

use assistant::models::moshi::export::{write_demo, LmFormat};
use assistant::models::moshi::files::{LM_GGUF, LM_SAFETENSORS, MIMI_FILE, TOKENIZER_FILE};
use assistant::models::moshi::{
    load_model_with, DeviceChoice, Discovery, ModelLoadError, ModelOptions,
};
use std::path::Path;

fn args(dir: &Path) -> ModelOptions {
    ModelOptions {
        model_dir: Some(dir.to_path_buf()),
        device: DeviceChoice::Cpu,
        ..Default::default()
    }
}

fn load_err(dir: &Path) -> ModelLoadError {
    match load_model_with(
        &args(dir),
        &Discovery::default(),
        &mut |_| {},
        &Default::default(),
    ) {
        Ok(_) => panic!("{} loaded but should not", dir.display()),
        Err(e) => {
            eprintln!("{e}");
            assert!(!e.remedy.is_empty());
            e
        }
    }
}

fn exported(format: LmFormat) -> tempfile::TempDir {
    let tmp = tempfile::tempdir().unwrap();
    write_demo(tmp.path(), format).unwrap();
    tmp
}

fn assert_mentions(e: &ModelLoadError, parts: &[&str]) {
    for p in parts {
        assert!(
            e.message.contains(p),
            "error does not mention {p:?}: {}",
            e.message
        );
    }
}

fn truncate(path: &Path, keep: f64) {
    let len = std::fs::metadata(path).unwrap().len();
    let f = std::fs::OpenOptions::new().write(true).open(path).unwrap();
    f.set_len((len as f64 * keep) as u64).unwrap();
}

#[test]
fn truncated_model_safetensors() {
    let d = exported(LmFormat::F32);
    truncate(&d.path().join(LM_SAFETENSORS), 0.5);
    let e = load_err(d.path());
    assert_mentions(&e, &[LM_SAFETENSORS, "truncated", "tensor `", "expects"]);
}

#[test]
fn truncated_header_and_empty_file() {
    let d = exported(LmFormat::F32);
    truncate(&d.path().join(LM_SAFETENSORS), 0.0005);
    assert_mentions(&load_err(d.path()), &[LM_SAFETENSORS, "truncated"]);
    truncate(&d.path().join(LM_SAFETENSORS), 0.0);
    assert_mentions(&load_err(d.path()), &[LM_SAFETENSORS, "truncated"]);
}

#[test]
fn truncated_q8_gguf() {
    let d = exported(LmFormat::Q8);
    truncate(&d.path().join(LM_GGUF), 0.7);
    assert_mentions(&load_err(d.path()), &[LM_GGUF, "truncated", "tensor `"]);
}

#[test]
fn missing_mimi_file() {
    let d = exported(LmFormat::F32);
    std::fs::remove_file(d.path().join(MIMI_FILE)).unwrap();
    assert_mentions(&load_err(d.path()), &[MIMI_FILE, "missing", "Mimi"]);
}

#[test]
fn missing_lm_file() {
    let d = exported(LmFormat::F32);
    std::fs::remove_file(d.path().join(LM_SAFETENSORS)).unwrap();
    assert_mentions(&load_err(d.path()), &[LM_SAFETENSORS, LM_GGUF]);
}

#[test]
fn renamed_tensor() {
    let d = exported(LmFormat::F32);
    let path = d.path().join(LM_SAFETENSORS);
    let mut ts = moshi::candle::safetensors::load(&path, &moshi::candle::Device::Cpu).unwrap();
    let t = ts.remove("text_emb.weight").unwrap();
    ts.insert("text_embedding.weight".into(), t);
    moshi::candle::safetensors::save(&ts, &path).unwrap();
    let e = load_err(d.path());
    assert_mentions(
        &e,
        &[LM_SAFETENSORS, "`text_emb.weight`", "missing", "[513, 64]"],
    );
}

#[test]
fn renamed_mimi_tensor() {
    let d = exported(LmFormat::F32);
    let path = d.path().join(MIMI_FILE);
    let mut ts = moshi::candle::safetensors::load(&path, &moshi::candle::Device::Cpu).unwrap();
    let name = ts
        .keys()
        .find(|k| k.starts_with("quantizer."))
        .unwrap()
        .clone();
    let t = ts.remove(&name).unwrap();
    ts.insert(format!("{name}_old"), t);
    moshi::candle::safetensors::save(&ts, &path).unwrap();
    assert_mentions(
        &load_err(d.path()),
        &[MIMI_FILE, &format!("`{name}`"), "missing"],
    );
}

#[test]
fn wrong_vocab_tokenizer() {
    let d = exported(LmFormat::F32);
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/spm_300.model");
    std::fs::copy(fixture, d.path().join(TOKENIZER_FILE)).unwrap();
    assert_mentions(&load_err(d.path()), &[TOKENIZER_FILE, "300 pieces", "512"]);
}

#[test]
fn corrupt_tokenizer() {
    let d = exported(LmFormat::F32);
    std::fs::write(
        d.path().join(TOKENIZER_FILE),
        b"\x0a\xff\xff\xff\xff garbage",
    )
    .unwrap();
    assert_mentions(&load_err(d.path()), &[TOKENIZER_FILE, "SentencePiece"]);
}

#[test]
fn shape_that_fits_no_config() {
    let d = exported(LmFormat::F32);
    let cfg = d.path().join("lm_config.toml");
    let text = std::fs::read_to_string(&cfg)
        .unwrap()
        .replacen("d_model = 64", "d_model = 128", 1);
    std::fs::write(&cfg, text).unwrap();
    let e = load_err(d.path());
    assert_mentions(
        &e,
        &[
            LM_SAFETENSORS,
            "tensor `",
            "has shape",
            "lm_config.toml expects",
        ],
    );
}

#[test]
fn official_config_against_tiny_weights() {
    // Without lm_config.toml the moshiko config applies; it disagrees with the tiny Mimi's
    // config, and the error says which configs it compared.
    let d = exported(LmFormat::F32);
    std::fs::remove_file(d.path().join("lm_config.toml")).unwrap();
    assert_mentions(
        &load_err(d.path()),
        &[
            "inconsistent configs",
            "2049",
            "257",
            "official moshiko config",
            "mimi_config.toml",
        ],
    );
    // Without either config file, the tokenizer is the first thing that does not fit.
    std::fs::remove_file(d.path().join("mimi_config.toml")).unwrap();
    assert_mentions(
        &load_err(d.path()),
        &[
            TOKENIZER_FILE,
            "512 pieces",
            "32000",
            "official moshiko config",
        ],
    );
}

#[test]
fn more_layers_than_the_config() {
    let d = exported(LmFormat::F32);
    let cfg = d.path().join("lm_config.toml");
    let text =
        std::fs::read_to_string(&cfg)
            .unwrap()
            .replacen("num_layers = 2", "num_layers = 1", 1);
    std::fs::write(&cfg, text).unwrap();
    assert_mentions(
        &load_err(d.path()),
        &[LM_SAFETENSORS, "2 transformer layers", "expects 1"],
    );
}

#[test]
fn broken_config_files() {
    let d = exported(LmFormat::F32);
    std::fs::write(d.path().join("lm_config.toml"), "d_model = [").unwrap();
    assert_mentions(&load_err(d.path()), &["lm_config.toml"]);
    let d = exported(LmFormat::F32);
    std::fs::write(d.path().join("mimi_config.toml"), "sample_rate = 24000.0\n").unwrap();
    assert_mentions(&load_err(d.path()), &["mimi_config.toml"]);
}

#[test]
fn not_a_directory_and_bad_device() {
    let e = load_err(Path::new("/nonexistent/model/dir"));
    assert_mentions(&e, &["/nonexistent/model/dir", "not a directory"]);
    let e = "tpu:1".parse::<DeviceChoice>().err().unwrap();
    assert_mentions(&e, &["tpu:1"]);
    assert!(e.remedy.contains("cuda:N"), "{e}");
}
