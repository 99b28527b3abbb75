//! Kyutai's WebSocket protocol (`/api/chat`): one binary WebSocket message per
//! protocol message, the first byte its kind. Byte-compatible with Kyutai's Rust
//! `moshi-backend` and `moshi-server`, and with the Python server's 1-byte handshake.
//!
//! Parsing is strict: every message that reaches [`Message::parse`] may come from a
//! hostile peer, so sizes are bounded and every failure names what was wrong.

use std::fmt;

/// The protocol version we speak (Kyutai's is always 0 so far).
pub const PROTOCOL_VERSION: u32 = 0;

/// Message kinds (the first byte).
pub mod kind {
    pub const HANDSHAKE: u8 = 0;
    pub const AUDIO: u8 = 1;
    pub const TEXT: u8 = 2;
    pub const CONTROL: u8 = 3;
    pub const METADATA: u8 = 4;
    pub const ERROR: u8 = 5;
    pub const PING: u8 = 6;
    /// `moshi-server` only: coloured text, an image, raw codes. Parsed and skipped.
    pub const COLORED_TEXT: u8 = 7;
    pub const IMAGE: u8 = 8;
    pub const CODES: u8 = 9;
}

/// Control messages (kind 3, one byte). Full-streaming servers ignore them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Control {
    Start,
    EndTurn,
    Pause,
    Restart,
}

impl Control {
    pub fn to_u8(self) -> u8 {
        match self {
            Self::Start => 0,
            Self::EndTurn => 1,
            Self::Pause => 2,
            Self::Restart => 3,
        }
    }
    pub fn from_u8(b: u8) -> Option<Self> {
        Some(match b {
            0 => Self::Start,
            1 => Self::EndTurn,
            2 => Self::Pause,
            3 => Self::Restart,
            _ => return None,
        })
    }
}

/// The handshake: 8 bytes (protocol and model version, u32 little-endian) from the
/// Rust servers, nothing from the Python server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Handshake {
    Versions {
        protocol: u32,
        model: u32,
    },
    /// The Python server's single kind byte.
    Short,
}

/// One protocol message.
#[derive(Debug, Clone, PartialEq)]
pub enum Message {
    Handshake(Handshake),
    /// Ogg pages carrying Opus (whole pages; see `opus_ogg`).
    Audio(Vec<u8>),
    /// A piece of text, as the server produced it (a word, a sub-word, a space).
    Text(String),
    Control(Control),
    /// A JSON object (sampling settings, model files, build info).
    Metadata(serde_json::Value),
    Error(String),
    Ping,
    /// A kind `moshi-server` adds (7 coloured text, 8 image, 9 codes): known, not used.
    Extension {
        kind: u8,
        len: usize,
    },
}

/// Bounds for what a peer may send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Whole WebSocket message, kind byte included.
    pub max_message: usize,
    /// Text, error and metadata payloads.
    pub max_text: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            // 80 ms of Opus is a few hundred bytes; 256 KiB is generous and bounded.
            max_message: 256 * 1024,
            max_text: 64 * 1024,
        }
    }
}

/// Why a message was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtocolError {
    #[error("empty message (no kind byte)")]
    Empty,
    #[error(
        "unknown message kind {0} (known: 0 handshake .. 6 ping, 7-9 moshi-server extensions)"
    )]
    UnknownKind(u8),
    #[error("{what} message of {len} bytes exceeds the limit of {max}")]
    TooLarge {
        what: &'static str,
        len: usize,
        max: usize,
    },
    #[error("handshake of {0} payload bytes (expected 8, or 0 from a Python server)")]
    BadHandshake(usize),
    #[error("control message: {0}")]
    BadControl(String),
    #[error("{what} message is not UTF-8 (at byte {at})")]
    BadUtf8 { what: &'static str, at: usize },
    #[error("metadata is not a JSON object: {0}")]
    BadMetadata(String),
    #[error("ping with a {0}-byte payload (at most 125)")]
    BadPing(usize),
}

impl Message {
    /// The message's kind byte.
    pub fn kind(&self) -> u8 {
        match self {
            Self::Handshake(_) => kind::HANDSHAKE,
            Self::Audio(_) => kind::AUDIO,
            Self::Text(_) => kind::TEXT,
            Self::Control(_) => kind::CONTROL,
            Self::Metadata(_) => kind::METADATA,
            Self::Error(_) => kind::ERROR,
            Self::Ping => kind::PING,
            Self::Extension { kind, .. } => *kind,
        }
    }

    /// The wire form. An `Extension` is written as its kind and `len` zero bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = vec![self.kind()];
        match self {
            Self::Handshake(Handshake::Versions { protocol, model }) => {
                out.extend_from_slice(&protocol.to_le_bytes());
                out.extend_from_slice(&model.to_le_bytes());
            }
            Self::Handshake(Handshake::Short) | Self::Ping => {}
            Self::Audio(b) => out.extend_from_slice(b),
            Self::Text(t) | Self::Error(t) => out.extend_from_slice(t.as_bytes()),
            Self::Control(c) => out.push(c.to_u8()),
            Self::Metadata(v) => out.extend_from_slice(v.to_string().as_bytes()),
            Self::Extension { len, .. } => out.resize(1 + len, 0),
        }
        out
    }

    /// Parse one binary WebSocket message.
    pub fn parse(bytes: &[u8], limits: &Limits) -> Result<Self, ProtocolError> {
        let (&k, payload) = bytes.split_first().ok_or(ProtocolError::Empty)?;
        let name = kind_name(k).ok_or(ProtocolError::UnknownKind(k))?;
        if bytes.len() > limits.max_message {
            return Err(ProtocolError::TooLarge {
                what: name,
                len: bytes.len(),
                max: limits.max_message,
            });
        }
        let text_bound = |p: &[u8]| {
            if p.len() > limits.max_text {
                Err(ProtocolError::TooLarge {
                    what: name,
                    len: p.len(),
                    max: limits.max_text,
                })
            } else {
                Ok(())
            }
        };
        let utf8 = |p: &[u8]| {
            std::str::from_utf8(p)
                .map(str::to_owned)
                .map_err(|e| ProtocolError::BadUtf8 {
                    what: name,
                    at: 1 + e.valid_up_to(),
                })
        };
        Ok(match k {
            kind::HANDSHAKE => match payload.len() {
                0 => Self::Handshake(Handshake::Short),
                8 => Self::Handshake(Handshake::Versions {
                    protocol: u32::from_le_bytes(payload[..4].try_into().expect("4 bytes")),
                    model: u32::from_le_bytes(payload[4..].try_into().expect("4 bytes")),
                }),
                n => return Err(ProtocolError::BadHandshake(n)),
            },
            kind::AUDIO => Self::Audio(payload.to_vec()),
            kind::TEXT => {
                text_bound(payload)?;
                Self::Text(utf8(payload)?)
            }
            kind::CONTROL => match payload {
                [b] => Self::Control(Control::from_u8(*b).ok_or_else(|| {
                    ProtocolError::BadControl(format!("unknown action {b} (0 start .. 3 restart)"))
                })?),
                p => {
                    return Err(ProtocolError::BadControl(format!(
                        "{} payload bytes, expected 1",
                        p.len()
                    )))
                }
            },
            kind::METADATA => {
                text_bound(payload)?;
                let v: serde_json::Value = serde_json::from_slice(payload)
                    .map_err(|e| ProtocolError::BadMetadata(e.to_string()))?;
                if !v.is_object() {
                    return Err(ProtocolError::BadMetadata(format!("got {}", json_type(&v))));
                }
                Self::Metadata(v)
            }
            kind::ERROR => {
                text_bound(payload)?;
                Self::Error(String::from_utf8_lossy(payload).into_owned())
            }
            kind::PING => {
                if payload.len() > 125 {
                    return Err(ProtocolError::BadPing(payload.len()));
                }
                Self::Ping
            }
            _ => Self::Extension {
                kind: k,
                len: payload.len(),
            },
        })
    }
}

/// The name of a known kind, for messages.
pub fn kind_name(k: u8) -> Option<&'static str> {
    Some(match k {
        kind::HANDSHAKE => "handshake",
        kind::AUDIO => "audio",
        kind::TEXT => "text",
        kind::CONTROL => "control",
        kind::METADATA => "metadata",
        kind::ERROR => "error",
        kind::PING => "ping",
        kind::COLORED_TEXT => "coloured text",
        kind::IMAGE => "image",
        kind::CODES => "codes",
        _ => return None,
    })
}

fn json_type(v: &serde_json::Value) -> &'static str {
    match v {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}

impl fmt::Display for Handshake {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Versions { protocol, model } => write!(f, "protocol {protocol}, model {model}"),
            Self::Short => f.write_str("1-byte (Python server)"),
        }
    }
}

/// Query parameters a client may send on `/api/chat` (Kyutai's and PersonaPlex's).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SessionParams {
    pub text_temperature: Option<f64>,
    pub text_topk: Option<usize>,
    pub audio_temperature: Option<f64>,
    pub audio_topk: Option<usize>,
    pub text_seed: Option<u64>,
    pub audio_seed: Option<u64>,
    pub pad_mult: Option<f32>,
    pub repetition_penalty_context: Option<usize>,
    pub repetition_penalty: Option<f32>,
    pub max_steps: Option<usize>,
    pub text_prompt: Option<String>,
    pub voice_prompt: Option<String>,
    /// `auth_id`, as `moshi-server` takes it.
    pub auth_id: Option<String>,
}

/// The query string is short in practice; a longer one is refused.
pub const MAX_QUERY: usize = 8 * 1024;

impl SessionParams {
    /// Parse a query string (without `?`). Unknown keys are ignored, as Kyutai's
    /// servers ignore them; a known key with a bad value is an error that names it.
    pub fn from_query(q: &str) -> Result<Self, String> {
        if q.len() > MAX_QUERY {
            return Err(format!(
                "query string of {} bytes (at most {MAX_QUERY})",
                q.len()
            ));
        }
        let mut p = Self::default();
        for pair in q.split('&').filter(|s| !s.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            let k = percent_decode(k)?;
            let v = percent_decode(v)?;
            fn num<T: std::str::FromStr>(k: &str, v: &str) -> Result<Option<T>, String> {
                v.parse::<T>()
                    .map(Some)
                    .map_err(|_| format!("query parameter {k}={v:?} is not a valid number"))
            }
            match k.as_str() {
                "text_temperature" => p.text_temperature = num(&k, &v)?,
                "text_topk" => p.text_topk = num(&k, &v)?,
                "audio_temperature" => p.audio_temperature = num(&k, &v)?,
                "audio_topk" => p.audio_topk = num(&k, &v)?,
                "text_seed" => p.text_seed = num(&k, &v)?,
                "audio_seed" => p.audio_seed = num(&k, &v)?,
                "pad_mult" => p.pad_mult = num(&k, &v)?,
                "repetition_penalty_context" => p.repetition_penalty_context = num(&k, &v)?,
                "repetition_penalty" => p.repetition_penalty = num(&k, &v)?,
                "max_steps" => p.max_steps = num(&k, &v)?,
                "text_prompt" => p.text_prompt = Some(v),
                "voice_prompt" => p.voice_prompt = Some(v),
                "auth_id" => p.auth_id = Some(v),
                _ => {}
            }
        }
        for (name, t) in [
            ("text_temperature", p.text_temperature),
            ("audio_temperature", p.audio_temperature),
        ] {
            if let Some(t) = t.filter(|t| !t.is_finite() || *t < 0.0) {
                return Err(format!("query parameter {name}={t} must be ≥ 0"));
            }
        }
        Ok(p)
    }

    /// The query string a client sends (sampling keys only; no credentials).
    pub fn to_query(&self) -> String {
        let mut parts = Vec::new();
        let mut put = |k: &str, v: Option<String>| {
            if let Some(v) = v {
                parts.push(format!("{k}={}", percent_encode(&v)));
            }
        };
        put(
            "text_temperature",
            self.text_temperature.map(|v| v.to_string()),
        );
        put("text_topk", self.text_topk.map(|v| v.to_string()));
        put(
            "audio_temperature",
            self.audio_temperature.map(|v| v.to_string()),
        );
        put("audio_topk", self.audio_topk.map(|v| v.to_string()));
        put("text_seed", self.text_seed.map(|v| v.to_string()));
        put("audio_seed", self.audio_seed.map(|v| v.to_string()));
        put("pad_mult", self.pad_mult.map(|v| v.to_string()));
        put(
            "repetition_penalty_context",
            self.repetition_penalty_context.map(|v| v.to_string()),
        );
        put(
            "repetition_penalty",
            self.repetition_penalty.map(|v| v.to_string()),
        );
        put("max_steps", self.max_steps.map(|v| v.to_string()));
        put("text_prompt", self.text_prompt.clone());
        put("voice_prompt", self.voice_prompt.clone());
        put("auth_id", self.auth_id.clone());
        parts.join("&")
    }
}

fn percent_decode(s: &str) -> Result<String, String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = b
                    .get(i + 1..i + 3)
                    .and_then(|h| std::str::from_utf8(h).ok())
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                    .ok_or_else(|| format!("bad percent escape in query: {s:?}"))?;
                out.push(hex);
                i += 2;
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8(out).map_err(|_| format!("query is not UTF-8: {s:?}"))
}

fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handshake_bytes_match_moshi_backend() {
        let m = Message::Handshake(Handshake::Versions {
            protocol: 0,
            model: 0,
        });
        assert_eq!(m.encode(), vec![0u8; 9]);
        let m = Message::Handshake(Handshake::Versions {
            protocol: 1,
            model: 0x0403_0201,
        });
        assert_eq!(m.encode(), [0, 1, 0, 0, 0, 1, 2, 3, 4]);
        let l = Limits::default();
        assert_eq!(Message::parse(&m.encode(), &l), Ok(m));
        assert_eq!(
            Message::parse(&[0], &l),
            Ok(Message::Handshake(Handshake::Short))
        );
        assert_eq!(
            Message::parse(&[0, 1, 2], &l),
            Err(ProtocolError::BadHandshake(2))
        );
    }

    #[test]
    fn every_kind_round_trips() {
        let l = Limits::default();
        let msgs = [
            Message::Audio(b"OggS....".to_vec()),
            Message::Text(" héllo".into()),
            Message::Control(Control::Pause),
            Message::Metadata(serde_json::json!({"text_topk": 250, "instance_name": "x"})),
            Message::Error("busy".into()),
            Message::Ping,
            Message::Extension { kind: 9, len: 3 },
        ];
        for m in msgs {
            let bytes = m.encode();
            assert_eq!(bytes[0], m.kind());
            assert_eq!(Message::parse(&bytes, &l).as_ref(), Ok(&m), "{m:?}");
        }
        assert_eq!(Message::Text("hi".into()).encode(), b"\x02hi");
    }

    #[test]
    fn hostile_messages_get_named_errors() {
        let l = Limits {
            max_message: 100,
            max_text: 10,
        };
        assert_eq!(Message::parse(&[], &l), Err(ProtocolError::Empty));
        assert_eq!(
            Message::parse(&[10, 1], &l),
            Err(ProtocolError::UnknownKind(10))
        );
        assert_eq!(
            Message::parse(&[255], &l),
            Err(ProtocolError::UnknownKind(255))
        );
        let big = [&[1u8][..], &[0u8; 100]].concat();
        let e = Message::parse(&big, &l).unwrap_err();
        assert_eq!(
            e.to_string(),
            "audio message of 101 bytes exceeds the limit of 100"
        );
        let long_text = [&[2u8][..], &[b'a'; 11]].concat();
        assert!(matches!(
            Message::parse(&long_text, &l),
            Err(ProtocolError::TooLarge { what: "text", .. })
        ));
        assert_eq!(
            Message::parse(&[2, b'o', 0xff], &l),
            Err(ProtocolError::BadUtf8 {
                what: "text",
                at: 2
            })
        );
        assert!(matches!(
            Message::parse(&[3, 4], &l),
            Err(ProtocolError::BadControl(_))
        ));
        assert!(matches!(
            Message::parse(&[3], &l),
            Err(ProtocolError::BadControl(_))
        ));
        assert!(matches!(
            Message::parse(b"\x04[1,2]", &l),
            Err(ProtocolError::BadMetadata(m)) if m == "got an array"
        ));
        assert!(matches!(
            Message::parse(b"\x04{", &l),
            Err(ProtocolError::BadMetadata(_))
        ));
        // An error message from a peer is shown even if it is not valid UTF-8.
        assert_eq!(
            Message::parse(&[5, b'n', 0xff], &l),
            Ok(Message::Error("n\u{fffd}".into()))
        );
    }

    #[test]
    fn query_parameters() {
        let p = SessionParams::from_query(
            "text_temperature=0&text_topk=1&audio_seed=42&text_prompt=You%20are+kind&auth_id=t0k&foo=bar",
        )
        .unwrap();
        assert_eq!(p.text_temperature, Some(0.0));
        assert_eq!(p.text_topk, Some(1));
        assert_eq!(p.audio_seed, Some(42));
        assert_eq!(p.text_prompt.as_deref(), Some("You are kind"));
        assert_eq!(p.auth_id.as_deref(), Some("t0k"));
        assert_eq!(SessionParams::from_query(&p.to_query()).unwrap(), p);
        let e = SessionParams::from_query("text_topk=many").unwrap_err();
        assert!(e.contains("text_topk"), "{e}");
        assert!(SessionParams::from_query("text_temperature=-1").is_err());
        assert!(SessionParams::from_query("text_prompt=%zz").is_err());
        assert!(SessionParams::from_query(&"a".repeat(MAX_QUERY + 1)).is_err());
    }

    /// Thousands of random and mutated messages: every one parses or is refused,
    /// none panics, and whatever parses encodes back to a message that parses the same.
    #[test]
    fn random_and_mutated_messages_never_panic() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(12);
        let l = Limits {
            max_message: 2048,
            max_text: 512,
        };
        let seeds: Vec<Vec<u8>> = vec![
            vec![0; 9],
            vec![0],
            b"\x02 hello".to_vec(),
            b"\x03\x01".to_vec(),
            b"\x04{\"a\":1}".to_vec(),
            b"\x05busy".to_vec(),
            vec![6],
            b"\x01OggS\x00\x02".to_vec(),
        ];
        let (mut ok, mut refused) = (0, 0);
        for i in 0..20_000 {
            let msg: Vec<u8> = if i % 2 == 0 {
                let n = rng.random_range(0..64);
                (0..n).map(|_| rng.random()).collect()
            } else {
                let mut m = seeds[rng.random_range(0..seeds.len())].clone();
                for _ in 0..rng.random_range(1..4) {
                    match rng.random_range(0..4) {
                        0 if !m.is_empty() => {
                            let j = rng.random_range(0..m.len());
                            m[j] = rng.random();
                        }
                        1 => m.push(rng.random()),
                        2 if !m.is_empty() => {
                            m.truncate(rng.random_range(0..m.len()));
                        }
                        _ => m.extend(std::iter::repeat_n(b'x', rng.random_range(0..3000))),
                    }
                }
                m
            };
            match Message::parse(&msg, &l) {
                Ok(m) => {
                    ok += 1;
                    if !matches!(m, Message::Metadata(_)) {
                        // Metadata's JSON may re-serialise differently.
                        assert_eq!(Message::parse(&m.encode(), &l).as_ref(), Ok(&m));
                    }
                }
                Err(e) => {
                    refused += 1;
                    assert!(!e.to_string().is_empty());
                }
            }
        }
        assert!(ok > 1000 && refused > 1000, "ok {ok}, refused {refused}");
    }
}
