//! alsa-lib prints its errors straight to stderr, which would scribble over the
//! TUI. Route them to the log instead.

#[cfg(target_os = "linux")]
pub fn install() {
    use std::ffi::{c_char, c_int, CStr};
    use std::sync::Once;
    static ONCE: Once = Once::new();

    // alsa-lib calls this with C varargs after `fmt`; a handler that ignores
    // them may be non-variadic on the Linux ABIs ALSA runs on.
    unsafe extern "C" fn to_log(
        _file: *const c_char,
        _line: c_int,
        function: *const c_char,
        err: c_int,
        _fmt: *const c_char,
    ) {
        let function = if function.is_null() {
            "?".into()
        } else {
            unsafe { CStr::from_ptr(function) }.to_string_lossy()
        };
        tracing::debug!(target: "alsa", "{function}: {}", std::io::Error::from_raw_os_error(err.abs()));
    }
    ONCE.call_once(|| unsafe {
        let handler: unsafe extern "C" fn(
            *const c_char,
            c_int,
            *const c_char,
            c_int,
            *const c_char,
        ) = to_log;
        type Variadic =
            unsafe extern "C" fn(*const c_char, c_int, *const c_char, c_int, *const c_char, ...);
        let handler: alsa_sys::snd_lib_error_handler_t = Some(std::mem::transmute::<
            unsafe extern "C" fn(*const c_char, c_int, *const c_char, c_int, *const c_char),
            Variadic,
        >(handler));
        alsa_sys::snd_lib_error_set_handler(handler);
    });
}

#[cfg(not(target_os = "linux"))]
pub fn install() {}
