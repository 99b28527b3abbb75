//! Server-sent events, as OpenAI-compatible servers stream a chat completion: lines of
//! `data: …`, an event ending at a blank line, `:` comments ignored. Bytes arrive in any
//! split (a chunk may end mid-line, even mid-character), so lines are assembled here.

/// Assembles events from chunks of the response body.
#[derive(Debug, Default)]
pub struct SseParser {
    line: Vec<u8>,
    data: Option<String>,
}

impl SseParser {
    pub fn new() -> Self {
        Self::default()
    }

    /// Feed a chunk; returns the data of every event it completed, in order.
    pub fn push(&mut self, chunk: &[u8]) -> Vec<String> {
        let mut events = Vec::new();
        for &b in chunk {
            if b != b'\n' {
                self.line.push(b);
                continue;
            }
            let mut line = std::mem::take(&mut self.line);
            if line.last() == Some(&b'\r') {
                line.pop();
            }
            if line.is_empty() {
                events.extend(self.data.take());
                continue;
            }
            let line = String::from_utf8_lossy(&line);
            if let Some(rest) = line.strip_prefix("data:") {
                let rest = rest.strip_prefix(' ').unwrap_or(rest);
                match &mut self.data {
                    // Several data lines in one event are one value joined by newlines.
                    Some(d) => {
                        d.push('\n');
                        d.push_str(rest);
                    }
                    None => self.data = Some(rest.to_string()),
                }
            }
            // Comments (`:`), `event:`, `id:` and `retry:` carry nothing we use.
        }
        events
    }

    /// The body ended: an event still open (no blank line after it) counts, as
    /// several servers omit the last blank line.
    pub fn finish(&mut self) -> Option<String> {
        if !self.line.is_empty() {
            self.push(b"\n");
        }
        self.data.take()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_survive_any_split() {
        let body =
            b"data: {\"a\":1}\n\n: keep-alive\n\ndata:{\"b\":\"\xc3\xa9\"}\r\n\r\ndata: [DONE]\n\n";
        for split in 1..body.len() {
            let mut p = SseParser::new();
            let mut got = p.push(&body[..split]);
            got.extend(p.push(&body[split..]));
            got.extend(p.finish());
            assert_eq!(
                got,
                ["{\"a\":1}", "{\"b\":\"é\"}", "[DONE]"],
                "split at {split}"
            );
        }
    }

    #[test]
    fn multi_line_data_and_missing_last_blank_line() {
        let mut p = SseParser::new();
        assert!(p.push(b"event: x\ndata: one\ndata: two\n").is_empty());
        assert_eq!(p.push(b"\ndata: last"), ["one\ntwo"]);
        assert_eq!(p.finish().as_deref(), Some("last"));
    }
}
