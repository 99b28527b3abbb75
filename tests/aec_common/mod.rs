//! Shared by the aec_* tests: fixtures and the offline run.
#![allow(dead_code)]
use assistant::audio::aec::command::{process_offline, OfflineRun};
use assistant::audio::aec::score::{self, Scene};
use assistant::audio::aec::AecSettings;
use std::path::PathBuf;

/// `tests/fixtures`: the clips and the echo scene (`audio/...`), kept in the repository.
pub fn shared() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

pub fn scene_a() -> Scene {
    let dir = shared().join("audio/echo");
    score::load_scene(&dir)
        .unwrap_or_else(|e| panic!("scene A fixture missing at {}: {e:#}", dir.display()))
}

pub fn f32s(x: &[f64]) -> Vec<f32> {
    x.iter().map(|&v| v as f32).collect()
}

pub fn run_scene(scene: &Scene, settings: &AecSettings) -> OfflineRun {
    process_offline(settings, &f32s(&scene.far), &f32s(&scene.mic), 1920).expect("offline run")
}
