//! Fetching one file of a Hugging Face repository into the shared cache, as Moshi's
//! checkpoints are fetched (`engine::moshi::discovery`): hf-hub 0.4's tokio API on a
//! current-thread runtime of our own, polled every 50 ms for progress and the cancel
//! flag, resuming an interrupted download from its last whole chunk.

use crate::bus::{Cancel, LoadProgress, ProgressUnit};
use crate::engine::cascade::parts::LlmError;
use crate::engine::moshi::discovery::Hub;
use hf_hub::api::tokio::{ApiBuilder, Progress};
use hf_hub::Cache;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const TICK: Duration = Duration::from_millis(50);

#[derive(Clone, Default)]
struct Counted(Arc<(AtomicU64, AtomicU64)>);

impl Progress for Counted {
    async fn init(&mut self, size: usize, _: &str) {
        self.0 .0.store(0, Ordering::Relaxed);
        self.0 .1.store(size as u64, Ordering::Relaxed);
    }
    async fn update(&mut self, n: usize) {
        self.0 .0.fetch_add(n as u64, Ordering::Relaxed);
    }
    async fn finish(&mut self) {}
}

fn failed(message: String, transient: bool) -> LlmError {
    LlmError {
        message,
        remedy: "Check the network (or HF_ENDPOINT), or download the file yourself and give \
                 its path with --llm-gguf."
            .into(),
        transient,
    }
}

/// Download `repo`/`file` from `hub` into its Hugging Face cache (HF_TOKEN if set)
/// and return its path there. `Err` with `transient` when cancelled or the network
/// failed.
pub fn download_file(
    hub: &Hub,
    repo: &str,
    file: &str,
    progress: &mut dyn FnMut(LoadProgress),
    cancel: &Cancel,
) -> Result<PathBuf, LlmError> {
    let endpoint = hub.endpoint.to_string();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| failed(format!("Cannot start the download runtime: {e}"), false))?;
    let _entered = rt.enter();
    let mut builder = ApiBuilder::from_cache(Cache::new(hub.cache.to_path_buf()))
        .with_endpoint(endpoint.trim_end_matches('/').to_string())
        .with_progress(false)
        .with_chunk_size(Some(hub.chunk_bytes.max(1)));
    if let Some(token) = std::env::var("HF_TOKEN").ok().filter(|t| !t.is_empty()) {
        builder = builder.with_token(Some(token));
    }
    let api = builder
        .build()
        .map_err(|e| failed(format!("Cannot set up downloads: {e}"), false))?;
    let counted = Counted::default();
    let remote = api.model(repo.to_string());
    let start = Instant::now();
    let stage = format!(
        "{file} from {}",
        endpoint.split("://").last().unwrap_or(&endpoint)
    );
    let out = rt.block_on(async {
        let mut fut = std::pin::pin!(remote.download_with_progress(file, counted.clone()));
        let mut every = tokio::time::interval(TICK);
        loop {
            tokio::select! {
                biased;
                _ = every.tick() => {
                    if cancel.is_cancelled() {
                        return None;
                    }
                    let (done, total) = (counted.0 .0.load(Ordering::Relaxed), counted.0 .1.load(Ordering::Relaxed));
                    if total > 0 {
                        progress(LoadProgress {
                            stage: stage.clone(),
                            done,
                            total,
                            unit: ProgressUnit::Bytes,
                            elapsed_s: start.elapsed().as_secs_f64(),
                        });
                    }
                }
                out = &mut fut => return Some(out),
            }
        }
    });
    drop(_entered);
    rt.shutdown_timeout(Duration::from_millis(200));
    match out {
        None => Err(LlmError {
            message: format!("Downloading {file} was cancelled."),
            remedy: String::new(),
            transient: true,
        }),
        Some(Ok(path)) => {
            // The last tick may have come before the last bytes.
            let n = std::fs::metadata(&path).map_or(0, |m| m.len());
            progress(LoadProgress {
                stage,
                done: n,
                total: n,
                unit: ProgressUnit::Bytes,
                elapsed_s: start.elapsed().as_secs_f64(),
            });
            Ok(path)
        }
        Some(Err(e)) => Err(failed(
            format!("Downloading {repo}/{file} failed: {e}"),
            true,
        )),
    }
}
