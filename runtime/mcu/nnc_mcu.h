/* The benchmark firmware's runtime (nnc_mcu.c, nnc_mcu_clock.S): the
 * model-independent part of the firmware `nnc bench --target cortex-mN`
 * builds. A generated main describes one model and calls
 * nnc_mcu_bench_main; the results go to the host over semihosting as
 * text lines (the host decodes the raw timer records). */
#ifndef NNC_MCU_H_
#define NNC_MCU_H_

#include <stdint.h>

/* Element types of outputs, for the on-device comparison. */
enum nnc_mcu_dtype {
    NNC_MCU_F32,
    NNC_MCU_F64,
    NNC_MCU_I8,
    NNC_MCU_U8,
    NNC_MCU_I16,
    NNC_MCU_U16,
    NNC_MCU_I32,
    NNC_MCU_U32,
    NNC_MCU_I64,
    NNC_MCU_BOOL
};

typedef int (*nnc_mcu_entry)(const void *const *inputs, void *const *outputs, void *arena);

/* One output: where the model writes it and, when checked, the reference. */
struct nnc_mcu_output {
    enum nnc_mcu_dtype dtype;
    uint32_t elements;
    const void *data;
    const void *expected; /* NULL: not checked */
};

struct nnc_mcu_bench {
    nnc_mcu_entry run;
    const void *const *inputs;
    void *const *outputs;
    void *arena;
    uint32_t num_outputs;
    const struct nnc_mcu_output *outs;
    uint32_t steps; /* profile slots: steps + 1 (with -DNNC_PROFILE) */
    uint32_t runs;  /* measured runs, after one warm-up run */
    double rtol, atol; /* float outputs: |a - e| <= atol + rtol * |e| */
    int64_t lsb;       /* integer outputs: |a - e| <= lsb */
    int equal_nan;     /* a NaN matches a NaN (else any NaN is a mismatch) */
};

/* Runs the benchmark and returns the firmware's exit code (0 ok, 1 an
 * output mismatch, 2 the model failed). */
int nnc_mcu_bench_main(const struct nnc_mcu_bench *b);

/* Calls fn(inputs, outputs, arena) between two marks (nnc_mcu_clock.S). */
int nnc_mcu_measure(nnc_mcu_entry fn, const void *const *inputs, void *const *outputs, void *arena);

/* The records of the two marks of the last nnc_mcu_measure (8 words each). */
extern uint32_t nnc_mcu_meas[16];

#endif /* NNC_MCU_H_ */
