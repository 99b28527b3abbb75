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

/// A sound server can drop a new client while it is busy or just started ("IO error:
/// failed to fill whole buffer", seen here at load 5-10 within seconds of PulseAudio's
/// start, in 4 tests of 5 once, with one second of retries): try again for about
/// four seconds, waiting longer each time, before calling it unavailable.
fn connect(id: HostId) -> Result<cpal::Host, cpal::Error> {
    let mut tries = 0u64;
    loop {
        match cpal::host_from_id(id) {
            Ok(h) => return Ok(h),
            Err(e) if tries < 6 => {
                tries += 1;
                tracing::info!("{}: {e}; trying again (try {tries})", id.name());
                std::thread::sleep(std::time::Duration::from_millis(150 * tries));
            }
            Err(e) => return Err(e),
        }
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
