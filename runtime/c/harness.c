/*
 * nnc runtime harness: a command-line program around one compiled model.
 * It is linked with the model (C source or native object) and a generated
 * glue file that defines the symbols declared in nnc_harness.h: the entry
 * point nnc_run and the description of the inputs and outputs. The harness
 * itself does not depend on the model, so it is compiled once.
 *
 *   prog [--input [NAME=]FILE]... [--output [NAME=]FILE]... [--bench N] [--json]
 *
 * Input files are .npy or serialized ONNX TensorProto (.pb); outputs are
 * written as .npy. Without --output, a summary of each output is printed.
 * --bench N runs the model N times after a warm-up and prints the median
 * and 90th-percentile latency; with --profile (and a model compiled with
 * -DNNC_PROFILE) it prints the time and GFLOP/s of every step instead.
 *
 * Exit status: 0 on success, 1 on a runtime or file error, 2 on bad usage.
 */
#define _POSIX_C_SOURCE 200112L
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/stat.h>
#include <unistd.h>

#include "nnc_harness.h"

/* Most dims a tensor file may declare (a file with more is rejected). */
#define MAX_RANK 32

/* Appends to `buf` (capacity `cap`, current length `*k`), truncating
 * instead of writing past the end: every formatted string goes through here. */
static void append(char *buf, size_t cap, size_t *k, const char *fmt, ...) {
    va_list ap;
    int n;
    if (*k >= cap) return;
    va_start(ap, fmt);
    n = vsnprintf(buf + *k, cap - *k, fmt, ap);
    va_end(ap);
    if (n < 0) return;
    *k = (size_t)n >= cap - *k ? cap - 1 : *k + (size_t)n;
}

static void dims_text(const char *dtype, int rank, const long *dims, char *out, size_t cap) {
    size_t k = 0;
    int i;
    out[0] = 0;
    append(out, cap, &k, "%s[", dtype);
    for (i = 0; i < rank; ++i) append(out, cap, &k, "%s%ld", i ? "," : "", dims[i]);
    append(out, cap, &k, "]");
}

static const nnc_io *find_io(const nnc_io *list, int n, const char *name, size_t len) {
    int i;
    for (i = 0; i < n; ++i) {
        if (strlen(list[i].name) == len && strncmp(list[i].name, name, len) == 0) return &list[i];
    }
    return NULL;
}

static size_t elem_size(const char *dtype) {
    if (!strcmp(dtype, "f64") || !strcmp(dtype, "i64")) return 8;
    if (!strcmp(dtype, "f32") || !strcmp(dtype, "i32") || !strcmp(dtype, "u32")) return 4;
    if (!strcmp(dtype, "i16") || !strcmp(dtype, "u16")) return 2;
    return 1;
}

static const char *npy_descr(const char *dtype) {
    static const char *map[][2] = {{"f32", "<f4"}, {"f64", "<f8"}, {"i8", "|i1"}, {"u8", "|u1"},
                                   {"i16", "<i2"}, {"u16", "<u2"}, {"i32", "<i4"}, {"u32", "<u4"},
                                   {"i64", "<i8"}, {"bool", "|b1"}};
    size_t i;
    for (i = 0; i < sizeof map / sizeof map[0]; ++i)
        if (!strcmp(map[i][0], dtype)) return map[i][1];
    return "?";
}

static int onnx_code(const char *dtype) {
    static const struct { const char *d; int c; } map[] = {
        {"f32", 1}, {"u8", 2}, {"i8", 3}, {"u16", 4}, {"i16", 5}, {"i32", 6},
        {"i64", 7}, {"bool", 9}, {"f64", 11}, {"u32", 12}};
    size_t i;
    for (i = 0; i < sizeof map / sizeof map[0]; ++i)
        if (!strcmp(map[i].d, dtype)) return map[i].c;
    return -1;
}

static unsigned char *read_file(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    unsigned char *buf;
    long n;
    if (!f) return NULL;
    if (fseek(f, 0, SEEK_END) != 0 || (n = ftell(f)) < 0 || fseek(f, 0, SEEK_SET) != 0) {
        fclose(f);
        return NULL;
    }
    buf = (unsigned char *)malloc((size_t)n + 1);
    if (!buf || fread(buf, 1, (size_t)n, f) != (size_t)n) {
        free(buf);
        fclose(f);
        return NULL;
    }
    fclose(f);
    *len = (size_t)n;
    return buf;
}

static void shape_text(const nnc_io *io, char *out, size_t cap) {
    dims_text(io->dtype, io->rank, io->shape, out, cap);
}

/* .npy: checks descr and shape against `io`, copies the data. */
static int load_npy(const unsigned char *b, size_t len, const nnc_io *io, void *dst, const char *path) {
    size_t hl, start, i;
    const char *h, *p;
    char hdr[4096], want[160], got[160];
    long dims[MAX_RANK];
    int rank = 0, too_many = 0;
    if (len < 10) goto bad;
    if (b[6] == 1) {
        hl = (size_t)b[8] | ((size_t)b[9] << 8);
        start = 10;
    } else {
        if (len < 12) goto bad;
        hl = (size_t)b[8] | ((size_t)b[9] << 8) | ((size_t)b[10] << 16) | ((size_t)b[11] << 24);
        start = 12;
    }
    if (start + hl > len || hl >= sizeof hdr) goto bad;
    memcpy(hdr, b + start, hl);
    hdr[hl] = 0;
    h = hdr;
    p = strstr(h, "'descr':");
    if (!p || !strstr(p, npy_descr(io->dtype))) {
        fprintf(stderr, "error: `%s`: element type is not %s (%s)\n", path, io->dtype, npy_descr(io->dtype));
        return 1;
    }
    if (strstr(h, "'fortran_order': True")) {
        fprintf(stderr, "error: `%s`: Fortran-ordered arrays are not supported\n", path);
        return 1;
    }
    p = strstr(h, "'shape':");
    if (!p || !(p = strchr(p, '('))) goto bad;
    ++p;
    while (*p && *p != ')') {
        char *end;
        long d = strtol(p, &end, 10);
        if (end == p) break;
        if (rank == MAX_RANK) {
            too_many = 1;
            break;
        }
        dims[rank++] = d;
        p = end;
        while (*p == ',' || *p == ' ') ++p;
    }
    if (too_many) {
        fprintf(stderr, "error: `%s`: more than %d dims\n", path, MAX_RANK);
        return 1;
    }
    if (rank != io->rank) goto shape;
    for (i = 0; i < (size_t)rank; ++i)
        if (dims[i] != io->shape[i]) goto shape;
    if (len - start - hl != io->bytes) goto bad;
    memcpy(dst, b + start + hl, io->bytes);
    return 0;
shape:
    shape_text(io, want, sizeof want);
    dims_text(io->dtype, rank, dims, got, sizeof got);
    fprintf(stderr, "error: input `%s`: expected %s, `%s` holds %s\n", io->name, want, path, got);
    return 1;
bad:
    fprintf(stderr, "error: `%s`: malformed .npy file\n", path);
    return 1;
}

static int varint(const unsigned char **p, const unsigned char *end, uint64_t *v) {
    int shift = 0;
    *v = 0;
    while (*p < end && shift < 64) {
        unsigned char c = *(*p)++;
        *v |= (uint64_t)(c & 0x7f) << shift;
        if (!(c & 0x80)) return 0;
        shift += 7;
    }
    return 1;
}

/* Serialized ONNX TensorProto: dims (1), data_type (2), raw_data (9) or the
 * typed fields float_data (4), int32_data (5), int64_data (7), double_data (10). */
static int load_pb(const unsigned char *b, size_t len, const nnc_io *io, void *dst, const char *path) {
    const unsigned char *p = b, *end = b + len;
    const unsigned char *raw = NULL;
    size_t raw_len = 0, es = elem_size(io->dtype), n = io->bytes / (es ? es : 1), count = 0;
    long dims[MAX_RANK];
    int rank = 0, dtype = 0, i, too_many = 0;
    unsigned char *out = (unsigned char *)dst;
    while (p < end) {
        uint64_t key, v;
        unsigned field, wire;
        if (varint(&p, end, &key)) goto bad;
        field = (unsigned)(key >> 3);
        wire = (unsigned)(key & 7);
        if (wire == 0) {
            if (varint(&p, end, &v)) goto bad;
            if (field == 1) {
                if (rank < MAX_RANK) dims[rank++] = (long)v;
                else too_many = 1;
            }
            else if (field == 2) dtype = (int)v;
            else if ((field == 5 || field == 7) && count < n) {
                if (es == 8) memcpy(out + count * 8, &v, 8);
                else if (es == 4) { uint32_t u = (uint32_t)v; memcpy(out + count * 4, &u, 4); }
                else if (es == 2) { uint16_t u = (uint16_t)v; memcpy(out + count * 2, &u, 2); }
                else out[count] = (unsigned char)v;
                ++count;
            }
        } else if (wire == 2) {
            const unsigned char *q;
            if (varint(&p, end, &v) || v > (uint64_t)(end - p)) goto bad;
            q = p;
            p += v;
            if (field == 9) {
                raw = q;
                raw_len = (size_t)v;
            } else if (field == 1) {
                while (q < p) {
                    uint64_t d;
                    if (varint(&q, p, &d)) goto bad;
                    if (rank < MAX_RANK) dims[rank++] = (long)d;
                    else too_many = 1;
                }
            } else if ((field == 4 && es == 4) || (field == 10 && es == 8)) {
                size_t k = (size_t)v / es;
                if (count + k <= n) memcpy(out + count * es, q, k * es);
                count += k;
            } else if (field == 5 || field == 7) {
                while (q < p) {
                    uint64_t x;
                    if (varint(&q, p, &x)) goto bad;
                    if (count < n) {
                        if (es == 8) memcpy(out + count * 8, &x, 8);
                        else if (es == 4) { uint32_t u = (uint32_t)x; memcpy(out + count * 4, &u, 4); }
                        else if (es == 2) { uint16_t u = (uint16_t)x; memcpy(out + count * 2, &u, 2); }
                        else out[count] = (unsigned char)x;
                    }
                    ++count;
                }
            }
        } else if (wire == 5) {
            if (end - p < 4) goto bad;
            if (field == 4 && es == 4 && count < n) memcpy(out + 4 * count++, p, 4);
            p += 4;
        } else if (wire == 1) {
            if (end - p < 8) goto bad;
            if (field == 10 && es == 8 && count < n) memcpy(out + 8 * count++, p, 8);
            p += 8;
        } else {
            goto bad;
        }
    }
    if (too_many) {
        fprintf(stderr, "error: `%s`: more than %d dims\n", path, MAX_RANK);
        return 1;
    }
    if (dtype != onnx_code(io->dtype)) {
        fprintf(stderr, "error: `%s`: element type code %d, input `%s` is %s\n", path, dtype, io->name, io->dtype);
        return 1;
    }
    if (rank != io->rank) goto shape;
    for (i = 0; i < rank; ++i)
        if (dims[i] != io->shape[i]) goto shape;
    if (raw) {
        if (raw_len != io->bytes) goto bad;
        memcpy(dst, raw, raw_len);
    } else if (count != n) {
        goto bad;
    }
    return 0;
shape: {
    char want[160];
    shape_text(io, want, sizeof want);
    fprintf(stderr, "error: input `%s`: expected %s, `%s` has another shape\n", io->name, want, path);
    return 1;
}
bad:
    fprintf(stderr, "error: `%s`: malformed TensorProto\n", path);
    return 1;
}

static int load_input(const char *path, const nnc_io *io, void *dst) {
    size_t len = 0;
    unsigned char *b = read_file(path, &len);
    int rc;
    if (!b) {
        fprintf(stderr, "error: cannot read `%s`\n", path);
        return 1;
    }
    if (len >= 6 && memcmp(b, "\x93NUMPY", 6) == 0) rc = load_npy(b, len, io, dst, path);
    else rc = load_pb(b, len, io, dst, path);
    free(b);
    return rc;
}

static int write_npy(const char *path, const nnc_io *io, const void *data) {
    /* Room for 64 dims of 20 digits, the dict text and the padding. */
    char h[2048], *tmp;
    int i, ok;
    struct stat st;
    size_t hl = 0, total;
    FILE *f;
    unsigned char pre[10] = {0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0, 0, 0};
    append(h, sizeof h - 66, &hl, "{'descr': '%s', 'fortran_order': False, 'shape': (", npy_descr(io->dtype));
    for (i = 0; i < io->rank; ++i) append(h, sizeof h - 66, &hl, "%ld%s", io->shape[i], io->rank == 1 ? "," : (i + 1 < io->rank ? ", " : ""));
    append(h, sizeof h - 66, &hl, "), }");
    if (hl >= sizeof h - 67) {
        fprintf(stderr, "error: `%s`: the shape of output `%s` is too long for a .npy header\n", path, io->name);
        return 1;
    }
    total = 10 + hl + 1;
    while (total % 64) {
        h[hl++] = ' ';
        ++total;
    }
    h[hl++] = '\n';
    pre[8] = (unsigned char)(hl & 0xff);
    pre[9] = (unsigned char)(hl >> 8);
    /* A new or regular file is written to a temporary file next to it and
     * renamed into place: a kill or a full disk never leaves a truncated
     * output. Anything else (/dev/stdout, a FIFO, a symlink) is written
     * directly, never replaced. */
    tmp = (char *)malloc(strlen(path) + 32);
    if (!tmp) return 1;
    if (lstat(path, &st) == 0 && !S_ISREG(st.st_mode)) strcpy(tmp, path);
    else sprintf(tmp, "%s.tmp-%ld", path, (long)getpid());
    f = fopen(tmp, "wb");
    ok = f && fwrite(pre, 1, 10, f) == 10 && fwrite(h, 1, hl, f) == hl && fwrite(data, 1, io->bytes, f) == io->bytes;
    if (f && fclose(f) != 0) ok = 0;
    if (ok && strcmp(tmp, path) != 0 && rename(tmp, path) != 0) ok = 0;
    if (!ok) {
        if (strcmp(tmp, path) != 0) remove(tmp);
        fprintf(stderr, "error: cannot write `%s`\n", path);
    }
    free(tmp);
    return ok ? 0 : 1;
}

static double elem_value(const nnc_io *io, const void *data, size_t i) {
    const char *d = io->dtype;
    if (!strcmp(d, "f32")) return ((const float *)data)[i];
    if (!strcmp(d, "f64")) return ((const double *)data)[i];
    if (!strcmp(d, "i8")) return ((const int8_t *)data)[i];
    if (!strcmp(d, "u8") || !strcmp(d, "bool")) return ((const uint8_t *)data)[i];
    if (!strcmp(d, "i16")) return ((const int16_t *)data)[i];
    if (!strcmp(d, "u16")) return ((const uint16_t *)data)[i];
    if (!strcmp(d, "i32")) return ((const int32_t *)data)[i];
    if (!strcmp(d, "u32")) return ((const uint32_t *)data)[i];
    return (double)((const int64_t *)data)[i];
}

static void summarize(const nnc_io *io, const void *data) {
    char s[160];
    size_t n = io->bytes / elem_size(io->dtype), i;
    shape_text(io, s, sizeof s);
    printf("%s: %s\n  [", io->name, s);
    for (i = 0; i < n && i < 8; ++i) printf("%s%.6f", i ? ", " : "", elem_value(io, data, i));
    printf("%s]\n", n > 8 ? ", ..." : "");
}

static double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

/* Per-step profile: time since the previous hook call, summed per step. */
static double *prof_sum;
static double prof_last;

void nnc_profile_begin(void) {
    prof_last = now_ms();
}

void nnc_profile_step(int step) {
    double t = now_ms();
    if (prof_sum && step >= 0 && step < nnc_num_steps) prof_sum[step] += t - prof_last;
    prof_last = t;
}

static void print_profile(long runs, int json) {
    int i;
    double total = 0;
    for (i = 0; i < nnc_num_steps; ++i) total += prof_sum[i];
    if (json) printf("{\"steps\": [");
    else printf("step  op               ms/run   share   GFLOP/s  output / name\n");
    for (i = 0; i < nnc_num_steps; ++i) {
        double ms = prof_sum[i] / (double)runs;
        double gflops = ms > 0 ? 2.0 * (double)nnc_steps[i].macs / (ms * 1e6) : 0;
        if (json)
            printf("%s{\"op\": \"%s\", \"ms\": %.6f, \"gflops\": %.3f, \"macs\": %llu}", i ? ", " : "", nnc_steps[i].op, ms, gflops, nnc_steps[i].macs);
        else
            printf("%4d  %-15s %8.4f  %5.1f%%  %8.2f  %s  %s\n", i, nnc_steps[i].op, ms, total > 0 ? 100.0 * prof_sum[i] / total : 0.0, gflops, nnc_steps[i].output, nnc_steps[i].name);
    }
    if (json) printf("], \"total_ms\": %.6f}\n", total / (double)runs);
    else printf("total %.4f ms/run over %ld runs\n", total / (double)runs, runs);
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : (x > y);
}

static void *aligned(size_t bytes) {
    void *p = NULL;
    if (posix_memalign(&p, 64, bytes ? bytes : 64) != 0) return NULL;
    memset(p, 0, bytes ? bytes : 64);
    return p;
}

static int usage(void) {
    fprintf(stderr, "usage: %s [--input [NAME=]FILE]... [--output [NAME=]FILE]... [--bench N [--profile]] [--json]\n", nnc_model_name);
    return 2;
}

/* Splits NAME=FILE. NAME is the longest prefix before an `=` that names
 * an entry of the list (names may contain `=`); a spec without a matching
 * name is a plain FILE, allowed only when the list has one entry and the
 * spec has no `=` (so a mistyped name is an error, not a file name). */
static const nnc_io *pick(const nnc_io *list, int n, const char *spec, const char **file, const char *what) {
    const nnc_io *best = NULL;
    const char *eq;
    int i;
    for (eq = strchr(spec, '='); eq; eq = strchr(eq + 1, '=')) {
        const nnc_io *io = find_io(list, n, spec, (size_t)(eq - spec));
        if (io) {
            best = io;
            *file = eq + 1;
        }
    }
    if (best) return best;
    if (n == 1 && !strchr(spec, '=')) {
        *file = spec;
        return &list[0];
    }
    if (strchr(spec, '='))
        fprintf(stderr, "error: %s `%.*s` is not one of the model's %ss:", what, (int)(strchr(spec, '=') - spec), spec, what);
    else
        fprintf(stderr, "error: %s `%s` needs a NAME= prefix; the model's %ss are:", what, spec, what);
    for (i = 0; i < n; ++i) fprintf(stderr, "%s `%s`", i ? "," : "", list[i].name);
    fprintf(stderr, "\n");
    return NULL;
}

int main(int argc, char **argv) {
    const int ni = nnc_num_inputs, no = nnc_num_outputs;
    void **ins = (void **)calloc((size_t)ni + 1, sizeof(void *));
    void **outs = (void **)calloc((size_t)no + 1, sizeof(void *));
    const char **in_files = (const char **)calloc((size_t)ni + 1, sizeof(char *));
    const char **out_files = (const char **)calloc((size_t)no + 1, sizeof(char *));
    void *arena;
    long bench = 0;
    int json = 0, profile = 0, i, rc, positional = 0;
    if (!ins || !outs || !in_files || !out_files) return 1;
    for (i = 1; i < argc; ++i) {
        const char *a = argv[i];
        if ((!strcmp(a, "--input") || !strcmp(a, "-i")) && i + 1 < argc) {
            const char *f;
            const nnc_io *io = pick(nnc_inputs, ni, argv[++i], &f, "input");
            if (!io) return 2;
            in_files[io - nnc_inputs] = f;
        } else if ((!strcmp(a, "--output") || !strcmp(a, "-o")) && i + 1 < argc) {
            const char *f;
            const nnc_io *io = pick(nnc_outputs, no, argv[++i], &f, "output");
            if (!io) return 2;
            out_files[io - nnc_outputs] = f;
        } else if (!strcmp(a, "--bench") && i + 1 < argc) {
            bench = strtol(argv[++i], NULL, 10);
            if (bench <= 0) return usage();
        } else if (!strcmp(a, "--json")) {
            json = 1;
        } else if (!strcmp(a, "--profile")) {
            profile = 1;
        } else if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage();
            return 0;
        } else if (a[0] != '-' && positional < ni) {
            in_files[positional++] = a;
        } else {
            return usage();
        }
    }
    for (i = 0; i < ni; ++i) {
        ins[i] = aligned(nnc_inputs[i].bytes);
        if (!ins[i]) return 1;
        if (!in_files[i]) {
            if (bench) continue; /* benchmarks may run on zeros */
            fprintf(stderr, "error: missing input `%s`; pass --input %s=FILE\n", nnc_inputs[i].name, nnc_inputs[i].name);
            return 2;
        }
        if (load_input(in_files[i], &nnc_inputs[i], ins[i])) return 1;
    }
    for (i = 0; i < no; ++i) {
        outs[i] = aligned(nnc_outputs[i].bytes);
        if (!outs[i]) return 1;
    }
    arena = aligned(nnc_arena_bytes);
    if (!arena) return 1;
    if (bench) {
        double *t = (double *)malloc(sizeof(double) * (size_t)bench);
        long k, warm = bench < 10 ? 1 : bench / 10, p90;
        if (!t) return 1;
        for (k = 0; k < warm; ++k) nnc_run((const void *const *)ins, outs, arena);
        for (k = 0; k < bench; ++k) {
            double t0 = now_ms();
            rc = nnc_run((const void *const *)ins, outs, arena);
            t[k] = now_ms() - t0;
            if (rc) {
                fprintf(stderr, "error: the model failed with code %d\n", rc);
                return 1;
            }
        }
        if (profile) {
            prof_sum = (double *)calloc((size_t)nnc_num_steps + 1, sizeof(double));
            if (!prof_sum) return 1;
            for (k = 0; k < bench; ++k) nnc_run((const void *const *)ins, outs, arena);
            print_profile(bench, json);
            free(prof_sum);
            prof_sum = NULL;
            free(t);
            return 0;
        }
        qsort(t, (size_t)bench, sizeof(double), cmp_double);
        p90 = (bench * 9) / 10 < bench ? (bench * 9) / 10 : bench - 1;
        if (json)
            printf("{\"median_ms\": %.6f, \"p90_ms\": %.6f, \"runs\": %ld}\n", t[bench / 2], t[p90], bench);
        else
            printf("median %.6f ms, p90 %.6f ms over %ld runs\n", t[bench / 2], t[p90], bench);
        free(t);
    } else {
        rc = nnc_run((const void *const *)ins, outs, arena);
        if (rc) {
            fprintf(stderr, "error: the model failed with code %d (an index input out of range)\n", rc);
            return 1;
        }
    }
    for (i = 0; i < no; ++i) {
        if (out_files[i]) {
            if (write_npy(out_files[i], &nnc_outputs[i], outs[i])) return 1;
        } else if (!bench) {
            summarize(&nnc_outputs[i], outs[i]);
        }
    }
    for (i = 0; i < ni; ++i) free(ins[i]);
    for (i = 0; i < no; ++i) free(outs[i]);
    free(arena);
    free(ins);
    free(outs);
    free((void *)in_files);
    free((void *)out_files);
    return 0;
}
