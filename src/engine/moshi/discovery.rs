//! Where weights come from: the Hugging Face cache, then a download.
//!
//! The cache is read directly (`models--{org}--{name}/refs/main` -> `snapshots/{rev}/`),
//! honouring HF_HUB_CACHE, HF_HOME and XDG_CACHE_HOME like `huggingface_hub`. Downloads
//! run the system `curl` (present on Linux, macOS and Windows 10+), which keeps a TLS
//! stack out of the build; progress is the size of the growing file against the
//! Content-Length, so it is real bytes.

use super::config::{LM_CONFIG_FILE, MIMI_CONFIG_FILE};
use super::files::{LM_GGUF, LM_SAFETENSORS, MIMI_FILE, TOKENIZER_FILE};
use crate::bus::{LoadProgress, ProgressUnit};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
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
    let root = cache.join(format!("models--{}", repo.replace('/', "--")));
    let snapshots = root.join("snapshots");
    if let Ok(rev) = std::fs::read_to_string(root.join("refs").join("main")) {
        let dir = snapshots.join(rev.trim());
        if is_complete(&dir) {
            return Some(dir);
        }
    }
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(&snapshots)
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| is_complete(p))
        .collect();
    dirs.sort();
    dirs.pop()
}

/// Where downloads go: our own data directory, one folder per repo.
pub fn download_dir(repo: &str) -> Option<PathBuf> {
    let dirs = directories::ProjectDirs::from("", "", "assistant")?;
    Some(dirs.data_dir().join("models").join(repo.replace('/', "--")))
}

/// The hub to download from: HF_ENDPOINT or huggingface.co.
pub fn endpoint_from_env() -> String {
    std::env::var("HF_ENDPOINT")
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "https://huggingface.co".into())
}

/// Ask the server a file's size; `Ok(None)` when it does not have the file.
fn remote_size(endpoint: &str, url: &str) -> Result<Option<u64>, String> {
    let out = Command::new("curl")
        .args([
            "-sIL",
            "--connect-timeout",
            "5",
            "--max-time",
            "20",
            "-w",
            "\n%{http_code}",
            url,
        ])
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run curl to download weights: {e}"))?;
    let text = String::from_utf8_lossy(&out.stdout);
    let code = text.lines().last().unwrap_or("").trim().to_string();
    if !out.status.success() || code == "000" {
        return Err(format!(
            "cannot reach {endpoint} (curl exit {})",
            out.status.code().unwrap_or(-1)
        ));
    }
    if code == "404" {
        return Ok(None);
    }
    if !code.starts_with('2') {
        return Err(format!("{url}: HTTP {code}"));
    }
    // With redirects, the last Content-Length is the file's; LFS files also say x-linked-size.
    let size = text.lines().rev().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        let k = k.trim().to_ascii_lowercase();
        (k == "content-length" || k == "x-linked-size")
            .then(|| v.trim().parse::<u64>().ok())
            .flatten()
    });
    Ok(Some(size.unwrap_or(0)))
}

fn fetch(
    url: &str,
    dest: &Path,
    stage: &str,
    total: u64,
    progress: &mut dyn FnMut(LoadProgress),
) -> Result<(), String> {
    let part = dest.with_extension("part");
    let mut child = Command::new("curl")
        .args(["-sfL", "--connect-timeout", "5", "-o"])
        .arg(&part)
        .arg(url)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot run curl: {e}"))?;
    let start = Instant::now();
    let status = loop {
        let done = std::fs::metadata(&part).map(|m| m.len()).unwrap_or(0);
        progress(LoadProgress {
            stage: stage.into(),
            done,
            total: total.max(done),
            unit: ProgressUnit::Bytes,
            elapsed_s: start.elapsed().as_secs_f64(),
        });
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) => std::thread::sleep(Duration::from_millis(200)),
            Err(e) => return Err(format!("curl: {e}")),
        }
    };
    if !status.success() {
        let _ = std::fs::remove_file(&part);
        return Err(format!(
            "downloading {url} failed (curl exit {})",
            status.code().unwrap_or(-1)
        ));
    }
    std::fs::rename(&part, dest).map_err(|e| format!("{}: {e}", dest.display()))
}

/// Download `repo`'s checkpoint into `dest`, reporting bytes per file.
pub fn download(
    endpoint: &str,
    repo: &str,
    dest: &Path,
    progress: &mut dyn FnMut(LoadProgress),
) -> Result<PathBuf, String> {
    let base = format!("{}/{repo}/resolve/main", endpoint.trim_end_matches('/'));
    let url = |f: &str| format!("{base}/{f}");
    // The LM comes as q8 GGUF or as safetensors, depending on the repo.
    let mut lm = None;
    for f in [LM_GGUF, LM_SAFETENSORS] {
        if let Some(size) = remote_size(endpoint, &url(f))? {
            lm = Some((f, size));
            break;
        }
    }
    let (lm_file, lm_size) =
        lm.ok_or_else(|| format!("{repo} has neither {LM_GGUF} nor {LM_SAFETENSORS}"))?;
    std::fs::create_dir_all(dest).map_err(|e| format!("{}: {e}", dest.display()))?;
    // Config files are optional: the official repos have none, other sizes need them.
    // They come first: the directory counts as complete once the weights are in.
    for f in [LM_CONFIG_FILE, MIMI_CONFIG_FILE] {
        if let Some(size) = remote_size(endpoint, &url(f))? {
            fetch(&url(f), &dest.join(f), f, size, progress)?;
        }
    }
    // Each file lands under its name only when whole (curl writes to `.part`).
    for (f, size) in [
        (MIMI_FILE, None),
        (TOKENIZER_FILE, None),
        (lm_file, Some(lm_size)),
    ] {
        if dest.join(f).is_file() {
            continue;
        }
        let size = match size {
            Some(s) => s,
            None => remote_size(endpoint, &url(f))?.ok_or_else(|| format!("{repo} has no {f}"))?,
        };
        fetch(&url(f), &dest.join(f), f, size, progress)?;
    }
    Ok(dest.to_path_buf())
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
