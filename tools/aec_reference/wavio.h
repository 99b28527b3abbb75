/* Minimal 16-bit PCM mono WAV reading and writing for the reference cancellers. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <stdint.h>

static int16_t *read_wav16(const char *path, long *n, int *rate) {
    FILE *f = fopen(path, "rb");
    if (!f) { perror(path); exit(1); }
    char id[4]; uint32_t size; int16_t *data = NULL; int ch = 0, bits = 0;
    fseek(f, 12, SEEK_SET);
    while (fread(id, 1, 4, f) == 4 && fread(&size, 4, 1, f) == 1) {
        if (!memcmp(id, "fmt ", 4)) {
            uint16_t fmt[8]; fread(fmt, 1, 16, f); fseek(f, size - 16, SEEK_CUR);
            ch = fmt[1]; *rate = fmt[2] | (fmt[3] << 16); bits = fmt[7];
        } else if (!memcmp(id, "data", 4)) {
            data = (int16_t *)malloc(size); *n = fread(data, 2, size / 2, f); break;
        } else fseek(f, size, SEEK_CUR);
    }
    fclose(f);
    if (!data || ch != 1 || bits != 16) { fprintf(stderr, "%s: need 16-bit mono PCM\n", path); exit(1); }
    return data;
}

static void write_wav16(const char *path, const int16_t *x, long n, int rate) {
    FILE *f = fopen(path, "wb");
    if (!f) { perror(path); exit(1); }
    uint32_t data = n * 2, riff = 36 + data, fmt_size = 16, byte_rate = rate * 2;
    uint16_t pcm = 1, ch = 1, align = 2, bits = 16;
    fwrite("RIFF", 1, 4, f); fwrite(&riff, 4, 1, f); fwrite("WAVEfmt ", 1, 8, f);
    fwrite(&fmt_size, 4, 1, f); fwrite(&pcm, 2, 1, f); fwrite(&ch, 2, 1, f);
    fwrite(&rate, 4, 1, f); fwrite(&byte_rate, 4, 1, f); fwrite(&align, 2, 1, f); fwrite(&bits, 2, 1, f);
    fwrite("data", 1, 4, f); fwrite(&data, 4, 1, f); fwrite(x, 2, n, f); fclose(f);
}

static double cpu_seconds(void) {
    struct timespec ts; clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}
