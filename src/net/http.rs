//! Plain HTTP beside the WebSocket upgrade, on the same port: `/healthz` (liveness),
//! `/readyz` (the model is loaded, a slot is free, no drain) and `/metrics`
//! (Prometheus), as load balancers and service managers expect of a server.
//!
//! The request head is read here first; a WebSocket upgrade goes on to tungstenite
//! with those bytes in front of the stream (`Prefixed`), anything else is answered
//! and closed.

use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};

pub const HEALTH_PATH: &str = "/healthz";
pub const READY_PATH: &str = "/readyz";
pub const METRICS_PATH: &str = "/metrics";

/// Largest request head read before it is refused.
pub const MAX_HEAD: usize = 16 * 1024;

/// What the head of a request asks for.
#[derive(Debug, PartialEq, Eq)]
pub enum Head {
    /// A WebSocket upgrade: hand the stream (with the head) to tungstenite.
    Upgrade,
    /// A plain GET of this path (query removed).
    Get(String),
    /// Not HTTP, or not a GET or an upgrade: tungstenite refuses it with its reason.
    Other,
}

/// Read until the end of the head (`\r\n\r\n`), at most `MAX_HEAD` bytes. Returns the
/// bytes read (possibly beyond the head) and what they ask for.
pub async fn read_head<S: AsyncRead + Unpin>(s: &mut S) -> std::io::Result<(Vec<u8>, Head)> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 2048];
    loop {
        let n = s.read(&mut chunk).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&chunk[..n]);
        let mut headers = [httparse::EMPTY_HEADER; 64];
        let mut req = httparse::Request::new(&mut headers);
        match req.parse(&buf) {
            Ok(httparse::Status::Complete(_)) => {
                let head = classify(&req);
                return Ok((buf, head));
            }
            Ok(httparse::Status::Partial) if buf.len() < MAX_HEAD => continue,
            // Too long or malformed: tungstenite gives the client its error.
            _ => return Ok((buf, Head::Other)),
        }
    }
}

fn classify(req: &httparse::Request) -> Head {
    let upgrade = req.headers.iter().any(|h| {
        h.name.eq_ignore_ascii_case("upgrade")
            && std::str::from_utf8(h.value)
                .is_ok_and(|v| v.trim().eq_ignore_ascii_case("websocket"))
    });
    match (req.method, req.path) {
        _ if upgrade => Head::Upgrade,
        (Some("GET"), Some(p)) => Head::Get(p.split('?').next().unwrap_or("").to_string()),
        _ => Head::Other,
    }
}

/// Answer a plain request and close.
pub async fn respond<S: AsyncWrite + Unpin>(
    s: &mut S,
    status: u16,
    content_type: &str,
    body: &str,
) -> std::io::Result<()> {
    let reason = match status {
        200 => "OK",
        404 => "Not Found",
        503 => "Service Unavailable",
        _ => "",
    };
    let head = format!(
        "HTTP/1.1 {status} {reason}\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).await?;
    s.write_all(body.as_bytes()).await?;
    s.shutdown().await
}

/// A stream that yields `prefix` before its own bytes: the head already read, for
/// tungstenite to read again.
pub struct Prefixed<S> {
    prefix: Vec<u8>,
    at: usize,
    inner: S,
}

impl<S> Prefixed<S> {
    pub fn new(prefix: Vec<u8>, inner: S) -> Self {
        Self {
            prefix,
            at: 0,
            inner,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Prefixed<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        if self.at < self.prefix.len() {
            let n = buf.remaining().min(self.prefix.len() - self.at);
            let at = self.at;
            buf.put_slice(&self.prefix[at..at + n]);
            self.at += n;
            if self.at == self.prefix.len() {
                self.prefix = Vec::new();
                self.at = 0;
            }
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Prefixed<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn head_of(bytes: &[u8]) -> Head {
        let mut s = bytes;
        read_head(&mut s).await.unwrap().1
    }

    #[tokio::test]
    async fn a_get_is_told_from_an_upgrade_and_the_head_is_read_again_whole() {
        assert_eq!(
            head_of(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").await,
            Head::Get("/healthz".into())
        );
        assert_eq!(
            head_of(b"GET /metrics?x=1 HTTP/1.0\r\n\r\n").await,
            Head::Get("/metrics".into())
        );
        let upgrade = b"GET /api/chat HTTP/1.1\r\nHost: x\r\nUpgrade: WebSocket\r\nConnection: Upgrade\r\n\r\nextra";
        let mut s = &upgrade[..];
        let (read, head) = read_head(&mut s).await.unwrap();
        assert_eq!(head, Head::Upgrade);
        // What tungstenite reads: every byte, in order, the head and what followed.
        let mut again = Vec::new();
        Prefixed::new(read, &b"-tail"[..])
            .read_to_end(&mut again)
            .await
            .unwrap();
        assert_eq!(again, [&upgrade[..], b"-tail"].concat());
        assert_eq!(
            head_of(b"POST /healthz HTTP/1.1\r\n\r\n").await,
            Head::Other
        );
        assert_eq!(head_of(b"\x16\x03\x01garbage\r\n\r\n").await, Head::Other);
        // A head that never ends is cut off, not read for ever.
        let long = [b"GET / HTTP/1.1\r\nX: ".as_slice(), &vec![b'a'; MAX_HEAD]].concat();
        assert_eq!(head_of(&long).await, Head::Other);
    }
}
