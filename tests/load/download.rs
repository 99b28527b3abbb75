//! Downloads through hf-hub from a hub on 127.0.0.1 into the Hugging Face cache: its
//! layout, byte progress, a resume after a dropped connection, and a cancel that returns
//! within a second while the file trickles in.

use crate::load_server;
use assistant::bus::{Cancel, LoadProgress, ProgressUnit};
use assistant::models::moshi::export::{write_demo, LmFormat};
use assistant::models::moshi::files::{LM_SAFETENSORS, MIMI_FILE, TOKENIZER_FILE};
use assistant::models::moshi::{load_model_with, DeviceChoice, Discovery, ModelOptions};
use load_server::{Hub, SHA};
use std::path::Path;
use std::time::{Duration, Instant};

const REPO: &str = "someone/tiny-moshi";
const CHUNK: usize = 64 << 10;

fn options() -> ModelOptions {
    ModelOptions {
        hf_repo: REPO.into(),
        device: DeviceChoice::Cpu,
        ..Default::default()
    }
}

fn discovery(cache: &Path, hub: &Hub) -> Discovery {
    Discovery {
        hf_cache: Some(cache.to_path_buf()),
        endpoint: Some(hub.endpoint.clone()),
        chunk_bytes: CHUNK,
    }
}

fn served(dir: &Path) -> Hub {
    write_demo(dir, LmFormat::F32).unwrap();
    Hub::start(REPO, dir)
}

/// The LM's download stage (it names the host, apart from the read that follows).
fn lm_download(p: &LoadProgress) -> bool {
    p.stage.starts_with(LM_SAFETENSORS) && p.stage.contains("127.0.0.1")
}

#[test]
fn a_download_fills_the_hf_cache_with_byte_progress_and_resumes_after_a_dropped_connection() {
    let tmp = tempfile::tempdir().unwrap();
    let hub = served(&tmp.path().join("www"));
    let size = hub.file(LM_SAFETENSORS).len() as u64;
    let cache = tmp.path().join("hub");
    let disc = discovery(&cache, &hub);

    // 1. The connection drops inside the LM's 11th chunk: the load says so and the demo
    // stands in.
    let cut_at = 10 * CHUNK as u64 + 1000;
    assert!(cut_at < size / 2, "{size}");
    hub.cut_at(LM_SAFETENSORS, cut_at);
    let mut first = vec![];
    let t = Instant::now();
    let loaded =
        load_model_with(&options(), &disc, &mut |p| first.push(p), &Cancel::new()).unwrap();
    eprintln!("cut download: {:?}", t.elapsed());
    assert!(loaded.fell_back_to_demo);
    assert!(
        loaded.notices[0].message.contains("download failed"),
        "{:?}",
        loaded.notices
    );
    let got_before_cut = hub.sent(LM_SAFETENSORS);
    assert!(got_before_cut <= cut_at + 1, "{got_before_cut} of {size}");

    // 2. The next load resumes the LM from its last whole chunk, and loads it.
    let mut second = vec![];
    let t = Instant::now();
    let loaded =
        load_model_with(&options(), &disc, &mut |p| second.push(p), &Cancel::new()).unwrap();
    eprintln!("resumed download and load: {:?}", t.elapsed());
    assert!(!loaded.fell_back_to_demo, "{:?}", loaded.notices);
    assert!(loaded.notices.is_empty(), "{:?}", loaded.notices);
    assert_eq!(loaded.model.info().name, SHA, "loaded from the snapshot");

    let lm: Vec<_> = hub
        .log()
        .into_iter()
        .filter(|s| s.file == LM_SAFETENSORS && s.asked > 1)
        .collect();
    let cut = lm.iter().position(|s| s.cut).expect("one response was cut");
    let resumed_from = lm[cut + 1].from;
    eprintln!(
        "LM {size} bytes: cut after {got_before_cut}, resumed from {resumed_from}; {} requests",
        lm.len()
    );
    assert_eq!(
        resumed_from,
        10 * CHUNK as u64,
        "resumed from the last whole chunk, not 0"
    );
    assert!(
        lm[cut + 1..].iter().all(|s| s.from >= resumed_from),
        "nothing before that is fetched again: {lm:?}"
    );
    assert!(
        hub.sent(LM_SAFETENSORS) < got_before_cut + size,
        "less than the whole file again"
    );

    // Byte progress of the resumed download: it starts at the resumed offset and ends at
    // the file's size, never going back.
    let dl: Vec<_> = second.iter().filter(|p| lm_download(p)).collect();
    assert!(dl.len() >= 2, "{second:?}");
    assert!(dl
        .iter()
        .all(|p| p.unit == ProgressUnit::Bytes && p.total == size));
    assert!(dl[0].done >= resumed_from, "{:?}", dl[0]);
    assert!(dl.windows(2).all(|w| w[0].done <= w[1].done));
    assert_eq!(dl.last().unwrap().done, size);
    // Then the read of the same file, counted by the load itself.
    let read = second.iter().rfind(|p| p.stage == LM_SAFETENSORS).unwrap();
    assert_eq!((read.done, read.unit), (read.total, ProgressUnit::Bytes));
    assert!(read.total > size * 9 / 10 && read.total <= size, "{read:?}");

    // The standard HF cache layout: refs/main, snapshot links into blobs, exact bytes.
    let root = cache.join("models--someone--tiny-moshi");
    assert_eq!(
        std::fs::read_to_string(root.join("refs/main")).unwrap(),
        SHA
    );
    for f in [LM_SAFETENSORS, MIMI_FILE, TOKENIZER_FILE] {
        let link = root.join("snapshots").join(SHA).join(f);
        let target = std::fs::read_link(&link).unwrap();
        assert!(target.starts_with("../../blobs"), "{target:?}");
        assert_eq!(std::fs::read(&link).unwrap(), hub.file(f), "{f}");
    }
    let leftovers: Vec<_> = std::fs::read_dir(root.join("blobs"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".part"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");

    // 3. From the cache now: no request reaches the hub.
    let before = hub.requests();
    let loaded = load_model_with(&options(), &disc, &mut |_| {}, &Cancel::new()).unwrap();
    assert_eq!(loaded.model.info().name, SHA);
    assert_eq!(hub.requests(), before);
}

/// Cancelled while the LM trickles in at 200 KiB/s: the load returns "cancelled" within
/// a second, leaves no snapshot behind, and a later load resumes the file.
#[test]
fn cancelling_a_slow_download_returns_within_a_second() {
    let tmp = tempfile::tempdir().unwrap();
    let hub = served(&tmp.path().join("www"));
    let size = hub.file(LM_SAFETENSORS).len() as u64;
    hub.slow(LM_SAFETENSORS, 200 << 10);
    let cache = tmp.path().join("hub");
    let disc = discovery(&cache, &hub);
    let cancel = Cancel::new();
    let (tx, rx) = std::sync::mpsc::channel();
    let loader = {
        let (cancel, disc) = (cancel.clone(), disc.clone());
        std::thread::spawn(move || {
            let r = load_model_with(
                &options(),
                &disc,
                &mut |p| {
                    let _ = tx.send(p);
                },
                &cancel,
            );
            (r.map(|m| m.fell_back_to_demo), Instant::now())
        })
    };
    // Wait for the LM's bytes to flow (a few chunks in), then cancel.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let p = rx.recv_timeout(Duration::from_secs(30)).expect("progress");
        if lm_download(&p) && p.done > 4 * CHUNK as u64 {
            break;
        }
        assert!(Instant::now() < deadline, "no LM bytes");
    }
    let cancelled_at = Instant::now();
    cancel.cancel();
    let (result, returned_at) = loader.join().unwrap();
    let latency = returned_at - cancelled_at;
    eprintln!("download cancel latency: {latency:?}");
    let e = result.expect_err("a cancelled load is an error");
    assert!(e.is_cancelled(), "{e}");
    assert_eq!(e.message, "loading was cancelled");
    assert!(latency < Duration::from_secs(1), "{latency:?}");
    let sent = hub.sent(LM_SAFETENSORS);
    assert!(sent < size, "stopped mid-file: {sent} of {size}");
    // The trickle stopped: the hub sees the connection go.
    std::thread::sleep(Duration::from_millis(500));
    let later = hub.sent(LM_SAFETENSORS);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(hub.sent(LM_SAFETENSORS), later, "nothing more is fetched");
    assert!(!cache
        .join("models--someone--tiny-moshi/snapshots")
        .join(SHA)
        .join(LM_SAFETENSORS)
        .exists());

    // Full speed again: the next load resumes where the cancelled one stopped.
    hub.slow(LM_SAFETENSORS, u64::MAX / 4);
    let seen = hub.log().len();
    let loaded = load_model_with(&options(), &disc, &mut |_| {}, &Cancel::new()).unwrap();
    assert!(!loaded.fell_back_to_demo, "{:?}", loaded.notices);
    let resumed = hub.log()[seen..]
        .iter()
        .find(|s| s.file == LM_SAFETENSORS && s.asked > 1)
        .cloned()
        .unwrap();
    eprintln!("resumed after the cancel from {}", resumed.from);
    assert!(
        resumed.from >= 3 * CHUNK as u64 && resumed.from % CHUNK as u64 == 0,
        "resumed after the cancel: {resumed:?}"
    );
}

/// A checkpoint read is cancelled between tensors, too.
#[test]
fn cancelling_a_checkpoint_read_stops_it() {
    let tmp = tempfile::tempdir().unwrap();
    write_demo(tmp.path(), LmFormat::Q8).unwrap();
    let opts = ModelOptions {
        model_dir: Some(tmp.path().into()),
        device: DeviceChoice::Cpu,
        ..Default::default()
    };
    let cancel = Cancel::new();
    let mut stages = vec![];
    let r = load_model_with(
        &opts,
        &Discovery::default(),
        &mut |p| {
            // Cancel as soon as the LM's read has begun.
            if p.stage.ends_with(".gguf") {
                cancel.cancel();
            }
            stages.push(p);
        },
        &cancel,
    );
    let e = r.err().expect("cancelled");
    assert!(e.is_cancelled(), "{e}");
    let lm: Vec<_> = stages
        .iter()
        .filter(|p| p.stage.ends_with(".gguf"))
        .collect();
    assert!(
        lm.iter().all(|p| p.done < p.total),
        "stopped before the end: {lm:?}"
    );
}
