//! Ogg pages of Opus at 24 kHz mono, as Kyutai's Rust code writes them: OpusHead and
//! OpusTags pages first (pre-skip 3840, input rate 48000, vendor "KyutaiMoshi"),
//! then one 960-sample (40 ms) packet per page, serial 42, the granule position
//! counted in 48 kHz samples as Ogg Opus requires (+1920 per page).
//!
//! The reader takes whole pages, one message at a time, strictly: capture pattern,
//! version, CRC, one logical stream, bounded page, packet and decoded sizes. It
//! accepts any Opus frame size, so the web client's 20 ms frames (up to two per page)
//! decode too.

use ogg::{PacketWriteEndInfo, PacketWriter};

pub const SAMPLE_RATE: u32 = 24_000;
/// Samples per Opus packet we write: 40 ms at 24 kHz (Kyutai's `OPUS_ENCODER_FRAME_SIZE`).
pub const FRAME: usize = 960;
/// The Ogg serial number Kyutai's encoder writes.
pub const SERIAL: u32 = 42;
/// OpusHead pre-skip (48 kHz samples), as Kyutai writes it.
pub const PRE_SKIP: u16 = 3840;
/// Largest Opus frame: 120 ms at 24 kHz.
const MAX_DECODED: usize = 2880;
/// Largest Opus packet we accept (RFC 6716 packets of 120 ms are well below this).
const MAX_PACKET: usize = 8 * 1024;

/// The OpusHead packet (RFC 7845 §5.1), mono, as Kyutai writes it.
pub fn opus_head() -> Vec<u8> {
    let mut h = b"OpusHead".to_vec();
    h.push(1); // version
    h.push(1); // channels
    h.extend_from_slice(&PRE_SKIP.to_le_bytes());
    h.extend_from_slice(&48_000u32.to_le_bytes()); // input rate
    h.extend_from_slice(&0i16.to_le_bytes()); // output gain
    h.push(0); // channel mapping family
    h
}

/// The OpusTags packet (RFC 7845 §5.2) with Kyutai's vendor string and no tags.
pub fn opus_tags() -> Vec<u8> {
    let vendor = b"KyutaiMoshi";
    let mut t = b"OpusTags".to_vec();
    t.extend_from_slice(&(vendor.len() as u32).to_le_bytes());
    t.extend_from_slice(vendor);
    t.extend_from_slice(&0u32.to_le_bytes());
    t
}

/// Encodes 24 kHz mono PCM into Ogg/Opus pages.
pub struct OggOpusWriter {
    pages: PacketWriter<'static, Vec<u8>>,
    encoder: opus::Encoder,
    pending: Vec<f32>,
    packet: Vec<u8>,
    /// 48 kHz samples written so far (the next page's granule before its packet).
    granule: u64,
    pub packets: u64,
}

impl OggOpusWriter {
    /// A writer whose first output holds the OpusHead and OpusTags pages.
    pub fn new() -> anyhow::Result<Self> {
        let encoder =
            opus::Encoder::new(SAMPLE_RATE, opus::Channels::Mono, opus::Application::Voip)
                .map_err(|e| anyhow::anyhow!("opus encoder: {e}"))?;
        let mut pages = PacketWriter::new(Vec::new());
        pages.write_packet(opus_head(), SERIAL, PacketWriteEndInfo::EndPage, 0)?;
        pages.write_packet(opus_tags(), SERIAL, PacketWriteEndInfo::EndPage, 0)?;
        Ok(Self {
            pages,
            encoder,
            pending: Vec::with_capacity(4 * FRAME),
            packet: vec![0; 4000],
            granule: 0,
            packets: 0,
        })
    }

    /// The encoder's look-ahead in 24 kHz samples: how far decoded audio lags.
    pub fn lookahead(&mut self) -> usize {
        self.encoder
            .get_lookahead()
            .map_or(0, |n| n.max(0) as usize)
    }

    /// Queue samples; every full 40 ms frame becomes one page.
    pub fn push(&mut self, pcm: &[f32]) -> anyhow::Result<()> {
        self.pending.extend_from_slice(pcm);
        let mut at = 0;
        while self.pending.len() - at >= FRAME {
            let n = self
                .encoder
                .encode_float(&self.pending[at..at + FRAME], &mut self.packet)
                .map_err(|e| anyhow::anyhow!("opus encode: {e}"))?;
            at += FRAME;
            self.granule += 2 * FRAME as u64;
            self.pages.write_packet(
                self.packet[..n].to_vec(),
                SERIAL,
                PacketWriteEndInfo::EndPage,
                self.granule,
            )?;
            self.packets += 1;
        }
        self.pending.drain(..at);
        Ok(())
    }

    /// The pages written since the last call (empty if none).
    pub fn take(&mut self) -> Vec<u8> {
        std::mem::take(self.pages.inner_mut())
    }
}

/// Why a message's Ogg/Opus did not decode.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OggError {
    #[error("not an Ogg page (no \"OggS\" capture pattern at byte {at})")]
    NotOgg { at: usize },
    #[error("truncated Ogg page: {have} of {need} bytes")]
    Truncated { need: usize, have: usize },
    #[error("Ogg page version {0} (only 0 exists)")]
    Version(u8),
    #[error("Ogg page with unknown header flags {0:#04x}")]
    Flags(u8),
    #[error("Ogg page {seq}: CRC mismatch (the page is corrupt)")]
    Crc { seq: u32 },
    #[error("Ogg page of {len} bytes exceeds the limit of {max}")]
    PageTooLarge { len: usize, max: usize },
    #[error("Ogg page of stream {got}, but this stream is {expected} (one stream only)")]
    Serial { expected: u32, got: u32 },
    #[error("Ogg page continues a packet that never started")]
    Orphan,
    #[error("Opus packet of {0} bytes (at most {MAX_PACKET})")]
    PacketTooLarge(usize),
    #[error("empty Opus packet")]
    EmptyPacket,
    #[error("bad OpusHead: {0}")]
    Head(String),
    #[error("Opus packet {index} does not decode: {why}")]
    Decode { index: u64, why: String },
    #[error("one message decodes to more than {max} samples of audio")]
    TooMuchAudio { max: usize },
}

/// Bounds on what a peer's audio may cost us.
#[derive(Debug, Clone, Copy)]
pub struct ReaderLimits {
    pub max_page: usize,
    /// Decoded samples (24 kHz) one message may produce: bounds the CPU a tiny
    /// message of tiny packets can make us spend.
    pub max_samples_per_message: usize,
}

impl Default for ReaderLimits {
    fn default() -> Self {
        Self {
            max_page: 32 * 1024,
            max_samples_per_message: 2 * SAMPLE_RATE as usize,
        }
    }
}

/// Decodes whole Ogg pages of Opus to 24 kHz mono PCM.
pub struct OggOpusReader {
    decoder: opus::Decoder,
    limits: ReaderLimits,
    serial: Option<u32>,
    partial: Option<Vec<u8>>,
    decoded: Vec<f32>,
    pub pages: u64,
    pub packets: u64,
    pub head_seen: bool,
}

impl OggOpusReader {
    pub fn new(limits: ReaderLimits) -> anyhow::Result<Self> {
        Ok(Self {
            decoder: opus::Decoder::new(SAMPLE_RATE, opus::Channels::Mono)
                .map_err(|e| anyhow::anyhow!("opus decoder: {e}"))?,
            limits,
            serial: None,
            partial: None,
            decoded: vec![0.0; MAX_DECODED],
            pages: 0,
            packets: 0,
            head_seen: false,
        })
    }

    /// Decode every page in `bytes` (one message: whole pages only), appending PCM
    /// to `out`. Returns the samples appended. On error, `out` may hold part of it.
    pub fn feed(&mut self, bytes: &[u8], out: &mut Vec<f32>) -> Result<usize, OggError> {
        let start = out.len();
        let mut at = 0;
        while at < bytes.len() {
            let page = parse_page(&bytes[at..], at, self.limits.max_page)?;
            at += page.len;
            self.page(&page, out)?;
            if out.len() - start > self.limits.max_samples_per_message {
                return Err(OggError::TooMuchAudio {
                    max: self.limits.max_samples_per_message,
                });
            }
        }
        Ok(out.len() - start)
    }

    fn page(&mut self, page: &Page<'_>, out: &mut Vec<f32>) -> Result<(), OggError> {
        match self.serial {
            None => self.serial = Some(page.serial),
            Some(s) if s != page.serial => {
                return Err(OggError::Serial {
                    expected: s,
                    got: page.serial,
                })
            }
            _ => {}
        }
        self.pages += 1;
        if page.continued && self.partial.is_none() {
            return Err(OggError::Orphan);
        }
        if !page.continued {
            // A packet left open by the last page was not continued: it ended there.
            if let Some(p) = self.partial.take() {
                self.packet(&p, out)?;
            }
        }
        let mut body = page.body;
        let mut current = self.partial.take().unwrap_or_default();
        for &lace in page.lacing {
            let (seg, rest) = body.split_at(lace as usize);
            body = rest;
            current.extend_from_slice(seg);
            if current.len() > MAX_PACKET {
                return Err(OggError::PacketTooLarge(current.len()));
            }
            if lace < 255 {
                self.packet(&current, out)?;
                current.clear();
            }
        }
        if page.lacing.last() == Some(&255) {
            self.partial = Some(current);
        }
        Ok(())
    }

    fn packet(&mut self, p: &[u8], out: &mut Vec<f32>) -> Result<(), OggError> {
        if p.starts_with(b"OpusHead") {
            if p.len() < 19 || p[8] != 1 || !(1..=2).contains(&p[9]) {
                return Err(OggError::Head(format!(
                    "{} bytes, version {}, {} channels",
                    p.len(),
                    p.get(8).copied().unwrap_or(0),
                    p.get(9).copied().unwrap_or(0)
                )));
            }
            self.head_seen = true;
            return Ok(());
        }
        if p.starts_with(b"OpusTags") {
            return Ok(());
        }
        if p.is_empty() {
            return Err(OggError::EmptyPacket);
        }
        let index = self.packets;
        self.packets += 1;
        let n = self
            .decoder
            .decode_float(p, &mut self.decoded, false)
            .map_err(|e| OggError::Decode {
                index,
                why: e.description().to_string(),
            })?;
        out.extend_from_slice(&self.decoded[..n]);
        Ok(())
    }
}

/// One parsed Ogg page, borrowed from the message.
struct Page<'a> {
    len: usize,
    continued: bool,
    serial: u32,
    lacing: &'a [u8],
    body: &'a [u8],
}

const HEADER: usize = 27;

fn parse_page(b: &[u8], offset: usize, max_page: usize) -> Result<Page<'_>, OggError> {
    if b.len() >= 4 && &b[..4] != b"OggS" || b.len() < 4 && !b"OggS".starts_with(b) {
        return Err(OggError::NotOgg { at: offset });
    }
    if b.len() < HEADER {
        return Err(OggError::Truncated {
            need: HEADER,
            have: b.len(),
        });
    }
    if b[4] != 0 {
        return Err(OggError::Version(b[4]));
    }
    let flags = b[5];
    if flags & !0x07 != 0 {
        return Err(OggError::Flags(flags));
    }
    let serial = u32::from_le_bytes(b[14..18].try_into().expect("4 bytes"));
    let seq = u32::from_le_bytes(b[18..22].try_into().expect("4 bytes"));
    let crc = u32::from_le_bytes(b[22..26].try_into().expect("4 bytes"));
    let nseg = b[26] as usize;
    let head_len = HEADER + nseg;
    if b.len() < head_len {
        return Err(OggError::Truncated {
            need: head_len,
            have: b.len(),
        });
    }
    let lacing = &b[HEADER..head_len];
    let len = head_len + lacing.iter().map(|&l| l as usize).sum::<usize>();
    if len > max_page {
        return Err(OggError::PageTooLarge { len, max: max_page });
    }
    if b.len() < len {
        return Err(OggError::Truncated {
            need: len,
            have: b.len(),
        });
    }
    let mut c = crc_update(0, &b[..22]);
    c = crc_update(c, &[0; 4]);
    c = crc_update(c, &b[26..len]);
    if c != crc {
        return Err(OggError::Crc { seq });
    }
    Ok(Page {
        len,
        continued: flags & 1 != 0,
        serial,
        lacing,
        body: &b[head_len..len],
    })
}

/// Ogg's CRC-32 (polynomial 0x04c11db7, no reflection, initial 0).
const CRC_TABLE: [u32; 256] = {
    let mut t = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut r = (i as u32) << 24;
        let mut j = 0;
        while j < 8 {
            r = if r & 0x8000_0000 != 0 {
                (r << 1) ^ 0x04c1_1db7
            } else {
                r << 1
            };
            j += 1;
        }
        t[i] = r;
        i += 1;
    }
    t
};

fn crc_update(mut crc: u32, bytes: &[u8]) -> u32 {
    for &b in bytes {
        crc = (crc << 8) ^ CRC_TABLE[((crc >> 24) as u8 ^ b) as usize];
    }
    crc
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The speech fixture (espeak-ng, 24 kHz mono, 6.1 s).
    pub(crate) fn hello() -> Vec<f32> {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/audio/hello_24k_mono.wav");
        crate::audio::wav::read_wav(&path).unwrap().samples
    }

    fn speechlike(n: usize) -> Vec<f32> {
        hello().into_iter().cycle().take(n).collect()
    }

    /// SNR in dB of `got` against `want` shifted by the best lag in 0..max_lag.
    pub(crate) fn snr_db(want: &[f32], got: &[f32], max_lag: usize) -> (f64, usize) {
        let mut best = (f64::MIN, 0);
        for lag in 0..max_lag {
            let n = want.len().min(got.len().saturating_sub(lag));
            let (mut s, mut e) = (0f64, 0f64);
            for i in 0..n {
                let (w, g) = (want[i] as f64, got[i + lag] as f64);
                s += w * w;
                e += (w - g) * (w - g);
            }
            let snr = 10.0 * (s / e.max(1e-20)).log10();
            if snr > best.0 {
                best = (snr, lag);
            }
        }
        best
    }

    #[test]
    fn writer_pages_are_kyutais() {
        let mut w = OggOpusWriter::new().unwrap();
        let heads = w.take();
        // Two header pages, granule 0, BOS on the first, serial 42.
        let p1 = parse_page(&heads, 0, 65_307).unwrap();
        assert_eq!(p1.body, opus_head().as_slice());
        assert_eq!(heads[5], 0x02, "first page has BOS");
        assert_eq!(&heads[6..14], &[0; 8]);
        assert_eq!(&heads[14..18], &42u32.to_le_bytes());
        let p2 = parse_page(&heads[p1.len..], 0, 65_307).unwrap();
        assert_eq!(p2.body, opus_tags().as_slice());
        assert_eq!(p1.len + p2.len, heads.len());
        assert_eq!(&opus_head()[10..12], &3840u16.to_le_bytes());

        // 80 ms of audio: two pages of one 40 ms packet each, granule +1920 per page.
        w.push(&speechlike(1920)).unwrap();
        let pages = w.take();
        let a = parse_page(&pages, 0, 65_307).unwrap();
        let b = parse_page(&pages[a.len..], 0, 65_307).unwrap();
        assert_eq!(a.len + b.len, pages.len());
        assert_eq!(a.lacing.iter().filter(|&&l| l < 255).count(), 1);
        let granule = |off: usize| i64::from_le_bytes(pages[off + 6..off + 14].try_into().unwrap());
        assert_eq!((granule(0), granule(a.len)), (1920, 3840));
        // Half a frame waits for the rest.
        w.push(&[0.0; 500]).unwrap();
        assert!(w.take().is_empty());
        w.push(&[0.0; 460]).unwrap();
        assert!(!w.take().is_empty());
    }

    #[test]
    fn our_pages_read_back_with_the_ogg_crate() {
        let mut w = OggOpusWriter::new().unwrap();
        w.push(&speechlike(9600)).unwrap();
        let bytes = w.take();
        let mut r = ogg::PacketReader::new(std::io::Cursor::new(bytes));
        let mut n = 0;
        while let Some(p) = r.read_packet().unwrap() {
            assert_eq!(p.stream_serial(), 42);
            n += 1;
        }
        assert_eq!(n, 2 + 10);
    }

    #[test]
    fn round_trip_snr() {
        let input = hello();
        let mut w = OggOpusWriter::new().unwrap();
        let look = w.lookahead();
        let mut r = OggOpusReader::new(ReaderLimits::default()).unwrap();
        let mut out = Vec::new();
        // One message per 80 ms step, as the servers send it.
        for chunk in input.chunks(1920) {
            w.push(chunk).unwrap();
            r.feed(&w.take(), &mut out).unwrap();
        }
        assert_eq!(
            out.len(),
            input.len() / FRAME * FRAME,
            "a partial frame waits"
        );
        assert!(r.head_seen);
        // Opus in VoIP mode keeps the spectrum, not the waveform: about 10 dB of
        // waveform SNR on speech at its default 27 kb/s, and more on a steady tone.
        let (snr, lag) = snr_db(&input[..input.len() - 2000], &out, 600);
        eprintln!("opus 40 ms round trip, speech: SNR {snr:.1} dB at lag {lag} (encoder look-ahead {look})");
        assert!(lag.abs_diff(look) <= 2, "lag {lag}, look-ahead {look}");
        assert!(snr > 8.0, "SNR {snr:.1} dB");
        let tone: Vec<f32> = (0..72_000)
            .map(|i| 0.5 * (2.0 * std::f32::consts::PI * 440.0 * i as f32 / 24_000.0).sin())
            .collect();
        let mut w = OggOpusWriter::new().unwrap();
        let mut r = OggOpusReader::new(ReaderLimits::default()).unwrap();
        let mut out = Vec::new();
        for chunk in tone.chunks(1920) {
            w.push(chunk).unwrap();
            r.feed(&w.take(), &mut out).unwrap();
        }
        let (snr, _) = snr_db(&tone[..60_000], &out, 600);
        eprintln!("opus 40 ms round trip, 440 Hz tone: SNR {snr:.1} dB");
        assert!(snr > 20.0, "SNR {snr:.1} dB");
    }

    /// The web client's form: 20 ms frames, two packets per page, its own serial.
    #[test]
    fn reads_web_client_pages() {
        let input = speechlike(24_000);
        let mut enc =
            opus::Encoder::new(SAMPLE_RATE, opus::Channels::Mono, opus::Application::Voip).unwrap();
        let mut pw = PacketWriter::new(Vec::new());
        pw.write_packet(opus_head(), 7, PacketWriteEndInfo::EndPage, 0)
            .unwrap();
        pw.write_packet(opus_tags(), 7, PacketWriteEndInfo::EndPage, 0)
            .unwrap();
        for (i, frame) in input.chunks(480).enumerate() {
            let p = enc.encode_vec_float(frame, 4000).unwrap();
            let end = if i % 2 == 1 {
                PacketWriteEndInfo::EndPage
            } else {
                PacketWriteEndInfo::NormalPacket
            };
            pw.write_packet(p, 7, end, (i as u64 + 1) * 960).unwrap();
        }
        let bytes = pw.into_inner();
        let mut r = OggOpusReader::new(ReaderLimits::default()).unwrap();
        let mut out = Vec::new();
        r.feed(&bytes, &mut out).unwrap();
        assert_eq!(out.len(), 24_000);
        assert_eq!((r.pages, r.packets), (2 + 25, 50));
        let (snr, _) = snr_db(&input[..20_000], &out, 600);
        eprintln!("opus 20 ms round trip (web client framing), speech: SNR {snr:.1} dB");
        assert!(snr > 8.0, "SNR {snr:.1} dB");
    }

    #[test]
    fn bad_pages_give_named_errors() {
        let mut w = OggOpusWriter::new().unwrap();
        w.take();
        w.push(&speechlike(960)).unwrap();
        let page = w.take();
        let reader = || OggOpusReader::new(ReaderLimits::default()).unwrap();
        let mut out = Vec::new();
        assert!(reader().feed(&page, &mut out).is_ok());
        for cut in [3, 10, 27, page.len() - 1] {
            let e = reader().feed(&page[..cut], &mut out).unwrap_err();
            assert!(matches!(e, OggError::Truncated { .. }), "cut at {cut}: {e}");
        }
        let e = reader().feed(b"RIFF....WAVEfmt ", &mut out).unwrap_err();
        assert_eq!(e, OggError::NotOgg { at: 0 });
        let mut bad = page.clone();
        let last = bad.len() - 1;
        bad[last] ^= 0x55;
        assert!(matches!(
            reader().feed(&bad, &mut out),
            Err(OggError::Crc { .. })
        ));
        // A valid page whose packet is not Opus (a TOC byte for a code-3 packet with 0 frames).
        let mut pw = PacketWriter::new(Vec::new());
        pw.write_packet(vec![0x03, 0x00], 42, PacketWriteEndInfo::EndPage, 0)
            .unwrap();
        let e = reader().feed(&pw.into_inner(), &mut out).unwrap_err();
        assert!(matches!(e, OggError::Decode { index: 0, .. }), "{e}");
        // Another stream's page in the middle.
        let mut r = reader();
        r.feed(&page, &mut out).unwrap();
        let mut pw = PacketWriter::new(Vec::new());
        pw.write_packet(vec![0xf8, 0xff, 0xfe], 9, PacketWriteEndInfo::EndPage, 0)
            .unwrap();
        assert!(matches!(
            r.feed(&pw.into_inner(), &mut out),
            Err(OggError::Serial {
                expected: 42,
                got: 9
            })
        ));
        // A page over the limit.
        let mut r = OggOpusReader::new(ReaderLimits {
            max_page: 40,
            ..Default::default()
        })
        .unwrap();
        assert!(matches!(
            r.feed(&page, &mut out),
            Err(OggError::PageTooLarge { .. })
        ));
    }

    #[test]
    fn tiny_packets_cannot_make_unbounded_audio() {
        // 1-byte packets (a 20 ms TOC with no data) cost little to send and decode to
        // 480 samples each: bounded per message.
        let mut pw = PacketWriter::new(Vec::new());
        for i in 0..200 {
            pw.write_packet(vec![0x08], 42, PacketWriteEndInfo::EndPage, i)
                .unwrap();
        }
        let mut r = OggOpusReader::new(ReaderLimits::default()).unwrap();
        let mut out = Vec::new();
        assert_eq!(
            r.feed(&pw.into_inner(), &mut out),
            Err(OggError::TooMuchAudio { max: 48_000 })
        );
    }

    /// The cost of the codec per 80 ms step (two 40 ms packets each way), printed.
    #[test]
    fn codec_cost_per_frame() {
        let input = hello();
        let steps = input.len() / 1920;
        let mut w = OggOpusWriter::new().unwrap();
        let mut r = OggOpusReader::new(ReaderLimits::default()).unwrap();
        let mut out = Vec::new();
        let (mut enc, mut dec) = (std::time::Duration::ZERO, std::time::Duration::ZERO);
        let mut bytes = 0;
        for chunk in input.chunks_exact(1920) {
            let t = std::time::Instant::now();
            w.push(chunk).unwrap();
            let pages = w.take();
            enc += t.elapsed();
            bytes += pages.len();
            let t = std::time::Instant::now();
            r.feed(&pages, &mut out).unwrap();
            dec += t.elapsed();
        }
        let per = |d: std::time::Duration| d.as_secs_f64() * 1000.0 / steps as f64;
        eprintln!(
            "Ogg/Opus per 80 ms frame: encode {:.3} ms, decode {:.3} ms; {:.1} kb/s with Ogg framing",
            per(enc),
            per(dec),
            bytes as f64 * 8.0 / (steps as f64 * 0.08) / 1000.0
        );
        // A real-time budget: far below the 80 ms a frame lasts.
        assert!(per(enc) + per(dec) < 20.0);
    }

    /// Random and mutated pages: errors, never a panic.
    #[test]
    fn mutated_pages_never_panic() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(42);
        let mut w = OggOpusWriter::new().unwrap();
        w.push(&speechlike(3840)).unwrap();
        let good = w.take();
        let mut errors = 0;
        for _ in 0..3000 {
            let mut m = good.clone();
            for _ in 0..rng.random_range(1..6) {
                let j = rng.random_range(0..m.len());
                match rng.random_range(0..3) {
                    0 => m[j] = rng.random(),
                    1 => m.truncate(j),
                    _ => m.insert(j, rng.random()),
                }
                if m.is_empty() {
                    break;
                }
            }
            let mut r = OggOpusReader::new(ReaderLimits::default()).unwrap();
            let mut out = Vec::new();
            if r.feed(&m, &mut out).is_err() {
                errors += 1;
            }
            assert!(out.len() <= 48_000 + MAX_DECODED);
        }
        assert!(errors > 2500, "{errors}");
    }
}
