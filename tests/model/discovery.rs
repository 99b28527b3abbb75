//! Finding weights: the HF cache and the demo fallback (downloads: tests/load/download.rs).

use assistant::bus::{ProgressUnit, Severity};
use assistant::models::moshi::export::{write_demo, LmFormat};
use assistant::models::moshi::{load_model_with, Discovery, ModelOptions};
use std::time::Instant;

fn args(repo: &str) -> ModelOptions {
    ModelOptions {
        hf_repo: repo.into(),
        ..Default::default()
    }
}

#[test]
fn no_weights_and_no_network_falls_back_to_the_demo_fast() {
    let tmp = tempfile::tempdir().unwrap();
    let disc = Discovery {
        hf_cache: Some(tmp.path().join("hub")),
        // Port 9 (discard) is closed here: the connection is refused at once.
        endpoint: Some("http://127.0.0.1:9".into()),
        ..Default::default()
    };
    let t = Instant::now();
    let loaded = load_model_with(
        &args("kyutai/moshiko-candle-q8"),
        &disc,
        &mut |_| {},
        &Default::default(),
    )
    .unwrap();
    assert!(
        t.elapsed().as_secs_f64() < 5.0,
        "fallback took {:?}",
        t.elapsed()
    );
    assert!(loaded.model.info().name.starts_with("demo"));
    let n = &loaded.notices[0];
    assert_eq!(n.severity, Severity::Warning);
    for part in [
        "kyutai/moshiko-candle-q8",
        "Hugging Face cache",
        "download failed",
        "demo model",
    ] {
        assert!(n.message.contains(part), "{part:?} not in {:?}", n.message);
    }
    assert!(n.remedy.as_deref().unwrap_or("").contains("--model-dir"));
}

#[test]
fn demo_flag_skips_the_search() {
    let mut a = args("kyutai/moshiko-candle-q8");
    a.demo = true;
    let disc = Discovery {
        hf_cache: None,
        endpoint: Some("http://127.0.0.1:9".into()),
        ..Default::default()
    };
    let loaded = load_model_with(&a, &disc, &mut |_| {}, &Default::default()).unwrap();
    assert!(loaded.notices.is_empty());
    assert_eq!(loaded.model.info().dtype, "f32");
}

#[test]
fn finds_a_checkpoint_in_the_hf_cache() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("models--someone--tiny-moshi");
    write_demo(&root.join("snapshots").join("0123abcd"), LmFormat::Q8).unwrap();
    std::fs::create_dir_all(root.join("refs")).unwrap();
    std::fs::write(root.join("refs/main"), "0123abcd").unwrap();
    let disc = Discovery {
        hf_cache: Some(tmp.path().into()),
        ..Default::default()
    };
    let mut stages = vec![];
    let loaded = load_model_with(
        &args("someone/tiny-moshi"),
        &disc,
        &mut |p| stages.push(p),
        &Default::default(),
    )
    .unwrap();
    let info = loaded.model.info();
    assert_eq!(
        (info.name.as_str(), info.dtype.as_str()),
        ("0123abcd", "q8")
    );
    let last = stages.iter().rfind(|p| p.stage == "model.q8.gguf").unwrap();
    assert_eq!(last.unit, ProgressUnit::Bytes);
    assert_eq!(last.done, last.total);
    assert!(last.total > 100_000);
}
