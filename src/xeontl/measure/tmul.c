/* AMX's own throughput on one core: TDPBF16PS on tiles already in registers, 4 independent accumulators. */
#include <immintrin.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>
#define ARCH_REQ_XCOMP_PERM 0x1023
#define XFEATURE_XTILEDATA 18
struct cfg { uint8_t palette, start_row, rsvd[14]; uint16_t colsb[16]; uint8_t rows[16]; };
static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec + t.tv_nsec * 1e-9; }
int main(int argc, char **argv) {
    long iters = argc > 1 ? atol(argv[1]) : 1000000;
    if (syscall(SYS_arch_prctl, ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA)) { perror("arch_prctl(XTILEDATA)"); return 1; }
    struct cfg c; memset(&c, 0, sizeof c); c.palette = 1;
    for (int i = 0; i < 8; i++) { c.rows[i] = 16; c.colsb[i] = 64; }
    _tile_loadconfig(&c);
    static uint16_t buf[16 * 32] __attribute__((aligned(64)));
    for (int i = 0; i < 16 * 32; i++) buf[i] = 0x3f80;  /* bf16 1.0 */
    _tile_loadd(4, buf, 64); _tile_loadd(5, buf, 64); _tile_loadd(6, buf, 64); _tile_loadd(7, buf, 64);
    _tile_zero(0); _tile_zero(1); _tile_zero(2); _tile_zero(3);
    double t0 = now();
    for (long i = 0; i < iters; i++) {
        _tile_dpbf16ps(0, 4, 6); _tile_dpbf16ps(1, 4, 7); _tile_dpbf16ps(2, 5, 6); _tile_dpbf16ps(3, 5, 7);
    }
    float out[16 * 16];
    _tile_stored(0, out, 64);
    double s = now() - t0;
    _tile_release();
    printf("{\"seconds\": %.6f, \"flop\": %.0f, \"gflops\": %.1f, \"check\": %.0f}\n", s, iters * 4.0 * 16 * 16 * 32 * 2,
           iters * 4.0 * 16 * 16 * 32 * 2 / s / 1e9, out[0]);
    return 0;
}
