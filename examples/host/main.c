/* Example host program: runs an nnc-generated model on an input file of
 * raw little-endian elements (or zeros without an argument) and prints the
 * first output. The Makefile generates MODEL.h with MODEL.c (`nnc emit-c`)
 * or MODEL.o (`nnc compile --emit obj`) and passes -DNNC_MODEL_HEADER and
 * -DNNC_NAME. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include NNC_MODEL_HEADER

#define CAT_(a, b) a##b
#define CAT(a, b) CAT_(a, b)
#define M(x) CAT(NNC_NAME, x)

static unsigned char arena[M(_ARENA_BYTES) > 0 ? M(_ARENA_BYTES) : 1] __attribute__((aligned(M(_ARENA_ALIGN))));
static unsigned char input0[M(_INPUT_0_BYTES)] __attribute__((aligned(16)));
static float output0[M(_OUTPUT_0_BYTES) / sizeof(float)] __attribute__((aligned(16)));

int main(int argc, char **argv) {
    const void *inputs[] = {input0};
    void *outputs[] = {output0};
    size_t i;
    if (argc > 1) {
        FILE *f = fopen(argv[1], "rb");
        if (!f || fread(input0, 1, sizeof input0, f) != sizeof input0) {
            fprintf(stderr, "cannot read %u bytes from %s\n", (unsigned)sizeof input0, argv[1]);
            return 1;
        }
        fclose(f);
    }
    if (CAT(NNC_NAME, _run)(inputs, outputs, arena) != 0) {
        fprintf(stderr, "the model failed\n");
        return 1;
    }
    printf("%s:", M(_OUTPUT_0_NAME));
    for (i = 0; i < sizeof output0 / sizeof output0[0]; ++i) printf(" %.6f", (double)output0[i]);
    printf("\n");
    return 0;
}
