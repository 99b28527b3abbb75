//! Opening a session: the URL, TCP and TLS, the WebSocket upgrade with the API key, and
//! waiting for the server's handshake (metadata may come first), with each failure
//! named for the user.

use super::{ConnectError, ConnectOptions, ConnectPhase, ServerInfo};
use crate::net::protocol::{Message, SessionParams};
use crate::net::server::{ws_config, API_KEY_HEADER};
use futures_util::StreamExt;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message as WsMessage;

/// The full URL: `/api/chat` when no path is given, and the session's query.
pub fn chat_url(url: &str, params: &SessionParams) -> Result<String, ConnectError> {
    let bad = |why: &str| ConnectError::BadUrl {
        url: url.into(),
        why: why.into(),
    };
    let (scheme, rest) = if let Some(r) = url.strip_prefix("ws://") {
        ("ws", r)
    } else if let Some(r) = url.strip_prefix("wss://") {
        ("wss", r)
    } else if let Some((scheme, _)) = url.split_once("://") {
        return Err(bad(&format!(
            "scheme {scheme}:// is neither ws:// nor wss://"
        )));
    } else {
        return Err(bad("no ws:// or wss:// scheme"));
    };
    let (host, path) = match rest.find(['/', '?']) {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, ""),
    };
    if host.is_empty() {
        return Err(bad("no host"));
    }
    let (path, query) = path.split_once('?').unwrap_or((path, ""));
    let path = if path.is_empty() || path == "/" {
        crate::net::server::CHAT_PATH
    } else {
        path
    };
    let extra = params.to_query();
    let query = match (query.is_empty(), extra.is_empty()) {
        (true, true) => String::new(),
        (true, false) => format!("?{extra}"),
        (false, true) => format!("?{query}"),
        (false, false) => format!("?{query}&{extra}"),
    };
    Ok(format!("{scheme}://{host}{path}{query}"))
}

pub(super) type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

pub(super) async fn open(
    url: &str,
    opts: &ConnectOptions,
    phase: &dyn Fn(ConnectPhase),
) -> Result<(Ws, ServerInfo), ConnectError> {
    let mut req = url
        .into_client_request()
        .map_err(|e| ConnectError::BadUrl {
            url: url.into(),
            why: e.to_string(),
        })?;
    if let Some(t) = &opts.token {
        let v = t.parse().map_err(|_| ConnectError::BadUrl {
            url: url.into(),
            why: "the token is not a valid header value".into(),
        })?;
        req.headers_mut().insert(API_KEY_HEADER, v);
    }
    let connector = if url.starts_with("wss://") {
        let config =
            crate::net::tls::client_config(opts.insecure).map_err(|why| ConnectError::Tls {
                url: url.into(),
                why,
            })?;
        tokio_tungstenite::Connector::Rustls(config)
    } else {
        tokio_tungstenite::Connector::Plain
    };
    let connecting = tokio_tungstenite::connect_async_tls_with_config(
        req,
        Some(ws_config(&opts.limits)),
        true,
        Some(connector),
    );
    let (mut ws, _) = match tokio::time::timeout(opts.connect_timeout, connecting).await {
        Err(_) => {
            return Err(ConnectError::Timeout {
                url: url.into(),
                secs: opts.connect_timeout.as_secs_f64(),
            })
        }
        Ok(Err(e)) => return Err(upgrade_error(url, e)),
        Ok(Ok(x)) => x,
    };
    phase(ConnectPhase::AwaitingHandshake);
    // Metadata may come first (moshi-backend); the handshake says the model is ready.
    let mut metadata = None;
    let deadline = tokio::time::Instant::now() + opts.handshake_timeout;
    loop {
        let msg = match tokio::time::timeout_at(deadline, ws.next()).await {
            Err(_) => {
                return Err(ConnectError::Timeout {
                    url: url.into(),
                    secs: opts.handshake_timeout.as_secs_f64(),
                })
            }
            Ok(None) => {
                return Err(ConnectError::NotKyutai {
                    url: url.into(),
                    why: "it closed the connection before its handshake".into(),
                })
            }
            Ok(Some(Err(e))) => {
                return Err(ConnectError::NotKyutai {
                    url: url.into(),
                    why: e.to_string(),
                })
            }
            Ok(Some(Ok(m))) => m,
        };
        let bytes = match msg {
            WsMessage::Binary(b) => b,
            WsMessage::Close(f) => {
                return Err(ConnectError::NotKyutai {
                    url: url.into(),
                    why: format!(
                        "it closed the connection before its handshake{}",
                        f.map(|f| format!(": {}", f.reason)).unwrap_or_default()
                    ),
                })
            }
            WsMessage::Text(_) => {
                return Err(ConnectError::NotKyutai {
                    url: url.into(),
                    why: "it sent a text frame (the protocol is binary)".into(),
                })
            }
            _ => continue,
        };
        match Message::parse(&bytes, &opts.limits) {
            Ok(Message::Handshake(h)) => {
                return Ok((
                    ws,
                    ServerInfo {
                        url: url.into(),
                        handshake: h,
                        metadata,
                        unchecked_certificate: opts.insecure && url.starts_with("wss://"),
                    },
                ))
            }
            Ok(Message::Metadata(m)) => metadata = Some(m),
            Ok(Message::Error(e)) => {
                return Err(ConnectError::Server {
                    url: url.into(),
                    message: e,
                })
            }
            Ok(_) => {}
            Err(e) => {
                return Err(ConnectError::NotKyutai {
                    url: url.into(),
                    why: e.to_string(),
                })
            }
        }
    }
}

fn upgrade_error(url: &str, e: tokio_tungstenite::tungstenite::Error) -> ConnectError {
    use tokio_tungstenite::tungstenite::Error as E;
    match e {
        E::Http(resp) => {
            let body = resp
                .body()
                .as_ref()
                .map(|b| {
                    String::from_utf8_lossy(&b[..b.len().min(300)])
                        .trim()
                        .to_string()
                })
                .filter(|b| !b.is_empty())
                .map(|b| format!(": {b}"))
                .unwrap_or_default();
            ConnectError::Http {
                url: url.into(),
                status: resp.status().as_u16(),
                body,
            }
        }
        E::Io(io) => match io
            .get_ref()
            .and_then(|e| e.downcast_ref::<rustls::Error>())
        {
            Some(tls) => ConnectError::Tls {
                url: url.into(),
                why: crate::net::tls::describe(tls),
            },
            None if url.starts_with("wss://")
                && io.kind() == std::io::ErrorKind::UnexpectedEof =>
            {
                ConnectError::Tls {
                    url: url.into(),
                    why: format!("the server hung up during the TLS handshake ({io}); does it serve plain ws://? then connect with ws://"),
                }
            }
            None => ConnectError::Connect {
                url: url.into(),
                why: io.to_string(),
            },
        },
        E::Tls(tls) => ConnectError::Tls {
            url: url.into(),
            why: tls.to_string(),
        },
        E::Protocol(tokio_tungstenite::tungstenite::error::ProtocolError::HttparseError(h))
            if url.starts_with("ws://") =>
        {
            ConnectError::NotKyutai {
                url: url.into(),
                why: format!("its answer is not HTTP ({h}); if it serves TLS, connect with wss://"),
            }
        }
        other => ConnectError::NotKyutai {
            url: url.into(),
            why: other.to_string(),
        },
    }
}
