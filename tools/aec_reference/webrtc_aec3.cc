// WebRTC AEC3 (C++) reference through the AudioProcessing module, 10 ms frames at 24 kHz.
// Built against Debian's libtgowt-dev (a WebRTC snapshot of 2023-01): see README.md.
// usage: webrtc_aec3 FAR.wav MIC.wav OUT.wav [ns]   (ns: also WebRTC's noise suppressor)
#include <time.h>
extern "C" {
#include "wavio.h"
}
#include "modules/audio_processing/include/audio_processing.h"

int main(int argc, char **argv) {
    if (argc < 4) { fprintf(stderr, "usage: webrtc_aec3 FAR.wav MIC.wav OUT.wav [ns]\n"); return 2; }
    long nf, nm; int rf, rm;
    int16_t *far = read_wav16(argv[1], &nf, &rf), *mic = read_wav16(argv[2], &nm, &rm);
    webrtc::AudioProcessing::Config cfg;
    cfg.echo_canceller.enabled = true;
    cfg.echo_canceller.mobile_mode = false;
    cfg.high_pass_filter.enabled = true;
    cfg.noise_suppression.enabled = argc > 4;
    cfg.gain_controller1.enabled = false;
    cfg.gain_controller2.enabled = false;
    rtc::scoped_refptr<webrtc::AudioProcessing> apm = webrtc::AudioProcessingBuilder().Create();
    apm->ApplyConfig(cfg);
    webrtc::StreamConfig sc(rm, 1);
    const int frame = rm / 100;
    int16_t *out = (int16_t *)calloc(nm, 2), zeros[4800] = {0};
    double t0 = cpu_seconds();
    for (long i = 0; i + frame <= nm; i += frame) {
        const int16_t *f = i + frame <= nf ? far + i : zeros;
        int16_t rev[4800];
        apm->ProcessReverseStream(f, sc, sc, rev);
        apm->set_stream_delay_ms(0);
        apm->ProcessStream(mic + i, sc, sc, out + i);
    }
    double cpu = cpu_seconds() - t0;
    write_wav16(argv[3], out, nm, rm);
    printf("{\"cpu_ms_per_s\": %.2f}\n", cpu * 1000.0 / ((double)nm / rm));
    return 0;
}
