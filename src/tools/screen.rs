//! Looking at the screen: a screenshot as a PNG, for an LLM that takes images. Under
//! X11 through `xwd` (x11-apps), whose dump is read here; under Wayland through `grim`
//! where it is installed. Anything else is an error that says why and what to install.

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// A screenshot.
#[derive(Debug, Clone, PartialEq)]
pub struct Shot {
    pub png: Vec<u8>,
    pub width: u32,
    pub height: u32,
    /// How it was taken: "xwd" or "grim".
    pub via: &'static str,
}

/// The largest dump read (a 4K screen at 32 bits is 32 MiB).
const MAX_DUMP: usize = 64 << 20;

/// Take a screenshot of the display the environment names (`DISPLAY`, else
/// `WAYLAND_DISPLAY`).
pub fn capture(
    display: Option<&str>,
    wayland: Option<&str>,
    timeout: Duration,
) -> Result<Shot, String> {
    if let Some(d) = display.filter(|d| !d.is_empty()) {
        let dump = run(
            Command::new("xwd").args(["-root", "-silent", "-display", d]),
            timeout,
        )
        .map_err(|e| {
            format!("cannot take a screenshot of X display {d}: {e} (install x11-apps for xwd)")
        })?;
        let (width, height, rgb) = parse_xwd(&dump)?;
        return Ok(Shot {
            png: encode_png(width, height, &rgb)?,
            width,
            height,
            via: "xwd",
        });
    }
    if wayland.is_some_and(|w| !w.is_empty()) {
        let png = run(Command::new("grim").arg("-"), timeout).map_err(|e| {
            format!(
                "cannot take a screenshot under Wayland: grim: {e} (install grim, which \
                 wlroots compositors such as sway serve; the desktop portal that GNOME and \
                 KDE need is not supported yet)"
            )
        })?;
        let (width, height) = png_size(&png)?;
        return Ok(Shot {
            png,
            width,
            height,
            via: "grim",
        });
    }
    Err("there is no display to look at (neither DISPLAY nor WAYLAND_DISPLAY is set)".into())
}

/// Run `cmd`, its stdout read to its end, within `timeout`.
fn run(cmd: &mut Command, timeout: Duration) -> Result<Vec<u8>, String> {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| e.to_string())?;
    let mut out = child.stdout.take().expect("piped");
    let reader = std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = (&mut out).take(MAX_DUMP as u64).read_to_end(&mut buf);
        buf
    });
    let started = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().map_err(|e| e.to_string())? {
            break s;
        }
        if started.elapsed() > timeout {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!("no screenshot within {} s", timeout.as_secs_f64()));
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let buf = reader.join().unwrap_or_default();
    if !status.success() {
        let mut err = String::new();
        if let Some(mut e) = child.stderr.take() {
            let _ = e.read_to_string(&mut err);
        }
        return Err(format!("{status}: {}", super::shorten(&err, 200)));
    }
    Ok(buf)
}

/// An XWD dump (X11's window dump) of a TrueColor ZPixmap at 24 or 32 bits a pixel,
/// as RGB bytes.
fn parse_xwd(d: &[u8]) -> Result<(u32, u32, Vec<u8>), String> {
    let bad = |why: &str| format!("the screen dump is not a usable XWD: {why}");
    let field = |i: usize| -> Result<u32, String> {
        d.get(i * 4..i * 4 + 4)
            .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
            .ok_or_else(|| bad("its header is cut"))
    };
    let header_size = field(0)? as usize;
    if field(1)? != 7 {
        return Err(bad("not version 7"));
    }
    let format = field(2)?;
    let (width, height) = (field(4)?, field(5)?);
    let byte_order = field(7)?;
    let bpp = field(11)?;
    let bytes_per_line = field(12)? as usize;
    let visual_class = field(13)?;
    let (red_mask, green_mask, blue_mask) = (field(14)?, field(15)?, field(16)?);
    let ncolors = field(19)? as usize;
    if format != 2 || visual_class != 4 || !(bpp == 24 || bpp == 32) {
        return Err(bad(&format!(
            "format {format}, visual class {visual_class}, {bpp} bits a pixel (want a 24- or 32-bit TrueColor ZPixmap)"
        )));
    }
    let start = header_size + ncolors * 12;
    let need = start + bytes_per_line * height as usize;
    if d.len() < need || width == 0 || height == 0 {
        return Err(bad("its pixels are cut"));
    }
    let px = (bpp / 8) as usize;
    let shift = |m: u32| m.trailing_zeros();
    let mut rgb = Vec::with_capacity(width as usize * height as usize * 3);
    for y in 0..height as usize {
        let row = &d[start + y * bytes_per_line..];
        for x in 0..width as usize {
            let p = &row[x * px..x * px + px];
            let mut v = 0u32;
            if byte_order == 0 {
                for (i, b) in p.iter().enumerate() {
                    v |= (*b as u32) << (8 * i);
                }
            } else {
                for b in p {
                    v = (v << 8) | *b as u32;
                }
            }
            for m in [red_mask, green_mask, blue_mask] {
                rgb.push(((v & m) >> shift(m)) as u8);
            }
        }
    }
    Ok((width, height, rgb))
}

fn encode_png(width: u32, height: u32, rgb: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    let mut enc = png::Encoder::new(&mut out, width, height);
    enc.set_color(png::ColorType::Rgb);
    enc.set_depth(png::BitDepth::Eight);
    let mut w = enc.write_header().map_err(|e| e.to_string())?;
    w.write_image_data(rgb).map_err(|e| e.to_string())?;
    w.finish().map_err(|e| e.to_string())?;
    Ok(out)
}

fn png_size(png: &[u8]) -> Result<(u32, u32), String> {
    let d = png::Decoder::new(std::io::Cursor::new(png));
    let r = d
        .read_info()
        .map_err(|e| format!("the screenshot is not a PNG: {e}"))?;
    let i = r.info();
    Ok((i.width, i.height))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_display_says_why() {
        let e = capture(None, None, Duration::from_secs(1)).unwrap_err();
        assert!(e.contains("DISPLAY"), "{e}");
    }

    #[test]
    fn a_cut_dump_is_an_error_not_a_panic() {
        assert!(parse_xwd(&[0, 0, 0, 100, 0, 0, 0, 7]).is_err());
        assert!(parse_xwd(&[]).is_err());
    }
}
