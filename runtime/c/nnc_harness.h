/* Interface between the nnc runtime harness and a model's generated glue. */
#ifndef NNC_HARNESS_H_
#define NNC_HARNESS_H_

#include <stddef.h>

/* One input or output: its name, element type name ("f32", "i64", ...),
 * shape and size in bytes. */
typedef struct {
    const char *name;
    const char *dtype;
    int rank;
    const long *shape;
    size_t bytes;
} nnc_io;

/* One step of the model, for the per-step profile. */
typedef struct {
    const char *op;
    const char *output;
    const char *name;
    unsigned long long macs;
} nnc_step;

extern const char *const nnc_model_name;
extern const int nnc_num_steps;
extern const nnc_step nnc_steps[];
extern const int nnc_num_inputs;
extern const int nnc_num_outputs;
extern const size_t nnc_arena_bytes;
extern const nnc_io nnc_inputs[];
extern const nnc_io nnc_outputs[];

/* The model's entry point (forwards to NAME_run). */
int nnc_run(const void *const *inputs, void *const *outputs, void *arena);

/* Profiling hooks a model compiled with -DNNC_PROFILE calls. */
void nnc_profile_begin(void);
void nnc_profile_step(int step);

#endif
