//! alsa-lib prints its errors straight to stderr, which would scribble over the
//! TUI. Route them to the log instead.
//!
//! alsa-lib's handler type is a C variadic function (`fmt, ...`). Stable Rust can
//! call such functions but not define one, and calling a non-variadic function
//! through a variadic pointer is undefined behaviour. So the handler itself is a
//! few lines of C (`alsa_quiet.c`, built by `build.rs` with the `cc` crate): it
//! formats the message with `vsnprintf` and hands it to [`to_log`] below, a plain
//! non-variadic function. (`snd_lib_error_set_local` takes a non-variadic handler,
//! but only for the calling thread; cpal calls ALSA from its own threads.)

#[cfg(target_os = "linux")]
mod imp {
    use std::ffi::{c_char, c_int, CStr};
    use std::sync::Once;

    type LogFn = unsafe extern "C" fn(*const c_char, c_int, *const c_char, c_int, *const c_char);

    extern "C" {
        /// In alsa_quiet.c: installs the C handler, which calls `log`.
        fn assistant_alsa_quiet_install(log: LogFn) -> c_int;
    }

    /// # Safety
    /// `function` and `message` are null or NUL-terminated strings valid for the
    /// call (alsa-lib passes `__func__`; the shim passes its own stack buffer).
    unsafe extern "C" fn to_log(
        _file: *const c_char,
        _line: c_int,
        function: *const c_char,
        err: c_int,
        message: *const c_char,
    ) {
        let text = |p: *const c_char| {
            if p.is_null() {
                "?".into()
            } else {
                // SAFETY: non-null, and NUL-terminated for the call (see above).
                unsafe { CStr::from_ptr(p) }.to_string_lossy()
            }
        };
        let (function, message) = (text(function), text(message));
        if err == 0 {
            tracing::debug!(target: "alsa", "{function}: {message}");
        } else {
            let os = std::io::Error::from_raw_os_error(err.abs());
            tracing::debug!(target: "alsa", "{function}: {message} ({os})");
        }
    }

    pub fn install() {
        static ONCE: Once = Once::new();
        ONCE.call_once(|| {
            // SAFETY: the shim stores a plain function pointer and registers its
            // own variadic handler, whose type matches alsa-lib's exactly. It
            // runs once, before this process opens any ALSA device.
            unsafe { assistant_alsa_quiet_install(to_log) };
        });
    }
}

#[cfg(target_os = "linux")]
pub use imp::install;

#[cfg(not(target_os = "linux"))]
pub fn install() {}
