//! A Hugging Face hub on 127.0.0.1, enough for hf-hub's downloads: the repo listing
//! (`/api/models/{repo}/revision/main`) and ranged file reads
//! (`/{repo}/resolve/main/{file}`, with ETag, X-Repo-Commit and Content-Range). One file
//! can be served slowly (a fixed rate), and one response can be cut short, as a dropped
//! connection would. Plain std::net, a thread per connection.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub const SHA: &str = "4b1d0c0ffee5eed0000000000000000000000042";

/// One file request as served.
#[derive(Debug, Clone)]
pub struct Served {
    pub file: String,
    /// First byte asked for (0 without a Range header).
    pub from: u64,
    /// Bytes the request asked for.
    pub asked: u64,
    /// Whether the response was cut short on purpose.
    pub cut: bool,
}

struct State {
    repo: String,
    files: BTreeMap<String, Vec<u8>>,
    /// (file, bytes per second): that file trickles.
    slow: Mutex<Option<(String, u64)>>,
    /// The next response for this file that covers this byte offset stops there.
    cut: Mutex<Option<(String, u64)>>,
    log: Mutex<Vec<Served>>,
    /// Body bytes written, per file.
    sent: Mutex<BTreeMap<String, u64>>,
    requests: AtomicU64,
    stop: AtomicBool,
}

pub struct Hub {
    pub endpoint: String,
    state: Arc<State>,
    port: u16,
}

impl Hub {
    /// Serve every file under `dir` as `repo` at revision `SHA`.
    pub fn start(repo: &str, dir: &Path) -> Self {
        // Files in subfolders are served under their relative path ("a/b.txt").
        let mut files = BTreeMap::new();
        let mut dirs = vec![dir.to_path_buf()];
        while let Some(d) = dirs.pop() {
            for e in std::fs::read_dir(&d).unwrap() {
                let p = e.unwrap().path();
                if p.is_dir() {
                    dirs.push(p);
                } else if p.is_file() {
                    let rel = p.strip_prefix(dir).unwrap();
                    let name = rel
                        .components()
                        .map(|c| c.as_os_str().to_string_lossy().into_owned())
                        .collect::<Vec<_>>()
                        .join("/");
                    files.insert(name, std::fs::read(&p).unwrap());
                }
            }
        }
        let state = Arc::new(State {
            repo: repo.to_string(),
            files,
            slow: Mutex::new(None),
            cut: Mutex::new(None),
            log: Mutex::new(Vec::new()),
            sent: Mutex::new(BTreeMap::new()),
            requests: AtomicU64::new(0),
            stop: AtomicBool::new(false),
        });
        let listener = TcpListener::bind(("127.0.0.1", 0)).unwrap();
        let port = listener.local_addr().unwrap().port();
        let st = state.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if st.stop.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(conn) = conn else { continue };
                let st = st.clone();
                std::thread::spawn(move || {
                    let _ = serve(&st, conn);
                });
            }
        });
        Self {
            endpoint: format!("http://127.0.0.1:{port}"),
            state,
            port,
        }
    }

    /// Serve `file` at `bytes_per_s` from now on.
    pub fn slow(&self, file: &str, bytes_per_s: u64) {
        *self.state.slow.lock().unwrap() = Some((file.to_string(), bytes_per_s));
    }

    /// Cut the next response for `file` that covers byte `offset` there, once.
    pub fn cut_at(&self, file: &str, offset: u64) {
        *self.state.cut.lock().unwrap() = Some((file.to_string(), offset));
    }

    pub fn log(&self) -> Vec<Served> {
        self.state.log.lock().unwrap().clone()
    }

    /// Body bytes sent for `file` so far, over all requests.
    pub fn sent(&self, file: &str) -> u64 {
        self.state
            .sent
            .lock()
            .unwrap()
            .get(file)
            .copied()
            .unwrap_or(0)
    }

    pub fn requests(&self) -> u64 {
        self.state.requests.load(Ordering::SeqCst)
    }

    pub fn file(&self, name: &str) -> &[u8] {
        &self.state.files[name]
    }
}

impl Drop for Hub {
    fn drop(&mut self) {
        self.state.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

fn serve(st: &State, conn: TcpStream) -> std::io::Result<()> {
    let mut reader = BufReader::new(conn.try_clone()?);
    let mut first = String::new();
    reader.read_line(&mut first)?;
    let mut range = None;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 || line.trim().is_empty() {
            break;
        }
        if let Some((k, v)) = line.split_once(':') {
            if k.trim().eq_ignore_ascii_case("range") {
                range = Some(v.trim().to_string());
            }
        }
    }
    st.requests.fetch_add(1, Ordering::SeqCst);
    let mut out = conn;
    let path = first.split_whitespace().nth(1).unwrap_or("/").to_string();
    if path == format!("/api/models/{}/revision/main", st.repo) {
        let siblings: Vec<String> = st
            .files
            .keys()
            .map(|f| format!("{{\"rfilename\":\"{f}\"}}"))
            .collect();
        let body = format!(
            "{{\"sha\":\"{SHA}\",\"siblings\":[{}]}}",
            siblings.join(",")
        );
        write!(
            out,
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )?;
        return out.flush();
    }
    let prefix = format!("/{}/resolve/main/", st.repo);
    let Some(data) = path
        .strip_prefix(&prefix)
        .and_then(|f| st.files.get(f).map(|d| (f, d)))
    else {
        return write!(
            out,
            "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        );
    };
    let (file, data) = data;
    let size = data.len() as u64;
    // `bytes=A-B` or `bytes=A-`; hf-hub may ask past the end, as HTTP allows.
    let (from, to) = match range.as_deref().and_then(|r| r.strip_prefix("bytes=")) {
        Some(r) => {
            let (a, b) = r.split_once('-').unwrap_or((r, ""));
            let a: u64 = a.parse().unwrap_or(0);
            let b: u64 = b.parse().unwrap_or(size - 1).min(size - 1);
            (a, b)
        }
        None => (0, size - 1),
    };
    let body = &data[from as usize..=to as usize];
    let cut = {
        let mut c = st.cut.lock().unwrap();
        match c.as_ref() {
            Some((f, at)) if f == file && (from..=to).contains(at) && *at > from => {
                let n = *at - from;
                *c = None;
                Some(n)
            }
            _ => None,
        }
    };
    st.log.lock().unwrap().push(Served {
        file: file.to_string(),
        from,
        asked: body.len() as u64,
        cut: cut.is_some(),
    });
    let status = if range.is_some() {
        "206 Partial Content"
    } else {
        "200 OK"
    };
    // The ETag names the blob in the cache: one per file content.
    let etag = format!("{:016x}{:08x}", fnv(data), size);
    write!(
        out,
        "HTTP/1.1 {status}\r\nContent-Length: {}\r\nContent-Range: bytes {from}-{to}/{size}\r\nAccept-Ranges: bytes\r\nETag: \"{etag}\"\r\nX-Repo-Commit: {SHA}\r\nConnection: close\r\n\r\n",
        body.len()
    )?;
    let slow = st
        .slow
        .lock()
        .unwrap()
        .clone()
        .filter(|(f, _)| f == file)
        .map(|(_, rate)| rate);
    let body = &body[..cut.map_or(body.len(), |n| n as usize)];
    let piece = slow.map_or(64 << 10, |rate| (rate / 20).max(1) as usize);
    for part in body.chunks(piece) {
        out.write_all(part)?;
        out.flush()?;
        *st.sent.lock().unwrap().entry(file.to_string()).or_default() += part.len() as u64;
        if let Some(rate) = slow {
            std::thread::sleep(Duration::from_secs_f64(part.len() as f64 / rate as f64));
        }
        if st.stop.load(Ordering::SeqCst) {
            break;
        }
    }
    // A cut response ends here: the connection closes with the body short.
    Ok(())
}

fn fnv(data: &[u8]) -> u64 {
    data.iter().fold(0xcbf29ce484222325u64, |h, &b| {
        (h ^ b as u64).wrapping_mul(0x100000001b3)
    })
}
