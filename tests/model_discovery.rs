//! Finding weights: HF cache, download with byte progress, and the demo fallback.

use assistant::bus::{ProgressUnit, Severity};
use assistant::cli::ModelArgs;
use assistant::engine::moshi::export::{write_demo, LmFormat};
use assistant::engine::moshi::files::LM_SAFETENSORS;
use assistant::engine::moshi::{load_model_with, Discovery};
use std::path::Path;
use std::time::Instant;

fn args(repo: &str) -> ModelArgs {
    ModelArgs {
        hf_repo: repo.into(),
        ..Default::default()
    }
}

#[test]
fn no_weights_and_no_network_falls_back_to_the_demo_fast() {
    let tmp = tempfile::tempdir().unwrap();
    let disc = Discovery {
        hf_cache: Some(tmp.path().join("hub")),
        download_dir: Some(tmp.path().join("dl")),
        // Port 9 (discard) is closed here: the connection is refused at once.
        endpoint: Some("http://127.0.0.1:9".into()),
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
        download_dir: None,
        endpoint: Some("http://127.0.0.1:9".into()),
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
        download_dir: None,
        endpoint: None,
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

/// A real download over HTTP from a local server laid out like the hub.
#[test]
fn downloads_with_byte_progress() {
    let tmp = tempfile::tempdir().unwrap();
    let served = tmp.path().join("www");
    write_demo(
        &served.join("someone/tiny-moshi/resolve/main"),
        LmFormat::F32,
    )
    .unwrap();
    let port = 20_000 + (std::process::id() % 20_000) as u16;
    let server = std::process::Command::new("python3")
        .args([
            "-m",
            "http.server",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--directory",
        ])
        .arg(&served)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn();
    let Ok(mut server) = server else {
        eprintln!("python3 not available: cannot serve files, skipping");
        return;
    };
    let endpoint = format!("http://127.0.0.1:{port}");
    for _ in 0..50 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let disc = Discovery {
        hf_cache: Some(tmp.path().join("hub")),
        download_dir: Some(tmp.path().join("dl")),
        endpoint: Some(endpoint),
    };
    let mut stages = vec![];
    let result = load_model_with(
        &args("someone/tiny-moshi"),
        &disc,
        &mut |p| stages.push(p),
        &Default::default(),
    );
    let _ = server.kill();
    let _ = server.wait();
    let loaded = result.unwrap();
    assert!(loaded.notices.is_empty(), "{:?}", loaded.notices);
    let size = std::fs::metadata(
        served
            .join("someone/tiny-moshi/resolve/main")
            .join(LM_SAFETENSORS),
    )
    .unwrap()
    .len();
    let dl: Vec<_> = stages
        .iter()
        .filter(|p| p.stage == LM_SAFETENSORS && p.unit == ProgressUnit::Bytes)
        .collect();
    assert!(
        dl.iter().all(|p| p.total == size),
        "download total must be the file size"
    );
    assert!(dl.iter().any(|p| p.done == size));
    assert!(Path::new(&tmp.path().join("dl").join(LM_SAFETENSORS)).is_file());
}
