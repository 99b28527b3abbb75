/* alsa-lib's error handler is a C variadic function, which stable Rust cannot
 * define. This shim is that handler: it formats the message with vsnprintf and
 * passes it, no longer variadic, to a Rust callback. Compiled by build.rs. */
#include <stdarg.h>
#include <stdio.h>
#include <alsa/asoundlib.h>

typedef void (*assistant_alsa_log_fn)(const char *file, int line, const char *function,
                                      int err, const char *message);

static assistant_alsa_log_fn log_fn;

static void handler(const char *file, int line, const char *function, int err,
                    const char *fmt, ...) {
    char message[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(message, sizeof message, fmt ? fmt : "", ap);
    va_end(ap);
    if (log_fn)
        log_fn(file, line, function, err, message);
}

/* Route all of alsa-lib's error messages to `log`. Call once, before any other
 * thread uses ALSA. Returns snd_lib_error_set_handler's result. */
int assistant_alsa_quiet_install(assistant_alsa_log_fn log) {
    log_fn = log;
    return snd_lib_error_set_handler(handler);
}
