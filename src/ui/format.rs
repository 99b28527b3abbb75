//! Human-readable numbers for the screen: sizes, rates, durations, timestamps.

use crate::bus::ProgressUnit;
use std::time::Duration;

/// `mm:ss` for the first hour, then `h:mm:ss`.
pub fn timestamp(t: Duration) -> String {
    let s = t.as_secs();
    if s < 3600 {
        format!("{:02}:{:02}", s / 60, s % 60)
    } else {
        format!("{}:{:02}:{:02}", s / 3600, (s / 60) % 60, s % 60)
    }
}

/// Bytes in the one unit (`bus::Bytes`): `812 B`, `3.4 MiB`, `1.50 GiB`.
pub fn bytes(n: u64) -> String {
    crate::bus::Bytes(n).to_string()
}

/// An amount in the unit of a load stage.
pub fn amount(n: u64, unit: ProgressUnit) -> String {
    match unit {
        ProgressUnit::Bytes => bytes(n),
        ProgressUnit::Tensors if n == 1 => "1 tensor".into(),
        ProgressUnit::Tensors => format!("{n} tensors"),
    }
}

/// A rate per second in the unit of a load stage.
pub fn rate(per_s: f64, unit: ProgressUnit) -> String {
    match unit {
        ProgressUnit::Bytes => format!("{}/s", bytes(per_s.max(0.0) as u64)),
        ProgressUnit::Tensors => format!("{per_s:.0} tensors/s"),
    }
}

/// A short duration for ETAs and turn lengths: `0.4 s`, `42 s`, `3 min 05 s`, `2 h 01 min`.
pub fn duration(secs: f64) -> String {
    if !secs.is_finite() || secs < 0.0 {
        return "?".into();
    }
    if secs < 10.0 {
        format!("{secs:.1} s")
    } else if secs < 60.0 {
        format!("{secs:.0} s")
    } else if secs < 3600.0 {
        let s = secs.round() as u64;
        format!("{} min {:02} s", s / 60, s % 60)
    } else {
        let m = (secs / 60.0).round() as u64;
        format!("{} h {:02} min", m / 60, m % 60)
    }
}

/// Milliseconds with a precision that suits their size.
pub fn millis(ms: f64) -> String {
    if ms < 10.0 {
        format!("{ms:.1} ms")
    } else {
        format!("{ms:.0} ms")
    }
}

/// Shortens `text` to `width` columns by cutting its start, marking the cut with `…`
/// (paths keep their informative end).
pub fn ellipsize_start(text: &str, width: usize) -> String {
    use unicode_width::UnicodeWidthStr;
    if text.width() <= width {
        return text.to_string();
    }
    if width == 0 {
        return String::new();
    }
    let mut kept: Vec<char> = Vec::new();
    let mut used = 1; // the ellipsis
    for c in text.chars().rev() {
        let w = unicode_width::UnicodeWidthChar::width(c).unwrap_or(0);
        if used + w > width {
            break;
        }
        used += w;
        kept.push(c);
    }
    std::iter::once('…').chain(kept.into_iter().rev()).collect()
}

/// Shortens `text` to `width` columns by cutting its end, marking the cut with `…`.
pub fn ellipsize_end(text: &str, width: usize) -> String {
    use unicode_width::UnicodeWidthStr;
    if text.width() <= width {
        return text.to_string();
    }
    if width == 0 {
        return String::new();
    }
    let mut out = String::new();
    let mut used = 1;
    for c in text.chars() {
        let w = unicode_width::UnicodeWidthChar::width(c).unwrap_or(0);
        if used + w > width {
            break;
        }
        used += w;
        out.push(c);
    }
    out.push('…');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readable_numbers() {
        assert_eq!(timestamp(Duration::from_secs(75)), "01:15");
        assert_eq!(timestamp(Duration::from_secs(3725)), "1:02:05");
        assert_eq!(bytes(812), "812 B");
        assert_eq!(bytes(3 * 1024 * 1024 + 400 * 1024), "3.4 MiB");
        assert_eq!(bytes(1536 * 1024 * 1024), "1.50 GiB");
        assert_eq!(duration(0.42), "0.4 s");
        assert_eq!(duration(185.0), "3 min 05 s");
        assert_eq!(millis(4.25), "4.2 ms");
        assert_eq!(millis(160.0), "160 ms");
        assert_eq!(amount(1, ProgressUnit::Tensors), "1 tensor");
        assert_eq!(amount(3, ProgressUnit::Tensors), "3 tensors");
    }

    #[test]
    fn ellipsis_keeps_the_end_of_paths() {
        assert_eq!(
            ellipsize_start("/home/me/.local/state/assistant.log", 16),
            "…e/assistant.log"
        );
        assert_eq!(ellipsize_start("short", 16), "short");
        assert_eq!(ellipsize_end("a long sentence", 7), "a long…");
    }
}
