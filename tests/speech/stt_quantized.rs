//! `assistant convert SRC DST --q8|--q4` on a Kyutai STT checkpoint (the tiny one, in the
//! published layout): the GGUF it writes loads through the `moshi` crate's quantized LM
//! path and hears what the f32 checkpoint hears.

use assistant::models::parts::SpeechToText;
use assistant::models::speech::files::{stt_config, stt_memory_in};
use assistant::models::speech::stt::kyutai::KyutaiStt;
use assistant::models::speech::synthetic::write_stt;
use moshi::candle::Device;
use std::path::Path;
use std::process::Command;

const FRAME: usize = 1920;

fn convert(src: &Path, dst: &Path, flag: &str) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_assistant"))
        .args([
            "convert",
            src.to_str().unwrap(),
            dst.to_str().unwrap(),
            flag,
        ])
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn hello() -> Vec<f32> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/audio/hello_24k_mono.wav");
    let r = hound::WavReader::open(p).unwrap();
    r.into_samples::<i16>()
        .map(|s| s.unwrap() as f32 / 32768.0)
        .collect()
}

fn words(stt: &mut KyutaiStt, pcm: &[f32]) -> Vec<String> {
    let mut pcm = pcm.to_vec();
    pcm.resize((pcm.len().div_ceil(FRAME) + 13) * FRAME, 0.0);
    pcm.chunks(FRAME)
        .flat_map(|f| stt.step(f).unwrap().words)
        .collect()
}

#[test]
fn q8_and_q4_checkpoints_load_and_hear_what_f32_hears() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("stt");
    write_stt(&src, 11).unwrap();
    let pcm = hello();
    let reference = words(&mut KyutaiStt::load(&src, &Device::Cpu).unwrap(), &pcm);
    assert!(reference.len() >= 3, "{reference:?}");
    let src_bytes = std::fs::metadata(src.join("model.safetensors"))
        .unwrap()
        .len();
    for (flag, file) in [("--q8", "model.q8.gguf"), ("--q4", "model.q4.gguf")] {
        let dst = tmp.path().join(flag.trim_start_matches('-'));
        let (code, out, err) = convert(&src, &dst, flag);
        assert_eq!(code, 0, "{err}");
        assert!(
            out.contains(file) && out.contains("--stt-model-dir"),
            "{out}"
        );
        // The config names the new LM; the Mimi and the tokenizer come along.
        let cfg = stt_config(&dst).unwrap();
        assert_eq!(cfg.lm_file(), file);
        for f in [&cfg.mimi_name, &cfg.tokenizer_name] {
            assert!(dst.join(f).is_file(), "{f}");
        }
        let bytes = std::fs::metadata(dst.join(file)).unwrap().len();
        eprintln!("{file}: {bytes} bytes (bf16 safetensors: {src_bytes})");
        assert!(bytes < src_bytes, "{bytes} >= {src_bytes}");
        assert!(stt_memory_in(&dst, &Device::Cpu).unwrap().total() > bytes);
        let mut stt = KyutaiStt::load(&dst, &Device::Cpu).unwrap();
        assert!(stt.predicts_pauses());
        let heard = words(&mut stt, &pcm);
        eprintln!("{flag}: {heard:?}\n f32: {reference:?}");
        // Greedy text from quantized weights: the same words for most of the way (a
        // near tie flips somewhere, and the text goes its own way from there).
        let prefix = heard
            .iter()
            .zip(&reference)
            .take_while(|(a, b)| a == b)
            .count();
        let same = heard.iter().zip(&reference).filter(|(a, b)| a == b).count();
        eprintln!(
            "{flag}: the first {prefix} words, {same} in all, of {} the same",
            reference.len()
        );
        if flag == "--q8" {
            assert!(prefix * 10 >= reference.len() * 6, "{flag}: {prefix}");
        } else {
            // 4 bits on a 64-wide random model: a near tie flips within a few words and
            // the greedy text goes its own way; `the_quantized_lm_computes_what_f32_does`
            // compares the logits themselves.
            assert!(!heard.is_empty());
        }
        stt.reset();
        assert_eq!(words(&mut stt, &pcm), heard, "the same after a reset");
    }
}

#[test]
fn bad_conversions_say_what_to_do() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("stt");
    write_stt(&src, 3).unwrap();
    let dst = tmp.path().join("q8");
    assert_eq!(convert(&src, &dst, "--q8").0, 0);
    // Into a directory that holds a checkpoint: refused.
    let (code, _, err) = convert(&src, &dst, "--q8");
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("already holds"), "{err}");
    // A quantized checkpoint is not converted again.
    let (code, _, err) = convert(&dst, &tmp.path().join("again"), "--q4");
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("already quantized"), "{err}");
    // --q4 is for STT checkpoints only.
    let empty = tmp.path().join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let (code, _, err) = convert(&empty, &tmp.path().join("x"), "--q4");
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("--q4"), "{err}");
    // A GGUF cut short names the file and the fix.
    let gguf = dst.join("model.q8.gguf");
    let len = std::fs::metadata(&gguf).unwrap().len();
    let f = std::fs::OpenOptions::new().write(true).open(&gguf).unwrap();
    f.set_len(len / 2).unwrap();
    let Err(e) = KyutaiStt::load(&dst, &Device::Cpu) else {
        panic!("a cut GGUF loaded")
    };
    assert!(e.message.contains("model.q8.gguf"), "{}", e.message);
    assert!(e.remedy.contains("convert"), "{}", e.remedy);
    // Both flags at once is a usage error.
    let out = Command::new(env!("CARGO_BIN_EXE_assistant"))
        .args(["convert", "a", "b", "--q8", "--q4"])
        .output()
        .unwrap();
    assert_ne!(out.status.code(), Some(0));
}

/// Text logits of `steps` steps of the LM in `dir` (f32 safetensors or GGUF), fed the
/// same audio codes and text tokens.
fn text_logits(dir: &Path, steps: usize) -> Vec<Vec<f32>> {
    use moshi::candle::Tensor;
    let cfg = stt_config(dir).unwrap();
    let heads = moshi::lm::ExtraHeadsConfig {
        num_heads: 4,
        dim: 6,
    };
    let path = dir.join(cfg.lm_file());
    let vb = if cfg.lm_file().ends_with(".gguf") {
        moshi::nn::MaybeQuantizedVarBuilder::Quantized(
            assistant::models::speech::stt::quant::gguf_var_builder(&path, &Device::Cpu).unwrap(),
        )
    } else {
        moshi::nn::MaybeQuantizedVarBuilder::Real(
            unsafe {
                moshi::candle_nn::VarBuilder::from_mmaped_safetensors(
                    &[&path],
                    moshi::candle::DType::F32,
                    &Device::Cpu,
                )
            }
            .unwrap(),
        )
    };
    let mut lm = moshi::lm::LmModel::new(&cfg.lm(Some(heads)), vb).unwrap();
    (0..steps)
        .map(|t| {
            let text = Tensor::new(&[[(t * 7 % cfg.text_card) as u32]], &Device::Cpu).unwrap();
            let audio = (0..cfg.n_q)
                .map(|q| {
                    Some(
                        Tensor::new(&[[((t * 13 + q * 5) % cfg.card) as u32]], &Device::Cpu)
                            .unwrap(),
                    )
                })
                .collect();
            let (logits, _) = lm.forward(Some(text), audio, &().into()).unwrap();
            logits.flatten_all().unwrap().to_vec1::<f32>().unwrap()
        })
        .collect()
}

fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let n = |v: &[f32]| v.iter().map(|x| x * x).sum::<f32>().sqrt();
    dot / (n(a) * n(b))
}

#[test]
fn the_quantized_lm_computes_what_f32_does() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("stt");
    write_stt(&src, 11).unwrap();
    let f32 = text_logits(&src, 8);
    for (flag, least) in [("--q8", 0.999), ("--q4", 0.97)] {
        let dst = tmp.path().join(flag.trim_start_matches('-'));
        assert_eq!(convert(&src, &dst, flag).0, 0);
        let q = text_logits(&dst, 8);
        let worst = f32
            .iter()
            .zip(&q)
            .map(|(a, b)| cosine(a, b))
            .fold(1f32, f32::min);
        eprintln!("{flag}: text logits against f32, worst cosine over 8 steps {worst:.5}");
        assert!(worst >= least, "{flag}: {worst}");
    }
}
