/* Example firmware: runs the model once on an all-zero input and prints
 * its outputs over semihosting. Replace the input with your sensor data.
 * The Makefile generates MODEL.h / MODEL.c with `nnc emit-c` and passes
 * -DNNC_MODEL_HEADER and -DNNC_RUN. */
#include <stdint.h>
#include <stdio.h>

#include NNC_MODEL_HEADER

#define CAT_(a, b) a##b
#define CAT(a, b) CAT_(a, b)
#define M(x) CAT(NNC_NAME, x)

/* The arena: the model's only RAM besides the stack, aligned as required. */
static uint8_t arena[M(_ARENA_BYTES) > 0 ? M(_ARENA_BYTES) : 1] __attribute__((aligned(M(_ARENA_ALIGN))));
static uint8_t input0[M(_INPUT_0_BYTES)] __attribute__((aligned(16)));
static float output0[M(_OUTPUT_0_BYTES) / sizeof(float)] __attribute__((aligned(16)));

int main(void) {
    const void *inputs[] = {input0};
    void *outputs[] = {output0};
    unsigned i;
    int rc = CAT(NNC_NAME, _run)(inputs, outputs, arena);
    if (rc != 0) {
        printf("model failed: %d\n", rc);
        return 1;
    }
    printf("%s:", M(_OUTPUT_0_NAME));
    for (i = 0; i < sizeof output0 / sizeof output0[0]; ++i) printf(" %.5f", (double)output0[i]);
    printf("\n");
    return 0;
}
