/* Decoder fuzz target and sanitizer test driver for native/src.
 *
 * Property: no input makes the decoder crash, hang, or touch memory outside the
 * buffers it was given; a frame that decodes returns exactly raw_size bytes.
 *
 * The input's first byte picks a mode:
 *   even: the rest is a whole frame, decoded as is (header, CRCs, payload);
 *   odd:  byte 1 = dtype, byte 2 = codec, byte 3 = base dtype, bytes 4-5 = element
 *         count, rest = a payload; a header with a correct payload CRC is put in
 *         front, so mutated payloads reach the plane and rANS decoders instead of
 *         stopping at the checksum.  Bit 1 of byte 0 set: a version 1 header (no PAIRS
 *         planes, no distance payloads), else the current version.
 *
 * libFuzzer:   clang -O1 -g -fsanitize=fuzzer,address,undefined -Inative/src \
 *                native/src/*.c tests/fuzz/fuzz_decode.c -lm -o fuzz_decode
 * Standalone (what tests/test_native_sanitizers.py builds with gcc):
 *              gcc -DWV_STANDALONE -fsanitize=address,undefined ... -o driver && ./driver ITER
 *   checks each F32 -> BF16 / F16 cast kernel against the baseline one (also under FTZ/DAZ),
 *   round-trips generated tensors through every codec, dtype and rANS, rebuild and cast kernel (distance
 *   payloads: by the encoder's rule with the scalar kernels, all in mode SPARSE with the
 *   others), then feeds ITER mutations of the valid frames through the target.
 */
#include "wv.h"
#include <stdio.h>
#include <stdlib.h>
#include <xmmintrin.h>

static wv_ctx *ctx;

static void decode_one(const uint8_t *frame, size_t size)
{
    wv_frame_header h;
    if (wv_isError(wv_frame_parse(frame, size, &h))) {
        (void)wv_decode_frame(ctx, frame, size, NULL, 0, NULL, 0, 0); /* must fail cleanly too */
        return;
    }
    uint8_t *dst = malloc(h.raw_size ? h.raw_size : 1), *base = NULL;
    size_t blen = 0;
    if ((h.flags & WV_FLAG_NEEDS_BASE) && wv_dtype_size(h.base_dtype)) {
        blen = h.raw_size / wv_dtype_size(h.dtype) * wv_dtype_size(h.base_dtype);
        base = malloc(blen ? blen : 1);
        for (size_t i = 0; i < blen; i++) base[i] = (uint8_t)(i * 131 + 7);
    }
    size_t r = wv_decode_frame(ctx, frame, size, dst, h.raw_size, base, blen, 0);
    if (!wv_isError(r) && r != h.raw_size) abort();
    if (base && h.dtype != h.base_dtype && wv_dtype_size(h.dtype)) { /* a base given already cast */
        size_t clen = h.raw_size / wv_dtype_size(h.dtype) * wv_dtype_size(h.dtype);
        size_t rc = wv_decode_frame(ctx, frame, size, dst, h.raw_size, base, clen <= blen ? clen : blen, h.dtype);
        if (!wv_isError(rc) && rc != h.raw_size) abort();
    }
    /* the same frame through the batch decoder */
    uint64_t off = 0, failed;
    size_t r2 = wv_decode_many(ctx, frame, &off, 1, size, dst, h.raw_size, 0, base, blen, 0, &failed);
    if (wv_isError(r) != wv_isError(r2)) abort();
    free(dst);
    free(base);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!ctx) ctx = wv_ctx_create();
    if (size < 1) return 0;
    if (!(data[0] & 1)) { decode_one(data + 1, size - 1); return 0; }
    if (size < 6) return 0;
    unsigned dtype = data[1] % WV_DT_COUNT, codec = data[2] % 4, bdt = data[3] % WV_DT_COUNT;
    size_t n_el = (size_t)data[4] | (size_t)data[5] << 8, plen = size - 6;
    uint8_t *frame = malloc(WV_FRAME_HEADER_SIZE + plen);
    memcpy(frame + WV_FRAME_HEADER_SIZE, data + 6, plen);
    wv_frame_header h = {codec, dtype, codec == 3 ? WV_FLAG_NEEDS_BASE : 0, codec == 3 ? bdt : 0,
                         (uint32_t)(n_el * wv_dtype_size(dtype)), (uint32_t)plen, 0,
                         wv_crc32c(0, data + 6, plen), WV_FRAME_VERSION};
    wv_frame_write_header(frame, &h);
    if (data[0] & 2) { /* frame version 1: same payloads minus PAIRS planes */
        frame[3] = 1;
        wv_wr32(frame + 28, wv_crc32c(0, frame, 28));
    }
    decode_one(frame, WV_FRAME_HEADER_SIZE + plen);
    free(frame);
    return 0;
}

#ifdef WV_STANDALONE
static uint64_t rng = 0x9e3779b97f4a7c15ull;
static uint32_t rnd(void)
{
    rng ^= rng << 13; rng ^= rng >> 7; rng ^= rng << 17;
    return (uint32_t)rng;
}

/* weights-like values: a float32 with a narrow exponent range, some specials */
static uint32_t weight_bits(void)
{
    uint32_t r = rnd(), e = 118 + r % 9;
    uint32_t v = (r & 0x80000000u) | e << 23 | (rnd() & 0x7fffff);
    switch (rnd() % 64) {
    case 0: return 0x7fc00001u;          /* NaN with payload */
    case 1: return 0xff800000u;          /* -inf */
    case 2: return 0x00000003u;          /* subnormal */
    case 3: return 0x80000000u;          /* -0 */
    default: return v;
    }
}

/* kind 0: random bytes, 1: a constant, 2: weights, 3: weights (and, as a member, its base's
 * cast with one element in 40 moved, one in 2 with the SIMD kernels: main()) */
static void fill(uint8_t *p, size_t n, unsigned dtype, int kind)
{
    unsigned k = wv_dtype_size(dtype);
    for (size_t i = 0; i + k <= n; i += k) {
        uint32_t w = kind == 0 ? rnd() : kind == 1 ? 0x3c003c00u : weight_bits();
        if (k == 2 && kind >= 2) w >>= 16;
        for (unsigned b = 0; b < k; b++) p[i + b] = (uint8_t)(b < 4 ? w >> (8 * b) : rnd());
    }
}

static int failures;
#define CHECK(c, ...) do { if (!(c)) { fprintf(stderr, __VA_ARGS__); fputc('\n', stderr); failures++; } } while (0)

/* Each F32 -> BF16 and F32 -> F16 kernel against the baseline one over every F32 high half
 * with low halves at and around the rounding points (NaNs, infs, denormals, -0 among them),
 * from unaligned addresses, every tail length. */
static void check_cast_kernels(void)
{
    static const uint32_t lows[] = {0, 1, 0x0fff, 0x1000, 0x3000, 0x7fff, 0x8000, 0x8001, 0xffff};
    enum { L = sizeof lows / sizeof *lows, N = L << 16 };
    uint8_t *src = malloc(4 * N + 3), *want = malloc(2 * N + 1), *got = malloc(2 * N + 1);
    for (uint32_t i = 0; i < N; i++) {
        uint32_t w = (i / L) << 16 | lows[i % L];
        memcpy(src + 3 + 4 * i, &w, 4);
    }
    for (int kernel = 1; kernel <= 2; kernel++)
        for (unsigned dt = WV_DT_F16; dt <= WV_DT_BF16 && wv_cast_select_kernel(kernel) >= 0; dt++)
            for (size_t n = 0; n <= 100; n++) {
                size_t len = n == 100 ? N : n; /* the whole set, else short runs from its start */
                wv_cast_select_kernel(0);
                wv_cast(want + 1, dt, src + 3, WV_DT_F32, len);
                wv_cast_select_kernel(kernel);
                wv_cast(got + 1, dt, src + 3, WV_DT_F32, len);
                CHECK(!memcmp(want + 1, got + 1, 2 * len), "F32 -> dtype %u kernel %d, %zu elements", dt, kernel, len);
            }
    wv_cast_select_kernel(-1);
    free(src); free(want); free(got);
}

int main(int argc, char **argv)
{
    check_cast_kernels();
    unsigned csr = _mm_getcsr();
    _mm_setcsr(csr | 0x8040); /* again with FTZ and DAZ, as torch.set_flush_denormal(True) leaves them */
    check_cast_kernels();
    _mm_setcsr(csr);
    long iters = argc > 1 ? atol(argv[1]) : 20000;
    ctx = wv_ctx_create();
    static const unsigned dtypes[] = {WV_DT_OPAQUE, WV_DT_F32, WV_DT_F16, WV_DT_BF16, WV_DT_F8_E4M3, WV_DT_I64};
    static const size_t sizes[] = {0, 1, 8, 96, 1000, 4096, 8194, 70000, 262144}; /* 8194: odd BF16 count */
    size_t sparse = 0; /* frames in mode SPARSE: docs/FORMAT.md, "Distance payload" */
    uint8_t **frames = calloc(1024, sizeof *frames);
    size_t *fsizes = calloc(1024, sizeof *fsizes), nframes = 0;
    for (int kernel = 0; kernel <= 2; kernel++) {
        if (wv_rans_select_kernel(kernel) < 0) continue;
        if (wv_mag_select_kernel(kernel) < 0) wv_mag_select_kernel(kernel ? 1 : 0); /* scalar with scalar rANS */
        if (wv_cast_select_kernel(kernel) < 0) wv_cast_select_kernel(kernel ? 1 : 0);
        wv_ctx_set_sparse(ctx, kernel ? 2 : 1); /* after the scalar pass: mode SPARSE for every distance payload */
        for (size_t di = 0; di < sizeof dtypes / sizeof *dtypes; di++)
            for (size_t si = 0; si < sizeof sizes / sizeof *sizes; si++)
                for (int kind = 0; kind < 4; kind++)
                    for (unsigned codec = 0; codec <= 3; codec++) {
                        unsigned dt = dtypes[di], k = wv_dtype_size(dt);
                        if (codec == 1) continue; /* zstd is coded in Python */
                        size_t n = sizes[si] / k * k;
                        uint8_t *src = malloc(n + 1), *base = NULL;
                        fill(src, n, dt, kind);
                        unsigned bdt = dt == WV_DT_BF16 || dt == WV_DT_F16 ? WV_DT_F32 : dt;
                        size_t blen = n / k * wv_dtype_size(bdt);
                        if (codec == 3) {
                            base = malloc(blen + 1);
                            fill(base, blen, bdt, kind);
                            for (size_t i = 0; i < n && kind; i += 7) base[i / k * wv_dtype_size(bdt)] ^= 1;
                            if (kind == 3 && bdt != dt) wv_cast(src, dt, base, bdt, n / k);
                            if (kind == 3 && bdt == dt) memcpy(src, base, n);
                            for (size_t i = 0; i < n && kind == 3; i += (kernel ? 2 : 40) * k) src[i] ^= (uint8_t)(1 + rnd() % 255);
                        }
                        size_t cap = wv_frame_bound(n);
                        uint8_t *dst = malloc(cap), *back = malloc(n + 1);
                        size_t r = wv_encode_frame(ctx, codec, dst, cap, src, n, dt, base, blen, bdt);
                        CHECK(!wv_isError(r), "encode dt=%u n=%zu codec=%u: %s", dt, n, codec, wv_getErrorName(r));
                        if (!wv_isError(r)) {
                            size_t d = wv_decode_frame(ctx, dst, r, back, n, base, blen, 0);
                            CHECK(d == n && !memcmp(back, src, n), "round trip dt=%u n=%zu codec=%u kind=%d k=%d: %s",
                                  dt, n, codec, kind, kernel, wv_isError(d) ? wv_getErrorName(d) : "mismatch");
                            if (base && bdt != dt) { /* the same frame given its base already cast to dt */
                                uint8_t *cast = malloc(n + 1);
                                wv_cast(cast, dt, base, bdt, n / k);
                                d = wv_decode_frame(ctx, dst, r, back, n, cast, n, dt);
                                CHECK(d == n && !memcmp(back, src, n), "pre-cast base dt=%u n=%zu kind=%d k=%d: %s",
                                      dt, n, kind, kernel, wv_isError(d) ? wv_getErrorName(d) : "mismatch");
                                free(cast);
                            }
                            const uint8_t *pay = dst + WV_FRAME_HEADER_SIZE;
                            sparse += dst[4] == 3 && r > WV_FRAME_HEADER_SIZE + 2 && pay[1] == 4 && pay[2] == 3;
                            if (nframes < 1024 && n) {
                                frames[nframes] = malloc(r);
                                memcpy(frames[nframes], dst, r);
                                fsizes[nframes++] = r;
                            }
                        }
                        free(src); free(base); free(dst); free(back);
                    }
    }
    CHECK(sparse > 0, "no frame in mode SPARSE");
    /* mutations: bit flips, byte sets, truncations, in both modes */
    uint8_t *buf = malloc(300000 + 8);
    for (long it = 0; it < iters && nframes; it++) {
        size_t f = rnd() % nframes, size = fsizes[f];
        if (wv_rans_select_kernel((int)(it % 3)) < 0) wv_rans_select_kernel(0);
        if (wv_mag_select_kernel((int)(it / 3 % 3)) < 0) wv_mag_select_kernel(0);
        if (wv_cast_select_kernel((int)(it / 9 % 3)) < 0) wv_cast_select_kernel(0);
        int payload_mode = rnd() & 1;
        buf[0] = payload_mode ? (uint8_t)(1 | (rnd() & 2)) : 0;
        size_t o = 1;
        if (payload_mode) {
            const uint8_t *fr = frames[f];
            uint32_t raw = wv_rd32(fr + 8);
            size_t k = wv_dtype_size(fr[5]), n_el = raw / (k ? k : 1);
            if (n_el > 0xffff) continue;
            buf[1] = fr[5]; buf[2] = fr[4]; buf[3] = fr[7];
            buf[4] = (uint8_t)n_el; buf[5] = (uint8_t)(n_el >> 8);
            o = 6;
            size -= WV_FRAME_HEADER_SIZE;
            memcpy(buf + o, fr + WV_FRAME_HEADER_SIZE, size);
        } else {
            memcpy(buf + o, frames[f], size);
        }
        size_t total = o + size, muts = 1 + rnd() % 4;
        for (size_t m = 0; m < muts && total > o; m++) {
            size_t at = o + rnd() % (total - o);
            switch (rnd() % 4) {
            case 0: buf[at] ^= (uint8_t)(1u << (rnd() % 8)); break;
            case 1: buf[at] = (uint8_t)rnd(); break;
            case 2: total = at; break;
            default: buf[at] = (uint8_t)(buf[at] + 1); break;
            }
        }
        LLVMFuzzerTestOneInput(buf, total);
    }
    free(buf);
    for (size_t f = 0; f < nframes; f++) free(frames[f]);
    free(frames); free(fsizes);
    wv_ctx_free(ctx);
    printf("%s: %zu valid frames (%zu in mode SPARSE), %ld mutations\n", failures ? "FAIL" : "ok", nframes, sparse,
           iters);
    return failures ? 1 : 0;
}
#endif
