/* The benchmark firmware's main loop: one warm-up run, then the measured
 * runs, each between two marks of the exact instruction clock
 * (nnc_mcu_clock.S); the raw mark records, the per-step records with
 * -DNNC_PROFILE, and the comparison of the outputs with their references
 * are printed over semihosting for the host (`nnc::mcu`) to decode.
 *
 * Protocol (one item per line):
 *   nnc-mcu 1 runs R steps S
 *   M run slot w4 w0 n v w1 w2 w3      two per measured run (hex words)
 *   P run slot w4 w0 n v w1 w2 w3      S + 1 per measured run (profile)
 *   check k elements mismatches max_abs max_rel
 *   error run r rc C                    the model returned C
 *   error timer                         timer 0 does not count
 *   fault                               a fault handler ran
 *   done */
#include "nnc_mcu.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

/* CMSDK APB timer 0, the clock nnc_mcu_clock.S reads. */
#define TIMER0_CTRL (*(volatile uint32_t *)0x40000000u)
#define TIMER0_VALUE (*(volatile uint32_t *)0x40000004u)
#define TIMER0_RELOAD (*(volatile uint32_t *)0x40000008u)

#ifdef NNC_PROFILE
extern uint32_t nnc_mcu_prof[];
#endif

static void record(char tag, uint32_t run, uint32_t slot, const uint32_t *r) {
    printf("%c %lu %lu %lx %lx %lx %lx %lx %lx %lx\n", tag, (unsigned long)run, (unsigned long)slot,
           (unsigned long)r[0], (unsigned long)r[1], (unsigned long)r[2], (unsigned long)r[3],
           (unsigned long)r[4], (unsigned long)r[5], (unsigned long)r[6]);
}

static int is_float(enum nnc_mcu_dtype t) { return t == NNC_MCU_F32 || t == NNC_MCU_F64; }

static double felem(enum nnc_mcu_dtype t, const void *p, uint32_t i) {
    return t == NNC_MCU_F32 ? (double)((const float *)p)[i] : ((const double *)p)[i];
}

static int64_t ielem(enum nnc_mcu_dtype t, const void *p, uint32_t i) {
    switch (t) {
    case NNC_MCU_I8: return ((const int8_t *)p)[i];
    case NNC_MCU_U8:
    case NNC_MCU_BOOL: return ((const uint8_t *)p)[i];
    case NNC_MCU_I16: return ((const int16_t *)p)[i];
    case NNC_MCU_U16: return ((const uint16_t *)p)[i];
    case NNC_MCU_I32: return ((const int32_t *)p)[i];
    case NNC_MCU_U32: return ((const uint32_t *)p)[i];
    case NNC_MCU_I64: return ((const int64_t *)p)[i];
    default: return 0;
    }
}

/* The comparison `nnc run --expect` makes: floats within
 * atol + rtol * |expected| (a NaN matches a NaN only with equal_nan,
 * infinities must match), integers within lsb. */
static void check(uint32_t k, const struct nnc_mcu_output *o, const struct nnc_mcu_bench *b, uint32_t *bad) {
    uint32_t i, miss = 0, nan = 0;
    double max_abs = 0, max_rel = 0;
    for (i = 0; i < o->elements; ++i) {
        if (is_float(o->dtype)) {
            double x = felem(o->dtype, o->data, i), y = felem(o->dtype, o->expected, i), d;
            if (isnan(x) || isnan(y)) {
                if (!(b->equal_nan && isnan(x) && isnan(y))) {
                    ++miss;
                    ++nan;
                }
                continue;
            }
            if (isinf(x) || isinf(y)) {
                if (x != y) {
                    ++miss;
                    max_abs = INFINITY;
                }
                continue;
            }
            d = fabs(x - y);
            if (d > max_abs) max_abs = d;
            if (y != 0 && d / fabs(y) > max_rel) max_rel = d / fabs(y);
            if (d > b->atol + b->rtol * fabs(y)) ++miss;
        } else {
            int64_t x = ielem(o->dtype, o->data, i), y = ielem(o->dtype, o->expected, i);
            int64_t d = x > y ? x - y : y - x;
            if ((double)d > max_abs) max_abs = (double)d;
            if (d > b->lsb) ++miss;
        }
    }
    printf("check %lu %lu %lu %.9g %.9g %lu\n", (unsigned long)k, (unsigned long)o->elements,
           (unsigned long)miss, max_abs, max_rel, (unsigned long)nan);
    if (miss) ++*bad;
}

int nnc_mcu_bench_main(const struct nnc_mcu_bench *b) {
    uint32_t run, k, bad = 0;
    volatile uint32_t spin;
    /* Free-running, interrupt off: 2^32 ticks of 40 instructions (171
     * billion) before it wraps. */
    TIMER0_CTRL = 0;
    TIMER0_RELOAD = 0xFFFFFFFFu;
    TIMER0_VALUE = 0xFFFFFFFFu;
    TIMER0_CTRL = 1;
    for (spin = 0; spin < 100; ++spin) {
    }
    if (TIMER0_VALUE == 0xFFFFFFFFu) {
        printf("error timer\n");
        return 2;
    }
    printf("nnc-mcu 1 runs %lu steps %lu\n", (unsigned long)b->runs, (unsigned long)b->steps);
    for (run = 0; run <= b->runs; ++run) {
        int rc;
        /* From the top again: a run may take up to 2^32 ticks. */
        TIMER0_VALUE = 0xFFFFFFFFu;
        rc = nnc_mcu_measure(b->run, b->inputs, b->outputs, b->arena);
        if (rc != 0) {
            printf("error run %lu rc %d\n", (unsigned long)run, rc);
            return 2;
        }
        if (run == 0) continue; /* warm-up */
        record('M', run, 0, nnc_mcu_meas);
        record('M', run, 1, nnc_mcu_meas + 8);
#ifdef NNC_PROFILE
        for (k = 0; k <= b->steps; ++k) record('P', run, k, nnc_mcu_prof + 8 * k);
#endif
    }
    for (k = 0; k < b->num_outputs; ++k)
        if (b->outs[k].expected) check(k, &b->outs[k], b, &bad);
    printf("done\n");
    return bad ? 1 : 0;
}

/* A fault ends the run with a message instead of a hang until the timeout. */
void HardFault_Handler(void);
void HardFault_Handler(void) {
    printf("fault\n");
    _exit(3);
}
