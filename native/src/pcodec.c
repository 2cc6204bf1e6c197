/* "planes" and "xor" payloads (layout: docs/FORMAT.md, "Plane payload").
 *
 *   [nplanes u8][flags u8] nplanes x [mode u8][size u32 LE]  then the plane bodies.
 *   rANS body: [ntables u8][tables][32 states][u16 words]; ntables is 1, or
 *   WV_NCTX when the payload has WV_PF_CTX_EXP and the plane uses contexts.
 *   PAIRS body (frame version 2): [ndict u8][dict][nesc u32][escapes] then a rANS
 *   body over two 4-bit codes per symbol.
 */
#include "pcodec.h"
#include "cast.h"
#include "mag.h"
#include "planes.h"
#include <math.h>

/* Code a plane only if rANS saves at least this fraction over storing it raw: a
 * raw plane costs nothing to decode.  FP32's low mantissa planes (7.9+ bits)
 * land just under 1%; the sign+mantissa-high plane of BF16 (7.97 bits) too. */
#define RAW_MARGIN 0.01

/* Code a plane as PAIRS (two 4-bit codes per rANS symbol: half the symbols, so about
 * half the decode time) when that costs at most this fraction more than one symbol per
 * byte.  BF16 exponent planes of MiniLM: 2.599 -> 2.603 bits per byte plus a larger
 * table (60 -> 223 bytes), +0.5% of the plane, +0.15% of the frame (0.66300 -> 0.66396;
 * F32 0.81830 -> 0.81903); one hot MiniLM BF16 frame decodes at 3.67 instead of 2.76 GB/s. */
#define PAIR_MARGIN 0.01
/* ... and when at most this share of the bytes falls outside the 15-entry dictionary:
 * escapes cost 8 bits each and take the expansion's slow path (MiniLM: 0.025%). */
#define PAIR_MAX_ESC_SHARE (1.0 / 64)

static int rotate_for(unsigned dtype)
{
    /* F16 has a 5-bit exponent, so plane 0 mixes exponent and mantissa either way;
     * rotating still pays a little: order-0 bound on the MiniLM F16 cast 0.8454
     * unrotated (ZipNN's choice), 0.8452 rotated. */
    return dtype == WV_DT_BF16 || dtype == WV_DT_F16 || dtype == WV_DT_F32 || dtype == WV_DT_F64;
}

static inline __attribute__((always_inline)) void exp_contexts_body(uint8_t *cx, const uint8_t *pred, size_t n_el,
                                                                     unsigned k, unsigned sh, unsigned mask, int bias)
{
    for (size_t i = 0; i < n_el; i++) {
        uint32_t v = k == 2 ? wv_rd16(pred + 2 * i) : wv_rd32(pred + 4 * i);
        int d = bias - (int)((v >> sh) & mask);
        d = d < 0 ? 0 : d;
        cx[i] = (uint8_t)(d > WV_NCTX - 1 ? WV_NCTX - 1 : d);
    }
}

__attribute__((target("avx2"))) static void exp_contexts_avx2(uint8_t *cx, const uint8_t *pred, size_t n_el,
                                                              unsigned k, unsigned sh, unsigned mask, int bias)
{
    if (k == 2) exp_contexts_body(cx, pred, n_el, 2, sh, mask, bias);
    else exp_contexts_body(cx, pred, n_el, 4, sh, mask, bias);
}

static void exp_contexts_sse2(uint8_t *cx, const uint8_t *pred, size_t n_el, unsigned k, unsigned sh,
                              unsigned mask, int bias)
{
    if (k == 2) exp_contexts_body(cx, pred, n_el, 2, sh, mask, bias);
    else exp_contexts_body(cx, pred, n_el, 4, sh, mask, bias);
}

/* Context of element i = how far below 1.0 the predicted magnitude is, in octaves,
 * clamped to [0, WV_NCTX).  Small weights move by more ulps under a fine-tune, so
 * their XOR planes are noisier; big ones mostly keep every bit.  Measured on the
 * MiniLM lr 1e-5 fine-tune vs its F32 base: 0.1067 order-0 -> 0.0909 with contexts. */
static void exp_contexts(uint8_t *cx, const uint8_t *pred, size_t n_el, unsigned dtype)
{
    unsigned sh = 0, mask = 0;
    int bias = 0;
    wv_exp_layout(dtype, &sh, &mask, &bias);
    (__builtin_cpu_supports("avx2") ? exp_contexts_avx2 : exp_contexts_sse2)(cx, pred, n_el, wv_dtype_size(dtype), sh,
                                                                           mask, bias);
}

size_t wv_payload_bound(size_t raw) { return WV_PAYLOAD_BOUND(raw); }

#define PHDR(k) (2 + 5 * (size_t)(k))

/* Estimated bytes of a rANS body coding hist[0..ntables) with freq[0..ntables). */
static double body_cost(uint32_t (*hist)[256], uint16_t (*freq)[256], unsigned ntables, size_t n)
{
    uint8_t tmp[WV_RANS_TABLE_MAX_BYTES];
    double bytes = 1 + 118 + n / 512.0; /* + states (~118 bytes) + renorm slack */
    for (unsigned t = 0; t < ntables; t++) {
        wv_rans_normalize(hist[t], freq[t]);
        bytes += wv_rans_cost_bits(hist[t], freq[t]) / 8 + (double)wv_rans_write_table(tmp, freq[t]);
    }
    return bytes;
}

/* Cheapest rANS coding of a plane: order 0 (*ntables = 1, tables in slot 0) or, with
 * contexts, one table per context (slots 0..WV_NCTX-1).  One histogram pass either
 * way: the order-0 counts are the sums of the context counts. */
static double plane_cost(wv_ctx *c, const uint8_t *pl, size_t n, const uint8_t *cx, unsigned *ntables)
{
    *ntables = 1;
    if (!cx) {
        memset(c->hist[0], 0, sizeof c->hist[0]);
        wv_hist(pl, n, c->hist[0]);
        return body_cost(c->hist, c->freq, 1, n);
    }
    const unsigned z = WV_NCTX; /* order-0 candidate lives in slot WV_NCTX */
    wv_hist_ctx(pl, cx, n, WV_NCTX, c->hist);
    for (unsigned s = 0; s < 256; s++) {
        uint32_t sum = 0;
        for (unsigned t = 0; t < WV_NCTX; t++) sum += c->hist[t][s];
        c->hist[z][s] = sum;
    }
    double order0 = body_cost(&c->hist[z], &c->freq[z], 1, n);
    double with_cx = body_cost(c->hist, c->freq, WV_NCTX, n);
    if (with_cx < order0) { *ntables = WV_NCTX; return with_cx; }
    memcpy(c->freq[0], c->freq[z], sizeof c->freq[0]);
    return order0;
}

/* Order-0 entropy (bits/symbol) of 16 evenly spaced 1 KiB chunks.  A small sample
 * underestimates entropy, so "sample says >= 8 * (1 - RAW_MARGIN)" safely means raw;
 * it saves the full histogram of BF16's sign+mantissa plane (~25% of encode time). */
static double sample_bits(const uint8_t *pl, size_t n)
{
    uint32_t count[256] = {0};
    size_t step = n / 16, total = 0;
    for (size_t c = 0; c < 16; c++) {
        const uint8_t *q = pl + c * step;
        for (size_t i = 0; i < 1024; i++) count[q[i]]++;
        total += 1024;
    }
    double bits = 0;
    for (int s = 0; s < 256; s++)
        if (count[s]) bits -= count[s] * log2((double)count[s] / total);
    return bits / total;
}

/* Estimated bytes of the plain planes payload of src: the order-0 entropy of each plane
 * (split as wv_payload_encode splits them) over PLANES_SAMPLE_RUNS evenly spaced runs of
 * PLANES_SAMPLE_RUN elements, or over the whole frame when it is smaller than that.
 * No tables, no rANS: ~1/16 of a frame's split and histograms. */
#define PLANES_SAMPLE_RUNS 16
#define PLANES_SAMPLE_RUN 256
size_t wv_planes_sample_size(const uint8_t *src, size_t n, unsigned dtype)
{
    unsigned k = wv_dtype_size(dtype);
    WV_RETURN_ERROR_IF(k == 0, WV_ERR_BAD_DTYPE);
    size_t n_el = n / k, step = n_el / PLANES_SAMPLE_RUNS, seen = 0;
    if (step < PLANES_SAMPLE_RUN) step = PLANES_SAMPLE_RUN;
    uint8_t buf[8][PLANES_SAMPLE_RUN], *pl[8];
    uint32_t count[8][256];
    memset(count, 0, sizeof count);
    for (unsigned p = 0; p < k; p++) pl[p] = buf[p];
    for (size_t at = 0; at < n_el; at += step) {
        size_t len = n_el - at < PLANES_SAMPLE_RUN ? n_el - at : PLANES_SAMPLE_RUN;
        wv_split(src + at * k, len, k, rotate_for(dtype), pl);
        for (unsigned p = 0; p < k; p++)
            for (size_t i = 0; i < len; i++) count[p][buf[p][i]]++;
        seen += len;
    }
    double bits = 0;
    for (unsigned p = 0; p < k; p++)
        for (int s = 0; s < 256; s++)
            if (count[p][s]) bits -= count[p][s] * log2((double)count[p][s] / (double)seen);
    return PHDR(k) + (seen ? (size_t)(bits / 8 / (double)seen * (double)n_el) : 0);
}

/* A PAIRS body (docs/FORMAT.md) if it pays against `single` estimated bytes, else 0.
 * Needs c->hist[0] = the plane's histogram; uses table slot 1. */
static size_t encode_pairs(wv_ctx *c, uint8_t *dst, const uint8_t *pl, size_t n, double single)
{
    const uint32_t *cnt = c->hist[0];
    uint8_t code[256], dict[WV_PAIR_ESC];
    unsigned nd = 0;
    size_t covered = 0;
    memset(code, WV_PAIR_ESC, sizeof code);
    while (nd < WV_PAIR_ESC) { /* the 15 most frequent bytes, ties to the smaller byte */
        int best = -1;
        for (int s = 0; s < 256; s++)
            if (cnt[s] && code[s] == WV_PAIR_ESC && (best < 0 || cnt[s] > cnt[best])) best = s;
        if (best < 0) break;
        code[best] = (uint8_t)nd;
        dict[nd++] = (uint8_t)best;
        covered += cnt[best];
    }
    size_t esc = n - covered, np = (n + 1) / 2;
    if (n < 1024 || nd < 2 || (double)esc > PAIR_MAX_ESC_SHARE * (double)n) return 0;
    /* one pass builds the symbols and writes the escapes in place (dst holds > n bytes;
     * the header and escapes take at most 20 + n / 64) */
    uint8_t *pairs = c->pairs, *e = dst + 5 + nd;
    for (size_t i = 0; 2 * i + 1 < n; i++) {
        unsigned a = code[pl[2 * i]], b = code[pl[2 * i + 1]];
        pairs[i] = (uint8_t)(a << 4 | b);
        if (a == WV_PAIR_ESC) *e++ = pl[2 * i];
        if (b == WV_PAIR_ESC) *e++ = pl[2 * i + 1];
    }
    if (n & 1) {
        pairs[np - 1] = (uint8_t)(code[pl[n - 1]] << 4);
        if (code[pl[n - 1]] == WV_PAIR_ESC) *e++ = pl[n - 1];
    }
    memset(c->hist[1], 0, sizeof c->hist[1]);
    wv_hist(pairs, np, c->hist[1]);
    double cost = body_cost(&c->hist[1], &c->freq[1], 1, np) + 5 + nd + (double)esc;
    if (cost > single * (1 + PAIR_MARGIN) || cost >= (double)n * (1 - RAW_MARGIN)) return 0;
    size_t o = 0;
    dst[o++] = (uint8_t)nd;
    memcpy(dst + o, dict, nd);
    o += nd;
    wv_wr32(dst + o, (uint32_t)esc);
    o += 4 + esc; /* the escapes are in place already */
    dst[o++] = 1;
    o += wv_rans_write_table(dst + o, c->freq[1]);
    wv_rans_build_etab(c->freq[1], c->etab[1]);
    if (o >= n) return 0;
    size_t r = wv_rans_encode(dst + o, n - o, pairs, np, NULL, &c->etab[1][0], c->stream);
    return wv_isError(r) ? 0 : o + r;
}

static size_t encode_plane(wv_ctx *c, uint8_t *dst, size_t cap, const uint8_t *pl, size_t n, const uint8_t *cx,
                           uint8_t *mode)
{
    *mode = WV_PLANE_RAW;
    if (n == 0) return 0;
    uint32_t first = pl[0];
    size_t i = 1;
    while (i < n && pl[i] == first) i++;
    if (i == n) { *mode = WV_PLANE_CONST; dst[0] = (uint8_t)first; return 1; }
    if (n >= 1u << 16 && sample_bits(pl, n) >= 8 * (1 - RAW_MARGIN)) {
        memcpy(dst, pl, n);
        return n;
    }
    unsigned nt;
    double best = plane_cost(c, pl, n, cx, &nt);
    if (!cx && cap > n) {
        size_t r = encode_pairs(c, dst, pl, n, best);
        if (r) { *mode = WV_PLANE_PAIRS; return r; }
    }
    if (best < (double)n * (1 - RAW_MARGIN) && cap > n) {
        size_t o = 1;
        dst[0] = (uint8_t)nt;
        for (unsigned t = 0; t < nt; t++) {
            o += wv_rans_write_table(dst + o, c->freq[t]);
            wv_rans_build_etab(c->freq[t], c->etab[t]);
        }
        size_t r = wv_rans_encode(dst + o, n - o, pl, n, nt > 1 ? cx : NULL, &c->etab[0][0], c->stream);
        if (!wv_isError(r)) { *mode = WV_PLANE_RANS; return o + r; }
    }
    memcpy(dst, pl, n);
    return n;
}

/* The prediction of n_el member elements: the base itself, or the base cast to dtype
 * (into c->pred). */
static size_t predict(wv_ctx *c, const uint8_t **pred, const uint8_t *base, unsigned base_dtype, unsigned dtype,
                      size_t n_el)
{
    *pred = base;
    if (base_dtype == dtype) return 0;
    *pred = c->pred;
    return wv_cast(c->pred, dtype, base, base_dtype, n_el);
}

/* Delta coding: replace *src by src XOR the prediction (the base cast to dtype), and when
 * contexts are wanted and the dtype has an exponent, point *cx at the per-element contexts
 * taken from the prediction's exponent. */
static size_t xor_against_base(wv_ctx *c, const uint8_t **src, size_t n, unsigned dtype, const uint8_t *base,
                               unsigned base_dtype, int contexts, const uint8_t **cx)
{
    size_t n_el = n / wv_dtype_size(dtype);
    const uint8_t *pred;
    WV_FORWARD_IF_ERROR(predict(c, &pred, base, base_dtype, dtype, n_el));
    wv_xor_into(c->delta, *src, pred, n);
    *src = c->delta;
    unsigned sh, mask;
    int bias;
    if (contexts && wv_exp_layout(dtype, &sh, &mask, &bias)) {
        exp_contexts(c->cx, pred, n_el, dtype);
        *cx = c->cx;
    }
    return 0;
}

size_t wv_payload_encode(wv_ctx *c, uint8_t *dst, size_t cap, const uint8_t *src, size_t n, unsigned dtype,
                         const uint8_t *base, unsigned base_dtype)
{
    unsigned k = wv_dtype_size(dtype);
    WV_RETURN_ERROR_IF(k == 0, WV_ERR_BAD_DTYPE);
    WV_RETURN_ERROR_IF(n % k, WV_ERR_BAD_SIZE);
    WV_RETURN_ERROR_IF(cap < wv_payload_bound(n), WV_ERR_DST_TOO_SMALL);
    WV_FORWARD_IF_ERROR(wv_ctx_reserve(c, n));
    size_t n_el = n / k;
    unsigned flags = rotate_for(dtype) ? WV_PF_ROT : 0;
    const uint8_t *cx = NULL;
    if (base && c->use_mag && wv_mag_supported(dtype)) {
        const uint8_t *pred;
        WV_FORWARD_IF_ERROR(predict(c, &pred, base, base_dtype, dtype, n_el));
        dst[0] = (uint8_t)k;
        dst[1] = WV_PF_MAG;
        size_t r = wv_mag_encode(c, dst + 2, cap - 2, src, pred, n_el, dtype);
        if (!wv_isError(r)) return 2 + r;
        WV_RETURN_ERROR_IF(wv_errorCode(r) != WV_ERR_NOT_COMPRESSIBLE, wv_errorCode(r));
    }
    if (base) {
        WV_FORWARD_IF_ERROR(xor_against_base(c, &src, n, dtype, base, base_dtype, c->use_contexts, &cx));
        if (cx) flags |= WV_PF_CTX_EXP;
    }
    uint8_t *pl[8];
    for (unsigned p = 0; p < k; p++) pl[p] = c->planes + p * n_el;
    wv_split(src, n_el, k, flags & WV_PF_ROT, pl);
    dst[0] = (uint8_t)k;
    dst[1] = (uint8_t)flags;
    size_t o = PHDR(k);
    for (unsigned p = 0; p < k; p++) {
        uint8_t mode;
        size_t sz = encode_plane(c, dst + o, cap - o, pl[p], n_el, cx, &mode);
        dst[2 + 5 * p] = mode;
        wv_wr32(dst + 3 + 5 * p, (uint32_t)sz);
        o += sz;
    }
    return o;
}

/* Decoding runs in three steps: parse (directory, prediction, contexts), planes
 * (rANS planes two at a time), finish (merge, xor). */
typedef struct {
    unsigned k, flags, version;
    size_t n, n_el;
    const uint8_t *pred, *cx;
    unsigned mode[8];
    const uint8_t *body[8];
    size_t size[8];
    const uint8_t *pl[8];
    /* PAIRS planes: rANS symbols in pairs[p], dictionary, escape bytes */
    uint8_t *pairs[8];
    const uint8_t *dict[8], *esc[8], *esc_end[8];
    unsigned nd[8];
} payload_view;

static size_t payload_parse(wv_ctx *c, payload_view *v, size_t n, const uint8_t *src, size_t size, unsigned dtype,
                            const uint8_t *base, unsigned base_dtype, unsigned version)
{
    v->version = version;
    unsigned k = wv_dtype_size(dtype);
    WV_RETURN_ERROR_IF(k == 0, WV_ERR_BAD_DTYPE);
    WV_RETURN_ERROR_IF(n % k, WV_ERR_BAD_SIZE);
    WV_RETURN_ERROR_IF(size < PHDR(k) || src[0] != k, WV_ERR_CORRUPT);
    v->k = k;
    v->flags = src[1];
    WV_RETURN_ERROR_IF(v->flags & ~WV_PF_KNOWN, WV_ERR_RESERVED_BITS);
    WV_RETURN_ERROR_IF((v->flags & WV_PF_CTX_EXP) && !base, WV_ERR_CORRUPT);
    WV_FORWARD_IF_ERROR(wv_ctx_reserve(c, n));
    v->n = n;
    v->n_el = n / k;
    size_t o = PHDR(k);
    for (unsigned p = 0; p < k; p++) {
        v->mode[p] = src[2 + 5 * p];
        v->size[p] = wv_rd32(src + 3 + 5 * p);
        WV_RETURN_ERROR_IF(v->size[p] > size - o, WV_ERR_CORRUPT);
        v->body[p] = src + o;
        o += v->size[p];
    }
    WV_RETURN_ERROR_IF(o != size, WV_ERR_CORRUPT);
    v->pred = v->cx = NULL;
    if (base) {
        WV_FORWARD_IF_ERROR(predict(c, &v->pred, base, base_dtype, dtype, v->n_el));
        if (v->flags & WV_PF_CTX_EXP) {
            unsigned sh, mask;
            int bias;
            WV_RETURN_ERROR_IF(!wv_exp_layout(dtype, &sh, &mask, &bias), WV_ERR_CORRUPT);
            exp_contexts(c->cx, v->pred, v->n_el, dtype);
            v->cx = c->cx;
        }
    }
    return 0;
}

/* The tables (into table slots tb..) and the stream of a rANS body coding n symbols
 * into out (into *d); returns the number of table slots used. */
static size_t rans_begin(wv_ctx *c, const payload_view *v, const uint8_t *body, size_t sz, uint8_t *out, size_t n,
                         unsigned tb, wv_rans_dec *d, unsigned *used)
{
    WV_RETURN_ERROR_IF(sz < 1, WV_ERR_CORRUPT);
    unsigned nt = body[0];
    WV_RETURN_ERROR_IF(nt != 1 && !(nt == WV_NCTX && v->cx), WV_ERR_CORRUPT);
    WV_RETURN_ERROR_IF(tb + nt > WV_RANS_MAX_TABLES, WV_ERR_CORRUPT);
    size_t t_off = 1;
    for (unsigned t = tb; t < tb + nt; t++) {
        size_t r = wv_rans_read_table(body + t_off, sz - t_off, c->freq[t]);
        WV_FORWARD_IF_ERROR(r);
        t_off += r;
        wv_rans_build_dtab(c->freq[t], c->dtab[t]);
    }
    *used = nt;
    return wv_rans_dec_init(d, out, n, body + t_off, sz - t_off, nt > 1 ? v->cx : NULL, &c->dtab[tb][0]);
}

/* Raw and constant planes, or the tables (into table slots tb..) and the stream of a
 * rANS or PAIRS plane (into *d; *is_rans = number of table slots used). */
static size_t plane_begin(wv_ctx *c, payload_view *v, unsigned p, unsigned tb, wv_rans_dec *d, unsigned *is_rans)
{
    size_t n_el = v->n_el, sz = v->size[p];
    const uint8_t *body = v->body[p];
    uint8_t *out = c->planes + p * n_el;
    *is_rans = 0;
    switch (v->mode[p]) {
    case WV_PLANE_RAW:
        WV_RETURN_ERROR_IF(sz != n_el, WV_ERR_CORRUPT);
        v->pl[p] = body;
        return 0;
    case WV_PLANE_CONST:
        WV_RETURN_ERROR_IF(sz != 1 || n_el == 0, WV_ERR_CORRUPT);
        memset(out, body[0], n_el);
        v->pl[p] = out;
        return 0;
    case WV_PLANE_RANS:
        v->pl[p] = out;
        return rans_begin(c, v, body, sz, out, n_el, tb, d, is_rans);
    case WV_PLANE_PAIRS: {
        WV_RETURN_ERROR_IF(v->version < 2 || sz < 1, WV_ERR_CORRUPT);
        unsigned nd = body[0];
        WV_RETURN_ERROR_IF(nd == 0 || nd > WV_PAIR_ESC || sz < 5 + (size_t)nd, WV_ERR_CORRUPT);
        size_t esc = wv_rd32(body + 1 + nd), o = 5 + (size_t)nd;
        WV_RETURN_ERROR_IF(esc > n_el || esc > sz - o, WV_ERR_CORRUPT);
        v->nd[p] = nd;
        v->dict[p] = body + 1;
        v->esc[p] = body + o;
        v->esc_end[p] = body + o + esc;
        o += esc;
        v->pairs[p] = c->pairs + p * ((n_el + 1) / 2);
        v->pl[p] = out;
        WV_FORWARD_IF_ERROR(rans_begin(c, v, body + o, sz - o, v->pairs[p], (n_el + 1) / 2, tb, d, is_rans));
        WV_RETURN_ERROR_IF(*is_rans != 1, WV_ERR_CORRUPT);
        return 0;
    }
    default:
        return WV_ERROR(WV_ERR_CORRUPT);
    }
}

/* Merge (and xor) elements from..n_el; earlier ones were written by the fused path. */
static void payload_finish(const payload_view *v, uint8_t *dst, size_t from)
{
    const uint8_t *pl[8];
    for (unsigned p = 0; p < v->k; p++) pl[p] = v->pl[p] + from;
    size_t off = from * v->k;
    wv_merge(dst + off, v->n_el - from, v->k, v->flags & WV_PF_ROT, pl);
    if (v->pred) wv_xor_into(dst + off, dst + off, v->pred + off, v->n - off);
}

/* A distance payload: [Plane_Count][Plane_Flags == MAG] then the body of mag.h. */
static size_t mag_payload_decode(wv_ctx *c, uint8_t *dst, size_t n, const uint8_t *src, size_t size, unsigned dtype,
                                 const uint8_t *base, unsigned base_dtype, unsigned version)
{
    unsigned k = wv_dtype_size(dtype);
    WV_RETURN_ERROR_IF(version < 3 || !base || !wv_mag_supported(dtype), WV_ERR_CORRUPT);
    WV_RETURN_ERROR_IF(src[0] != k || src[1] != WV_PF_MAG, src[1] & ~WV_PF_KNOWN ? WV_ERR_RESERVED_BITS : WV_ERR_CORRUPT);
    WV_RETURN_ERROR_IF(n % k, WV_ERR_BAD_SIZE);
    WV_FORWARD_IF_ERROR(wv_ctx_reserve(c, n));
    /* A cast prediction goes straight into dst and is rebuilt in place: an unchanged frame
     * (every frame of a pure cast) then costs the cast alone, not the cast and a copy.
     * MB per CPU-second of the MiniLM BF16 cast against the FP32 base 5269 -> 7522, frozen
     * BF16 fine-tune 3315 -> 3989 (the same frames through both builds, best of 15). */
    const uint8_t *pred = base;
    if (base_dtype != dtype) {
        WV_FORWARD_IF_ERROR(wv_cast(dst, dtype, base, base_dtype, n / k));
        pred = dst;
    }
    WV_FORWARD_IF_ERROR(wv_mag_decode(c, dst, src + 2, size - 2, pred, n / k, dtype, version));
    return n;
}

size_t wv_payload_decode(wv_ctx *c, uint8_t *dst, size_t n, const uint8_t *src, size_t size, unsigned dtype,
                         const uint8_t *base, unsigned base_dtype, unsigned frame_version)
{
    if (size >= 2 && (src[1] & WV_PF_MAG)) return mag_payload_decode(c, dst, n, src, size, dtype, base, base_dtype,
                                                                       frame_version);
    payload_view v = {0};
    WV_FORWARD_IF_ERROR(payload_parse(c, &v, n, src, size, dtype, base, base_dtype, frame_version));
    /* rANS planes of one frame decode two at a time (xor: both planes; F32: 3 planes) */
    wv_rans_dec d[2];
    unsigned pending = 0, slots = 0, last = 0; /* last: the plane of a pending stream */
    for (unsigned p = 0; p < v.k; p++) {
        unsigned used;
        WV_FORWARD_IF_ERROR(plane_begin(c, &v, p, slots, &d[pending], &used));
        if (!used) continue;
        if (pending) {
            WV_FORWARD_IF_ERROR(wv_rans_dec_pair(&d[0], &d[1]));
            pending = slots = 0;
        } else {
            pending = 1;
            slots = used;
            last = p;
        }
    }
    size_t done = 0; /* elements already in dst */
    const uint8_t *esc0 = v.esc[0];
    if (pending) {
        /* plain BF16/F16/F32 whose only coded plane is plane 0 (the others raw or constant,
         * so in place already): it decodes straight into dst (AVX-512 only) */
        int fuse = last == 0 && !v.pred;
        int rot = v.flags & WV_PF_ROT;
        if (fuse && v.mode[0] == WV_PLANE_RANS) done = wv_rans_dec_merge(&d[0], dst, v.k, v.pl + 1, rot);
        if (fuse && v.mode[0] == WV_PLANE_PAIRS) {
            size_t pairs = wv_rans_dec_merge_pairs(&d[0], dst, v.k, v.pl + 1, rot, v.dict[0], v.nd[0], &esc0,
                                                   v.esc_end[0]);
            WV_FORWARD_IF_ERROR(pairs);
            done = 2 * pairs;
        }
        WV_FORWARD_IF_ERROR(wv_rans_dec_finish(&d[0]));
    }
    for (unsigned p = 0; p < v.k; p++) {
        if (v.mode[p] != WV_PLANE_PAIRS) continue;
        const uint8_t *e = p ? v.esc[p] : esc0;
        size_t from = p ? 0 : done; /* plane 0: from where the fused path stopped */
        WV_FORWARD_IF_ERROR(wv_pairs_expand(c->planes + p * v.n_el + from, v.n_el - from, v.pairs[p] + from / 2,
                                            v.dict[p], v.nd[p], &e, v.esc_end[p], 0));
        WV_RETURN_ERROR_IF(e != v.esc_end[p], WV_ERR_CORRUPT); /* every escape byte used */
    }
    payload_finish(&v, dst, done);
    return n;
}

size_t wv_payload_estimate(wv_ctx *c, const uint8_t *src, size_t n, unsigned dtype, const uint8_t *base,
                           unsigned base_dtype)
{
    /* Same choices as wv_payload_encode, without running the coder. */
    unsigned k = wv_dtype_size(dtype);
    WV_RETURN_ERROR_IF(k == 0, WV_ERR_BAD_DTYPE);
    WV_RETURN_ERROR_IF(n % k, WV_ERR_BAD_SIZE);
    WV_FORWARD_IF_ERROR(wv_ctx_reserve(c, n));
    size_t n_el = n / k;
    const uint8_t *cx = NULL;
    if (base && c->use_mag && wv_mag_supported(dtype)) {
        const uint8_t *pred;
        WV_FORWARD_IF_ERROR(predict(c, &pred, base, base_dtype, dtype, n_el));
        return 2 + wv_mag_estimate(c, src, pred, n_el, dtype);
    }
    if (base) WV_FORWARD_IF_ERROR(xor_against_base(c, &src, n, dtype, base, base_dtype, 1, &cx));
    uint8_t *pl[8];
    for (unsigned p = 0; p < k; p++) pl[p] = c->planes + p * n_el;
    wv_split(src, n_el, k, rotate_for(dtype), pl);
    double total = (double)PHDR(k);
    for (unsigned p = 0; p < k && n_el; p++) {
        unsigned nt;
        double best = plane_cost(c, pl[p], n_el, cx, &nt);
        total += best < (double)n_el * (1 - RAW_MARGIN) ? best : (double)n_el;
    }
    return (size_t)total;
}
