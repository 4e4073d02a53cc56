/*
 * Fuzz driver for the tensor file readers of the runtime harness
 * (runtime/c/harness.c: load_npy, load_pb, write_npy), built with afl-cc
 * and AddressSanitizer by scripts/fuzz.sh. The harness is included whole so
 * that its static readers are reachable; its main() is renamed away.
 *
 * Input: one byte choosing an input slot (element type and shape), then the
 * bytes of a .npy or .pb file. The destination buffer is exactly the slot's
 * size, so ASan reports any write past it.
 */
#define main nnc_harness_main
#include "harness.c"
#undef main

static const long s23[] = {2, 3}, s0[] = {0}, s3[] = {3}, s22[] = {2, 2}, s12[] = {1, 2},
                  s2[] = {2}, s21[] = {2, 1};
const char *const nnc_model_name = "fuzz";
const int nnc_num_steps = 0;
const nnc_step nnc_steps[] = {{"", "", "", 0}};
const int nnc_num_inputs = 7;
const nnc_io nnc_inputs[] = {
    {"a", "f32", 2, s23, 24}, {"b", "f32", 0, s0, 4},   {"c", "i64", 1, s3, 24},
    {"d", "u8", 2, s22, 4},   {"e", "bool", 2, s12, 2}, {"f", "i16", 1, s2, 4},
    {"g", "f64", 2, s21, 16},
};
const int nnc_num_outputs = 1;
const nnc_io nnc_outputs[] = {{"y", "f32", 2, s23, 24}};
const size_t nnc_arena_bytes = 0;

int nnc_run(const void *const *inputs, void *const *outputs, void *arena) {
    (void)arena;
    memcpy(outputs[0], inputs[0], 24);
    return 0;
}

int main(int argc, char **argv) {
    size_t len = 0;
    unsigned char *b;
    const nnc_io *io;
    void *dst;
    int rc;
    if (argc != 2) return 2;
    b = read_file(argv[1], &len);
    if (!b) return 1;
    if (len < 1) {
        free(b);
        return 0;
    }
    io = &nnc_inputs[b[0] % nnc_num_inputs];
    dst = malloc(io->bytes);
    if (!dst) return 1;
    if (len - 1 >= 6 && memcmp(b + 1, "\x93NUMPY", 6) == 0) rc = load_npy(b + 1, len - 1, io, dst, argv[1]);
    else rc = load_pb(b + 1, len - 1, io, dst, argv[1]);
    if (rc == 0) rc = write_npy("/dev/null", io, dst);
    free(dst);
    free(b);
    return rc;
}
