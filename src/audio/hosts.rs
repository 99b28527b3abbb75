//! One cpal host of each kind per process.
//!
//! cpal opens a new server connection for every host it makes, and its PulseAudio
//! host never closes one: the client's reactor thread blocks in `poll` after the host
//! is dropped, holding the socket. PulseAudio refuses a client's 65th connection by
//! closing it, which cpal reports as "IO error: failed to fill whole buffer", and
//! `cpal::default_host()` then quietly falls back to ALSA. A device retried every 3 s
//! got there in minutes. So hosts are made once and shared; a host whose server went
//! away (its device list fails) is dropped, and the next use connects again. ALSA's
//! host holds no connection and is made afresh.
//!
//! PulseAudio also kicks a client whose cookie is not 256 bytes, with the same message
//! (see [`pulse_cookie`]).

use cpal::traits::HostTrait;
use cpal::HostId;
use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::sync::Mutex;

static HOSTS: Mutex<Option<HashMap<HostId, cpal::Host>>> = Mutex::new(None);

/// Run `f` on the shared host `id`, making it on first use.
pub fn with_host<T>(id: HostId, f: impl FnOnce(&cpal::Host) -> T) -> Result<T, cpal::Error> {
    if !shared(id) {
        return Ok(f(&connect(id)?));
    }
    let mut hosts = HOSTS.lock().unwrap_or_else(|p| p.into_inner());
    let hosts = hosts.get_or_insert_with(HashMap::new);
    let host = match hosts.entry(id) {
        Entry::Occupied(e) => e.into_mut(),
        Entry::Vacant(e) => e.insert(connect(id)?),
    };
    Ok(f(host))
}

/// A sound server that is busy can take longer than cpal's two seconds to answer a new
/// client: try again for about four seconds, waiting longer each time, before calling
/// it unavailable.
fn connect(id: HostId) -> Result<cpal::Host, cpal::Error> {
    #[cfg(target_os = "linux")]
    let cookie = if id == HostId::PulseAudio {
        pulse_cookie()
    } else {
        Ok(())
    };
    let mut tries = 0u64;
    loop {
        match cpal::host_from_id(id) {
            Ok(h) => return Ok(h),
            #[cfg(target_os = "linux")]
            Err(e) if cookie.is_err() => {
                let why = cookie.err().unwrap_or_default();
                return Err(cpal::Error::with_message(e.kind(), format!("{e}; {why}")));
            }
            Err(e) if tries < 6 => {
                tries += 1;
                tracing::info!("{}: {e}; trying again (try {tries})", id.name());
                std::thread::sleep(std::time::Duration::from_millis(150 * tries));
            }
            Err(e) => return Err(e),
        }
    }
}

/// The `pulseaudio` crate that cpal speaks through sends the cookie it finds
/// (`$PULSE_COOKIE`, `~/.config/pulse/cookie`, `~/.pulse-cookie`), or an empty one when
/// there is none. PulseAudio takes 256 bytes only: it kicks the client ("protocol
/// error"), and cpal says "IO error: failed to fill whole buffer", at any load, even
/// from a server that lets anonymous clients in (WSLg's, a container's shared socket, a
/// HOME where no PulseAudio program ran yet). libpulse makes `~/.config/pulse/cookie`
/// (256 random bytes, the owner's only) when there is none: so do we. `Err` says why a
/// kicked connection may be the cookie's fault.
#[cfg(target_os = "linux")]
fn pulse_cookie() -> Result<(), String> {
    use std::io::Write;
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    if pulseaudio::socket_path_from_env().is_none() {
        return Ok(());
    }
    if let Some(path) = pulseaudio::cookie_path_from_env() {
        return match std::fs::metadata(&path) {
            Ok(m) if m.len() == 256 => Ok(()),
            Ok(m) => Err(format!(
                "PulseAudio's cookie {} has {} bytes, not 256",
                path.display(),
                m.len()
            )),
            Err(e) => Err(format!("PulseAudio's cookie {}: {e}", path.display())),
        };
    }
    let Some(home) = directories::BaseDirs::new().map(|d| d.home_dir().to_path_buf()) else {
        return Err("no PulseAudio cookie, and no home folder to make one in".into());
    };
    let path = home.join(".config/pulse/cookie");
    let made = path
        .parent()
        .map_or(Ok(()), |dir| {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
        })
        .and_then(|()| {
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&path)?;
            f.write_all(&rand::random::<[u8; 256]>())
        });
    match made {
        Ok(()) => {
            tracing::info!("made a PulseAudio cookie at {}", path.display());
            Ok(())
        }
        // Another program made it meanwhile.
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(format!(
            "no PulseAudio cookie, and making {} failed: {e}",
            path.display()
        )),
    }
}

/// Sound servers are shared. ALSA is made afresh each time, as before: it holds no
/// connection, and a new host reads ALSA's configuration again (a changed ~/.asoundrc).
fn shared(id: HostId) -> bool {
    #[cfg(target_os = "linux")]
    return id != HostId::Alsa;
    #[cfg(not(target_os = "linux"))]
    return true;
}

/// Forget host `id` (its server went away): the next use connects again.
pub fn forget(id: HostId) {
    if let Some(hosts) = HOSTS.lock().unwrap_or_else(|p| p.into_inner()).as_mut() {
        hosts.remove(&id);
    }
}

/// The host `cpal::default_host()` would pick: on Linux a sound server that answers
/// (PipeWire, PulseAudio) before ALSA; elsewhere the platform's first.
pub fn default_host_id() -> HostId {
    let available = cpal::available_hosts();
    #[cfg(target_os = "linux")]
    {
        available
            .into_iter()
            .filter(|id| *id != HostId::Alsa)
            .find(|id| with_host(*id, |_| ()).is_ok())
            .unwrap_or(HostId::Alsa)
    }
    #[cfg(not(target_os = "linux"))]
    available
        .first()
        .copied()
        .unwrap_or_else(|| cpal::default_host().id())
}

/// Every device of one direction on host `id`. A host whose server went away (the
/// list fails) connects again once.
pub fn devices(id: HostId, input: bool) -> Vec<cpal::Device> {
    list_devices(id, input).unwrap_or_else(|| list_devices(id, input).unwrap_or_default())
}

/// `None` when the list failed (and the host was dropped).
fn list_devices(id: HostId, input: bool) -> Option<Vec<cpal::Device>> {
    let listed = with_host(id, |h| {
        let devs = if input {
            h.input_devices()
        } else {
            h.output_devices()
        };
        devs.map(|d| d.collect::<Vec<_>>())
    });
    match listed {
        Ok(Ok(devs)) => Some(devs),
        Ok(Err(e)) => {
            tracing::warn!("{} devices: {e}; connecting again", id.name());
            forget(id);
            None
        }
        Err(_) => Some(Vec::new()),
    }
}
