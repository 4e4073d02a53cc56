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

extern const char *const nnc_model_name;
extern const int nnc_num_inputs;
extern const int nnc_num_outputs;
extern const size_t nnc_arena_bytes;
extern const nnc_io nnc_inputs[];
extern const nnc_io nnc_outputs[];

/* The model's entry point (forwards to NAME_run). */
int nnc_run(const void *const *inputs, void *const *outputs, void *arena);

#endif
