//! Looking at the screen: a screenshot as a PNG, for an LLM that takes images. Under
//! Wayland through the desktop portal (org.freedesktop.portal.Screenshot, which GNOME,
//! KDE and wlroots desktops serve), else `grim` (wlroots compositors); under X11 through
//! `xwd` (x11-apps), whose dump is read here. Wayland comes first: under XWayland both
//! variables are set, and `xwd` would see only the X clients. When every way fails, the
//! error says why for each, and what to install.

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// A screenshot.
#[derive(Debug, Clone, PartialEq)]
pub struct Shot {
    pub png: Vec<u8>,
    pub width: u32,
    pub height: u32,
    /// How it was taken: "the desktop portal", "grim" or "xwd".
    pub via: &'static str,
}

/// The largest dump read (a 4K screen at 32 bits is 32 MiB).
const MAX_DUMP: usize = 64 << 20;

/// What a later way is given when an earlier one used up the time (a portal that never
/// answers must not leave grim or xwd no time at all).
const MIN_TRY: Duration = Duration::from_secs(2);

/// How long the desktop portal may take to answer the call that asks for a screenshot
/// (not the screenshot itself).
const CALL_TIMEOUT: Duration = Duration::from_secs(5);

/// Take a screenshot of the display the environment names: under Wayland
/// (`WAYLAND_DISPLAY`) the desktop portal, then grim; then X11 (`DISPLAY`).
pub fn capture(
    display: Option<&str>,
    wayland: Option<&str>,
    timeout: Duration,
) -> Result<Shot, String> {
    let deadline = Instant::now() + timeout;
    let left = || {
        deadline
            .saturating_duration_since(Instant::now())
            .max(MIN_TRY)
    };
    let mut failed = Vec::new();
    if let Some(w) = wayland.filter(|w| !w.is_empty()) {
        match portal(left()).and_then(|png| from_png(png, "the desktop portal")) {
            Ok(shot) => return Ok(shot),
            Err(e) => failed.push(format!(
                "under Wayland ({w}) the desktop portal: {e} (install xdg-desktop-portal and \
                 your desktop's backend: xdg-desktop-portal-gnome or -kde; for wlroots \
                 compositors, -wlr with -gtk, without which the portal offers no \
                 screenshots)"
            )),
        }
        match run(Command::new("grim").arg("-"), left()).and_then(|png| from_png(png, "grim")) {
            Ok(shot) => return Ok(shot),
            Err(e) => failed.push(format!(
                "grim: {e} (install grim, which wlroots compositors such as sway serve)"
            )),
        }
    }
    if let Some(d) = display.filter(|d| !d.is_empty()) {
        let shot = run(
            Command::new("xwd").args(["-root", "-silent", "-display", d]),
            left(),
        )
        .and_then(|dump| {
            let (width, height, rgb) = parse_xwd(&dump)?;
            Ok(Shot {
                png: encode_png(width, height, &rgb)?,
                width,
                height,
                via: "xwd",
            })
        });
        match shot {
            Ok(shot) => return Ok(shot),
            Err(e) => failed.push(format!(
                "on X display {d} xwd: {e} (install x11-apps for xwd)"
            )),
        }
    }
    if failed.is_empty() {
        return Err(
            "there is no display to look at (neither DISPLAY nor WAYLAND_DISPLAY is set)".into(),
        );
    }
    Err(format!("cannot take a screenshot: {}", failed.join("; ")))
}

fn from_png(png: Vec<u8>, via: &'static str) -> Result<Shot, String> {
    let (width, height) = png_size(&png)?;
    Ok(Shot {
        png,
        width,
        height,
        via,
    })
}

/// Wayland without Linux's desktop portal (a BSD): grim and X11 remain.
#[cfg(not(target_os = "linux"))]
fn portal(_timeout: Duration) -> Result<Vec<u8>, String> {
    Err("the desktop portal is served on Linux only".into())
}

/// A screenshot through the desktop portal, without a dialog (`interactive: false`),
/// read from the file it names. The portal may keep that file (GNOME saves it in the
/// user's pictures): it is the desktop's, so it is left alone.
#[cfg(target_os = "linux")]
fn portal(timeout: Duration) -> Result<Vec<u8>, String> {
    use dbus::arg::{PropMap, RefArg, Variant};
    use dbus::message::MatchRule;
    use std::sync::{Arc, Mutex};
    let deadline = Instant::now() + timeout;
    let bus = dbus::blocking::Connection::new_session()
        .map_err(|e| format!("no D-Bus session bus: {e}"))?;
    // The answer comes as a Response signal on the request's object: listen before
    // asking, so that a quick answer is not missed.
    // Each Response seen: the request's object, its code (0: done), the file's URI.
    type Answer = (String, u32, Option<String>);
    let answers: Arc<Mutex<Vec<Answer>>> = Arc::default();
    let seen = answers.clone();
    bus.add_match(
        MatchRule::new_signal("org.freedesktop.portal.Request", "Response"),
        move |(code, results): (u32, PropMap), _: &dbus::blocking::Connection, msg| {
            let uri = results
                .get("uri")
                .and_then(|v| v.0.as_str())
                .map(str::to_string);
            let path = msg.path().map(|p| p.to_string()).unwrap_or_default();
            seen.lock().unwrap().push((path, code, uri));
            true
        },
    )
    .map_err(|e| e.to_string())?;
    // A token of its own per call: it names the request's object.
    static CALLS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let mut options = PropMap::new();
    options.insert("interactive".into(), Variant(Box::new(false)));
    let token = format!("assistant{}_{n}", std::process::id());
    options.insert("handle_token".into(), Variant(Box::new(token)));
    // The answer to the call itself (the request's object) is immediate; a dialog, if
    // any, comes before the Response. A portal that is busy starting (seen for 10-20 s
    // with xdg-desktop-portal 1.16 just started by D-Bus, about one start in four) is
    // not waited for: grim is tried next.
    let call_timeout = deadline
        .saturating_duration_since(Instant::now())
        .min(CALL_TIMEOUT);
    let (handle,): (dbus::Path,) = bus
        .with_proxy(
            "org.freedesktop.portal.Desktop",
            "/org/freedesktop/portal/desktop",
            call_timeout,
        )
        .method_call(
            "org.freedesktop.portal.Screenshot",
            "Screenshot",
            ("", options),
        )
        .map_err(|e| e.message().unwrap_or(&e.to_string()).to_string())?;
    let handle = handle.to_string();
    let uri = loop {
        let answer = answers
            .lock()
            .unwrap()
            .iter()
            .find(|a| a.0 == handle)
            .cloned();
        match answer {
            Some((_, 0, Some(uri))) => break uri,
            Some((_, 0, None)) => return Err("it answered without a file".into()),
            Some((_, 1, _)) => return Err("the user cancelled it".into()),
            Some((_, code, _)) => return Err(format!("it failed (response {code})")),
            None => {}
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err("it did not answer in time".into());
        }
        bus.process(left.min(Duration::from_millis(200)))
            .map_err(|e| e.to_string())?;
    };
    let path = url::Url::parse(&uri)
        .ok()
        .and_then(|u| u.to_file_path().ok())
        .ok_or_else(|| format!("it gave {uri}, not a local file"))?;
    let mut png = Vec::new();
    std::fs::File::open(&path)
        .and_then(|f| f.take(MAX_DUMP as u64).read_to_end(&mut png))
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    Ok(png)
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
