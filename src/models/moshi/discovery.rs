//! Where weights come from: the Hugging Face cache, then a download.
//!
//! The cache is read directly (`models--{org}--{name}/refs/main` -> `snapshots/{rev}/`),
//! honouring HF_HUB_CACHE, HF_HOME and XDG_CACHE_HOME like `huggingface_hub`.
//!
//! Downloads go through hf-hub (0.4) into that same cache, in its layout (blobs named by
//! ETag, snapshot symlinks, `refs/main`), so Python tools and we share one copy. Not
//! hf-hub 1.0: its plain-HTTP download rewrites `.incomplete` from byte 0 (no resume),
//! and it always builds the hf-xet client, a large tree for a 2-core build. We use
//! its tokio API, not its blocking one: a blocking transfer cannot be stopped mid-file,
//! while a future can simply be dropped. Each download runs on a small current-thread
//! runtime of its own, on the loading thread, polled every 50 ms: that tick reports the
//! bytes hf-hub counted and looks at the cancel flag. hf-hub fetches a file in ranged
//! chunks and records the last whole chunk in its `.sync.part` file, so a download that
//! was interrupted (or cancelled) resumes from there.

use super::config::{LM_CONFIG_FILE, MIMI_CONFIG_FILE};
use super::files::{LM_GGUF, LM_SAFETENSORS, MIMI_FILE, TOKENIZER_FILE};
use crate::bus::{Cancel, LoadProgress, ProgressUnit};
use hf_hub::api::tokio::{ApiBuilder, ApiError, Progress};
use hf_hub::Cache;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub fn hf_hub_cache() -> Option<PathBuf> {
    let env = |k: &str| {
        std::env::var_os(k)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    if let Some(p) = env("HF_HUB_CACHE") {
        return Some(p);
    }
    if let Some(p) = env("HF_HOME") {
        return Some(p.join("hub"));
    }
    let cache = env("XDG_CACHE_HOME").or_else(|| env("HOME").map(|h| h.join(".cache")))?;
    Some(cache.join("huggingface").join("hub"))
}

/// A directory holds a full checkpoint when it has an LM file, Mimi and the tokenizer.
pub fn is_complete(dir: &Path) -> bool {
    (dir.join(LM_GGUF).is_file() || dir.join(LM_SAFETENSORS).is_file())
        && dir.join(MIMI_FILE).is_file()
        && dir.join(TOKENIZER_FILE).is_file()
}

/// The snapshot of `repo` in the HF cache, preferring the one `refs/main` points at.
pub fn find_in_hf_cache(cache: &Path, repo: &str) -> Option<PathBuf> {
    find_snapshot(cache, repo, &is_complete)
}

/// The snapshot of `repo` in the HF cache that `complete` accepts, preferring the one
/// `refs/main` points at (other models' layouts bring their own `complete`).
pub fn find_snapshot(
    cache: &Path,
    repo: &str,
    complete: &dyn Fn(&Path) -> bool,
) -> Option<PathBuf> {
    let root = cache.join(format!("models--{}", repo.replace('/', "--")));
    let snapshots = root.join("snapshots");
    if let Ok(rev) = std::fs::read_to_string(root.join("refs").join("main")) {
        let dir = snapshots.join(rev.trim());
        if complete(&dir) {
            return Some(dir);
        }
    }
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(&snapshots)
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| complete(p))
        .collect();
    dirs.sort();
    dirs.pop()
}

/// The hub to download from: HF_ENDPOINT or huggingface.co; none when HF_HUB_OFFLINE is
/// set (1, true, yes or on), as `huggingface_hub` has it.
pub fn endpoint_from_env() -> Option<String> {
    let offline = std::env::var("HF_HUB_OFFLINE").is_ok_and(|v| {
        ["1", "true", "yes", "on"].contains(&v.trim().to_ascii_lowercase().as_str())
    });
    if offline {
        return None;
    }
    Some(
        std::env::var("HF_ENDPOINT")
            .ok()
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| "https://huggingface.co".into()),
    )
}

/// hf-hub's own default: a download resumes from the last whole chunk.
pub const CHUNK_BYTES: usize = 10_000_000;

/// How often a download reports progress and looks at its cancel flag.
const TICK: Duration = Duration::from_millis(50);

/// The first request to the hub gets this long to answer (a dead network can
/// otherwise hang in connect for minutes); the transfers after it take as long as they take.
const FIRST_ANSWER: Duration = Duration::from_secs(20);

/// Where a download comes from and goes to.
pub struct Hub<'a> {
    pub endpoint: &'a str,
    /// The HF hub cache (`$HF_HOME/hub`).
    pub cache: &'a Path,
    pub chunk_bytes: usize,
}

#[derive(Debug, Clone, PartialEq)]
pub enum DownloadError {
    /// The cancel flag was set; the transfer was dropped.
    Cancelled,
    Failed(String),
}

impl From<String> for DownloadError {
    fn from(e: String) -> Self {
        Self::Failed(e)
    }
}

/// Shared with hf-hub's download tasks: bytes of the file in flight.
#[derive(Clone, Default)]
struct Bytes(Arc<(AtomicU64, AtomicU64)>);

impl Progress for Bytes {
    async fn init(&mut self, size: usize, _: &str) {
        self.0 .0.store(0, Ordering::Relaxed);
        self.0 .1.store(size as u64, Ordering::Relaxed);
    }
    async fn update(&mut self, n: usize) {
        self.0 .0.fetch_add(n as u64, Ordering::Relaxed);
    }
    async fn finish(&mut self) {}
}

/// Run `fut` on `rt`, looking at `cancel` and calling `tick` every `TICK`. Cancelled, the
/// future is dropped at once; tasks it spawned go when the runtime is shut down.
fn drive<T>(
    rt: &tokio::runtime::Runtime,
    fut: impl std::future::Future<Output = T>,
    cancel: &Cancel,
    mut tick: impl FnMut(),
) -> Result<T, DownloadError> {
    rt.block_on(async {
        let mut fut = std::pin::pin!(fut);
        let mut every = tokio::time::interval(TICK);
        loop {
            tokio::select! {
                biased;
                _ = every.tick() => {
                    if cancel.is_cancelled() {
                        return Err(DownloadError::Cancelled);
                    }
                    tick();
                }
                out = &mut fut => return Ok(out),
            }
        }
    })
}

/// An error and its causes on one line (reqwest keeps the useful part in its sources).
fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let text = c.to_string();
        if !s.contains(&text) {
            s = format!("{s}: {text}");
        }
        cause = c.source();
    }
    s
}

/// Download `repo`'s checkpoint into the HF cache through hf-hub, one file at a time
/// (configs, tokenizer, Mimi, then the LM), skipping files the snapshot has already.
/// Progress is hf-hub's byte count for each file; an interrupted file resumes from its
/// last whole chunk. Returns the snapshot directory.
pub fn download(
    hub: &Hub,
    repo: &str,
    progress: &mut dyn FnMut(LoadProgress),
    cancel: &Cancel,
) -> Result<PathBuf, DownloadError> {
    download_files(hub, repo, &moshi_files, &is_complete, progress, cancel)
}

/// Which files of a repo to fetch, in order, given a test of whether the repo lists a
/// file; an error names what the repo lacks.
pub type ChooseFiles<'a> = dyn Fn(&dyn Fn(&str) -> bool) -> Result<Vec<String>, String> + 'a;

/// Moshi's checkpoint: optional configs, the tokenizer, Mimi, then the LM.
fn moshi_files(listed: &dyn Fn(&str) -> bool) -> Result<Vec<String>, String> {
    let lm = [LM_GGUF, LM_SAFETENSORS]
        .into_iter()
        .find(|f| listed(f))
        .ok_or_else(|| format!("it has neither {LM_GGUF} nor {LM_SAFETENSORS}"))?;
    for f in [MIMI_FILE, TOKENIZER_FILE] {
        if !listed(f) {
            return Err(format!("it has no {f}"));
        }
    }
    // Config files are optional: the official repos have none, other sizes need them.
    // The LM, by far the largest, comes last.
    Ok([LM_CONFIG_FILE, MIMI_CONFIG_FILE]
        .into_iter()
        .filter(|f| listed(f))
        .chain([TOKENIZER_FILE, MIMI_FILE, lm])
        .map(String::from)
        .collect())
}

/// `download` for any layout: `choose` picks the files from the repo's listing, and
/// `complete` checks the snapshot afterwards.
pub fn download_files(
    hub: &Hub,
    repo: &str,
    choose: &ChooseFiles,
    complete: &dyn Fn(&Path) -> bool,
    progress: &mut dyn FnMut(LoadProgress),
    cancel: &Cancel,
) -> Result<PathBuf, DownloadError> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the download runtime: {e}"))?;
    let result = download_on(&rt, hub, repo, (choose, complete), progress, cancel);
    // Chunk tasks of a dropped download end here; a file write in flight may finish.
    rt.shutdown_timeout(Duration::from_millis(200));
    result
}

fn download_on(
    rt: &tokio::runtime::Runtime,
    hub: &Hub,
    repo: &str,
    (choose, complete): (&ChooseFiles, &dyn Fn(&Path) -> bool),
    progress: &mut dyn FnMut(LoadProgress),
    cancel: &Cancel,
) -> Result<PathBuf, DownloadError> {
    let endpoint = hub.endpoint.trim_end_matches('/');
    let token = std::env::var("HF_TOKEN").ok().filter(|t| !t.is_empty());
    let mut builder = ApiBuilder::from_cache(Cache::new(hub.cache.to_path_buf()))
        .with_endpoint(endpoint.to_string())
        .with_progress(false)
        .with_chunk_size(Some(hub.chunk_bytes.max(1)));
    if token.is_some() {
        builder = builder.with_token(token);
    }
    // Built inside the runtime, so whatever reqwest sets up belongs to it.
    let _entered = rt.enter();
    let api = builder
        .build()
        .map_err(|e| format!("cannot set up downloads: {}", chain(&e)))?;
    let remote = api.model(repo.to_string());
    let info = drive(
        rt,
        tokio::time::timeout(FIRST_ANSWER, remote.info()),
        cancel,
        || {},
    )?
    .map_err(|_| format!("{endpoint} did not answer in {} s", FIRST_ANSWER.as_secs()))?
    .map_err(|e| match &e {
        ApiError::RequestError(r) if r.status().is_some_and(|s| s.as_u16() == 404) => {
            format!("{endpoint} has no model {repo}")
        }
        ApiError::RequestError(r) if r.status().is_some_and(|s| s.as_u16() == 401) => {
            format!("{endpoint} wants a token for {repo} (set HF_TOKEN)")
        }
        ApiError::RequestError(r) if r.is_connect() || r.is_timeout() => {
            format!("cannot reach {endpoint}: {}", chain(&e))
        }
        _ => format!("{endpoint}: {repo}: {}", chain(&e)),
    })?;
    let listed = |f: &str| info.siblings.iter().any(|s| s.rfilename == f);
    let files = choose(&listed).map_err(|e| format!("{repo}: {e}"))?;
    // Stages name the source, apart from the read of the same file that follows.
    let host = endpoint.split("://").last().unwrap_or(endpoint);
    let stage = |f: &str| format!("{f} from {host}");
    let snapshot = hub
        .cache
        .join(format!("models--{}", repo.replace('/', "--")))
        .join("snapshots")
        .join(&info.sha);
    for f in files.iter().map(String::as_str) {
        let have = snapshot.join(f);
        if let Ok(m) = std::fs::metadata(&have) {
            let n = m.len();
            progress(bytes_progress(&stage(f), n, n, 0.0));
            continue;
        }
        let bytes = Bytes::default();
        let start = Instant::now();
        let fut = remote.download_with_progress(f, bytes.clone());
        let report = |progress: &mut dyn FnMut(LoadProgress)| {
            let (done, total) = (
                bytes.0 .0.load(Ordering::Relaxed),
                bytes.0 .1.load(Ordering::Relaxed),
            );
            // Nothing to say before hf-hub knows the size (its first request), nor before
            // it counts bytes: a resumed download first says 0, then what the partial
            // file held (a bar that started at 0 and jumped, seen at load 16).
            if total > 0 && done > 0 {
                progress(bytes_progress(
                    &stage(f),
                    done,
                    total,
                    start.elapsed().as_secs_f64(),
                ));
            }
        };
        let got = drive(rt, fut, cancel, || report(&mut *progress))?
            .map_err(|e| format!("downloading {f}: {}", chain(&e)))?;
        report(&mut *progress);
        // (`f` may sit in a folder of the repo: `languages/english/model.safetensors`.)
        if !got.starts_with(&snapshot) {
            // The hub moved on between the listing and this file: start again from
            // the new listing rather than mix two revisions.
            return Err(format!(
                "{repo} changed while downloading ({f} is from another revision); try again"
            )
            .into());
        }
    }
    if !complete(&snapshot) {
        return Err(format!("{}: incomplete after the download", snapshot.display()).into());
    }
    Ok(snapshot)
}

fn bytes_progress(stage: &str, done: u64, total: u64, elapsed_s: f64) -> LoadProgress {
    LoadProgress {
        stage: stage.into(),
        done,
        total: total.max(done),
        unit: ProgressUnit::Bytes,
        elapsed_s,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_snapshot_refs_main_points_at() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("models--kyutai--moshiko-candle-q8");
        let snap = root.join("snapshots").join("abc123");
        std::fs::create_dir_all(&snap).unwrap();
        std::fs::create_dir_all(root.join("refs")).unwrap();
        std::fs::write(root.join("refs").join("main"), "abc123\n").unwrap();
        assert_eq!(
            find_in_hf_cache(tmp.path(), "kyutai/moshiko-candle-q8"),
            None
        );
        for f in [LM_GGUF, MIMI_FILE, TOKENIZER_FILE] {
            std::fs::write(snap.join(f), b"x").unwrap();
        }
        assert_eq!(
            find_in_hf_cache(tmp.path(), "kyutai/moshiko-candle-q8"),
            Some(snap)
        );
        assert_eq!(find_in_hf_cache(tmp.path(), "kyutai/other"), None);
    }
}
