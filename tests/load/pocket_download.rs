//! Pocket TTS found as the other speech parts are: a download of `languages/<model>/`
//! (weights, tokenizer, the default voice) from a hub on 127.0.0.1 into the Hugging Face
//! cache, then the cache alone when offline; a predefined voice the hub lacks is an
//! error that names it.

use crate::load_server;
use assistant::bus::Cancel;
use assistant::models::moshi::Discovery;
use assistant::models::parts::{TextToSpeech, TtsStep};
use assistant::models::speech::tts::pocket::{PocketOptions, PocketSampling, PocketTts};
use load_server::Hub;
use moshi::candle::Device;
use std::path::Path;

const REPO: &str = "someone/pocket-tts";

fn speak(tts: &mut PocketTts) -> usize {
    tts.start().unwrap();
    tts.push_text("Hello world.");
    tts.finish();
    let mut frame = vec![0f32; 1920];
    let mut frames = 0;
    while let TtsStep::Audio { .. } = tts.step(&mut frame).unwrap() {
        frames += 1;
    }
    frames
}

#[test]
fn pocket_tts_downloads_into_the_hf_cache_then_loads_offline() {
    let tmp = tempfile::tempdir().unwrap();
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/pocket_tts/lsd");
    let www = tmp.path().join("www");
    let lang = www.join("languages/english");
    std::fs::create_dir_all(lang.join("embeddings")).unwrap();
    for f in ["model.safetensors", "tokenizer.json", "config.yaml"] {
        std::fs::copy(fixture.join(f), lang.join(f)).unwrap();
    }
    std::fs::copy(
        fixture.join("voice.safetensors"),
        lang.join("embeddings/alba.safetensors"),
    )
    .unwrap();
    // Another model's folder and voice, not to be fetched.
    std::fs::create_dir_all(www.join("languages/german")).unwrap();
    std::fs::write(
        www.join("languages/german/model.safetensors"),
        b"not this one",
    )
    .unwrap();
    let hub = Hub::start(REPO, &www);
    let cache = tmp.path().join("hub");
    let opts = PocketOptions {
        hf_repo: REPO.into(),
        sampling: PocketSampling {
            temperature: Some(0.0),
            ..Default::default()
        },
        ..Default::default()
    };
    let online = Discovery {
        hf_cache: Some(cache.clone()),
        endpoint: Some(hub.endpoint.clone()),
        chunk_bytes: 64 << 10,
    };
    let mut tts =
        PocketTts::open(&opts, &online, &Device::Cpu, &mut |_| {}, &Cancel::new()).unwrap();
    assert!(
        tts.voice().source.ends_with("embeddings/alba.safetensors"),
        "{}",
        tts.voice().source
    );
    let frames = speak(&mut tts);
    assert!(frames > 6, "{frames} frames");
    let fetched: Vec<String> = hub.log().iter().map(|s| s.file.clone()).collect();
    assert!(
        fetched.iter().all(|f| f.starts_with("languages/english/")),
        "{fetched:?}"
    );
    assert!(
        fetched.iter().any(|f| f.ends_with("model.safetensors")),
        "{fetched:?}"
    );

    // Offline: the cache alone, and the same speech.
    let offline = Discovery {
        hf_cache: Some(cache.clone()),
        endpoint: None,
        chunk_bytes: 64 << 10,
    };
    let mut again =
        PocketTts::open(&opts, &offline, &Device::Cpu, &mut |_| {}, &Cancel::new()).unwrap();
    assert_eq!(speak(&mut again), frames);

    // A predefined voice that is neither here nor on the hub: named, with the fix.
    let marius = PocketOptions {
        voice: Some("marius".into()),
        ..opts.clone()
    };
    let e = PocketTts::open(&marius, &online, &Device::Cpu, &mut |_| {}, &Cancel::new())
        .err()
        .unwrap();
    assert!(e.message.contains("marius"), "{}", e.message);
    // An unknown name offline.
    let nobody = PocketOptions {
        voice: Some("nobody".into()),
        ..opts
    };
    let e = PocketTts::open(&nobody, &offline, &Device::Cpu, &mut |_| {}, &Cancel::new())
        .err()
        .unwrap();
    assert!(
        e.message.contains("nobody") && e.remedy.contains("alba"),
        "{} / {}",
        e.message,
        e.remedy
    );
}
