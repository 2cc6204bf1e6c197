/* Per-thread coding context (ctx.c): scratch buffers and rANS tables reused across
 * frames so the hot path never allocates (grown only when a larger frame arrives). */
#ifndef WV_CTX_H
#define WV_CTX_H
#include "rans.h"

/* Largest plane payload (pcodec.c) for raw bytes: a second one fits in ctx->alt. */
#define WV_PAYLOAD_BOUND(raw) ((raw) + 2 + 5 * 8 + 64)

typedef struct wv_ctx wv_ctx;
#ifndef WV_CDEF /* opaque to Python (native/build_native.py) */
struct wv_ctx {
    size_t cap;                 /* raw bytes the scratch buffers hold */
    int use_contexts;           /* xor: allow base-exponent contexts (bench/ compares) */
    int use_mag;                /* xor of F32/BF16/F16: code distances (mag.c), else XOR planes (bench/ compares) */
    int use_sparse;             /* distances: 0 never mode SPARSE, 1 by mag.c's rule, 2 whenever it fits (tests, bench/) */
    uint8_t *planes, *delta, *pred, *cx, *stream, *alt, *pairs;
    uint32_t hist[WV_RANS_MAX_TABLES][256];
    uint16_t freq[WV_RANS_MAX_TABLES][256];
    wv_rans_esym etab[WV_RANS_MAX_TABLES][256];
    uint32_t dtab[WV_RANS_MAX_TABLES][WV_RANS_M];
};
#endif

wv_ctx *wv_ctx_create(void);
void wv_ctx_set_contexts(wv_ctx *ctx, int on);
void wv_ctx_set_mag(wv_ctx *ctx, int on);
void wv_ctx_set_sparse(wv_ctx *ctx, int mode); /* use_sparse: 0, 1 (the default) or 2 */
void wv_ctx_free(wv_ctx *ctx);
size_t wv_ctx_reserve(wv_ctx *ctx, size_t raw_size);
#endif
