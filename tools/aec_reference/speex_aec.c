/* SpeexDSP reference: MDF echo canceller (200 ms filter) plus its preprocessor's residual
 * echo suppression and denoiser, 10 ms frames at 24 kHz.
 * build: cc -O2 speex_aec.c -lspeexdsp -o speex_aec
 * usage: speex_aec FAR.wav MIC.wav OUT.wav */
#include <time.h>
#include "wavio.h"
#include <speex/speex_echo.h>
#include <speex/speex_preprocess.h>

int main(int argc, char **argv) {
    if (argc != 4) { fprintf(stderr, "usage: speex_aec FAR.wav MIC.wav OUT.wav\n"); return 2; }
    long nf, nm; int rf, rm;
    int16_t *far = read_wav16(argv[1], &nf, &rf), *mic = read_wav16(argv[2], &nm, &rm);
    const int frame = rm / 100, tail = rm / 5;
    SpeexEchoState *st = speex_echo_state_init(frame, tail);
    SpeexPreprocessState *pp = speex_preprocess_state_init(frame, rm);
    speex_echo_ctl(st, SPEEX_ECHO_SET_SAMPLING_RATE, &rm);
    speex_preprocess_ctl(pp, SPEEX_PREPROCESS_SET_ECHO_STATE, st);
    int16_t *out = calloc(nm, 2), zeros[4800] = {0};
    double t0 = cpu_seconds();
    for (long i = 0; i + frame <= nm; i += frame) {
        const int16_t *f = i + frame <= nf ? far + i : zeros;
        speex_echo_cancellation(st, mic + i, f, out + i);
        speex_preprocess_run(pp, out + i);
    }
    double cpu = cpu_seconds() - t0;
    write_wav16(argv[3], out, nm, rm);
    printf("{\"cpu_ms_per_s\": %.2f}\n", cpu * 1000.0 / ((double)nm / rm));
    return 0;
}
