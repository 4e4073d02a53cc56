/*
 * The multiply-add peak of C code: twelve independent chains of fused
 * multiply-adds on arrays as wide as the vector unit the compiler flags
 * enable (AVX-512: 16 floats, AVX: 8, otherwise 4), written as the
 * generated kernels write them (NNC_FMA: fmaf where the hardware fuses,
 * a multiply and an add elsewhere) and compiled with the same compiler
 * and flags as the model, so `nnc bench --backend c --profile` compares
 * each step with what its own code can reach.
 *
 * Prints `GFLOPS LANES FUSED`: the best of seven timed runs, the lanes per
 * chain, and 1 when the multiply-adds are fused.
 */
#define _POSIX_C_SOURCE 200112L
#if defined(__GNUC__) && !defined(__clang__)
/* Interchanged, the loops below would run each chain to completion in
 * turn: latency-bound, a fifth of the throughput measured here. */
#pragma GCC optimize("no-loop-interchange")
#endif
#include <math.h>
#include <stdio.h>
#include <time.h>

#if defined(__AVX512F__)
#define LANES 16
#elif defined(__AVX__)
#define LANES 8
#else
#define LANES 4
#endif
#define CHAINS 12

#if defined(__FMA__) || defined(__ARM_FEATURE_FMA) || defined(FP_FAST_FMAF)
#define NNC_FMA(a, b, c) fmaf((a), (b), (c))
#define FUSED 1
#else
#define NNC_FMA(a, b, c) ((a) * (b) + (c))
#define FUSED 0
#endif

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* `volatile` scalars keep the compiler from folding the chains. */
static volatile float va = 0.999999f, vb = 1e-7f;
static volatile float sink;

static void chains(long n) {
    float acc[CHAINS][LANES];
    const float a = va, b = vb;
    long i;
    int c, l;
    for (c = 0; c < CHAINS; ++c)
        for (l = 0; l < LANES; ++l) acc[c][l] = 1.0f + (float)(c * LANES + l);
    for (i = 0; i < n; ++i)
        for (c = 0; c < CHAINS; ++c)
            for (l = 0; l < LANES; ++l) acc[c][l] = NNC_FMA(acc[c][l], a, b);
    {
        float s = 0.0f;
        for (c = 0; c < CHAINS; ++c)
            for (l = 0; l < LANES; ++l) s += acc[c][l];
        sink = s;
    }
}

int main(void) {
    const long n = 1000000;
    double best = 0.0;
    int r;
    chains(n / 10);
    for (r = 0; r < 7; ++r) {
        double t0 = now_s(), t, gflops;
        chains(n);
        t = now_s() - t0;
        gflops = t > 0 ? 2.0 * CHAINS * LANES * (double)n / t * 1e-9 : 0.0;
        if (gflops > best) best = gflops;
    }
    printf("%.3f %d %d\n", best, LANES, FUSED);
    return 0;
}
