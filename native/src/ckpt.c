/* Checkpoint-delta coder: each float of a frame is predicted by the same
 * element of the previous checkpoint (the base) and the residual is coded with
 * an adaptive binary range coder whose contexts come from that prediction.
 *
 * Per element (W = 32 or 16 bits, E exponent bits, M mantissa bits):
 *   flip  = sign(cur) ^ sign(pred)            1 bit,  context: pred exponent
 *   a     = |cur| XOR |pred|       (mode XOR) or
 *           ||cur| - |pred||, neg  (mode MAG) on the W-1 bit magnitudes
 *   nb    = bit length of a (0..W-1)          binary tree, context: pred exponent, flip
 *   neg   (MAG, nb > 0)                       context: nb, flip
 *   the TOP_BITS bits under a's leading one   binary tree, context: nb
 *   the remaining nb-1-TOP_BITS bits          raw, in a separate bit stream
 * The sign is split off first because Adam's first moment flips sign for ~45%
 * of elements between checkpoints 50 steps apart, yet its magnitude stays close
 * to the prediction's: coding |cur| against |pred| after a flip bit left 0.828
 * of exp_avg versus 0.867 for a signed integer difference and 0.860 for a plain
 * XOR (empirical conditional entropies, make_checkpoints.py default run,
 * checkpoints 50 -> 100).  On weights MAG beats XOR (0.742 vs 0.756): a change
 * that crosses a power of two flips many XOR bits but few difference bits.
 * Bits far below the leading one are uniform (an update's low bits are noise),
 * so they bypass the coder: that keeps decode fast and costs nothing.
 *
 * Payload: mode (1 byte) | raw_len (u32 LE) | raw bit stream | range-coder bytes.
 * Models are reset per frame, so every frame decodes on its own.
 */
#include "ckpt.h"

/* 12-bit probabilities, adaptation rate 1/32 (LZMA's choice; measured below). */
#define PROB_BITS 12
#define PROB_ONE (1u << PROB_BITS)
#define ADAPT 5
/* Bits under the leading one coded with a model; the rest are raw.  On FP32
 * weights each modeled level saved ~0.15 bit/element for the first three. */
#define TOP_BITS 3
#define TOP_NODES (1u << TOP_BITS)
#define RC_TOP (1u << 24)
#define HDR 5

typedef uint16_t prob;

typedef struct {
    prob flip[256];
    prob nb[512][32];        /* [pred exponent * 2 + flip][tree node] */
    prob neg[2][32];         /* [flip][nb] */
    prob top[32][TOP_NODES]; /* [nb][tree node] */
} models;

typedef struct {
    unsigned width;    /* 32 or 16 */
    unsigned mant;     /* mantissa bits */
    unsigned levels;   /* levels of the nb tree: log2(width) */
} fmt;

static int get_fmt(unsigned dtype, fmt *f)
{
    switch (dtype) {
    case WV_DT_F32: f->width = 32; f->mant = 23; f->levels = 5; return 1;
    case WV_DT_BF16: f->width = 16; f->mant = 7; f->levels = 4; return 1;
    case WV_DT_F16: f->width = 16; f->mant = 10; f->levels = 4; return 1;
    default: return 0;
    }
}

static void models_init(models *m)
{
    prob *p = (prob *)m;
    size_t k = sizeof *m / sizeof(prob);
    for (size_t i = 0; i < k; i++) p[i] = PROB_ONE / 2;
}

static inline unsigned bitlen32(uint32_t a) { return a ? 32u - (unsigned)__builtin_clz(a) : 0u; }

/* ---------------- range encoder (carry propagated through a cached byte) ---------------- */
typedef struct {
    uint64_t low;
    uint32_t range;
    uint8_t cache;
    uint64_t pending;   /* bytes waiting for a possible carry: cache + 0xFF run */
    uint8_t *out, *end;
    int overflow;
} rc_enc;

static void rce_init(rc_enc *e, uint8_t *out, uint8_t *end)
{
    e->low = 0; e->range = 0xFFFFFFFFu; e->cache = 0; e->pending = 1;
    e->out = out; e->end = end; e->overflow = 0;
}

static inline void rce_put(rc_enc *e, uint8_t b)
{
    if (e->out < e->end) *e->out++ = b;
    else e->overflow = 1;
}

static void rce_shift(rc_enc *e)
{
    if ((uint32_t)e->low < 0xFF000000u || (e->low >> 32) != 0) {
        uint8_t carry = (uint8_t)(e->low >> 32);
        uint8_t b = e->cache;
        do { rce_put(e, (uint8_t)(b + carry)); b = 0xFF; } while (--e->pending != 0);
        e->cache = (uint8_t)(e->low >> 24);
    }
    e->pending++;
    e->low = (e->low & 0x00FFFFFFu) << 8;
}

static inline void rce_bit(rc_enc *e, prob *p, unsigned bit)
{
    uint32_t bound = (e->range >> PROB_BITS) * *p;
    if (!bit) { e->range = bound; *p += (PROB_ONE - *p) >> ADAPT; }
    else { e->low += bound; e->range -= bound; *p -= *p >> ADAPT; }
    while (e->range < RC_TOP) { e->range <<= 8; rce_shift(e); }
}

static void rce_flush(rc_enc *e)
{
    for (int i = 0; i < 5; i++) rce_shift(e);
}

/* ---------------- range decoder: reads past the end as zeros, counted ---------------- */
typedef struct {
    uint32_t range, code;
    const uint8_t *in, *end;
    size_t over;
} rc_dec;

static inline uint8_t rcd_byte(rc_dec *d)
{
    if (d->in < d->end) return *d->in++;
    d->over++;
    return 0;
}

static void rcd_init(rc_dec *d, const uint8_t *in, const uint8_t *end)
{
    d->in = in; d->end = end; d->over = 0; d->range = 0xFFFFFFFFu; d->code = 0;
    for (int i = 0; i < 5; i++) d->code = (d->code << 8) | rcd_byte(d);
}

static inline unsigned rcd_bit(rc_dec *d, prob *p)
{
    uint32_t bound = (d->range >> PROB_BITS) * *p;
    unsigned bit;
    if (d->code < bound) { d->range = bound; *p += (PROB_ONE - *p) >> ADAPT; bit = 0; }
    else { d->code -= bound; d->range -= bound; *p -= *p >> ADAPT; bit = 1; }
    if (d->range < RC_TOP) { d->range <<= 8; d->code = (d->code << 8) | rcd_byte(d); }
    return bit;
}

/* ---------------- raw bit stream, LSB first ---------------- */
typedef struct {
    uint64_t acc;
    unsigned cnt;
    uint8_t *out, *end;
    int overflow;
} bit_w;

static inline void bw_put(bit_w *w, uint32_t v, unsigned n)   /* n <= 31 */
{
    w->acc |= (uint64_t)v << w->cnt;
    w->cnt += n;
    if (w->cnt >= 32) {
        if (w->end - w->out >= 4) { wv_wr32(w->out, (uint32_t)w->acc); w->out += 4; }
        else w->overflow = 1;
        w->acc >>= 32;
        w->cnt -= 32;
    }
}

static void bw_flush(bit_w *w)
{
    while (w->cnt > 0) {
        if (w->out < w->end) *w->out++ = (uint8_t)w->acc;
        else w->overflow = 1;
        w->acc >>= 8;
        w->cnt = w->cnt > 8 ? w->cnt - 8 : 0;
    }
}

typedef struct {
    uint64_t buf;
    unsigned cnt;
    const uint8_t *in, *end;
    size_t over;
} bit_r;

static inline void br_refill(bit_r *r)
{
    if (r->end - r->in >= 8) {
        uint64_t v;
        memcpy(&v, r->in, 8);
        r->buf |= v << r->cnt;
        unsigned take = (63u - r->cnt) >> 3;
        r->in += take;
        r->cnt += take * 8;
    } else {
        while (r->cnt <= 56) {
            uint64_t b = 0;
            if (r->in < r->end) b = *r->in++;
            else r->over++;
            r->buf |= b << r->cnt;
            r->cnt += 8;
        }
    }
}

static inline uint32_t br_get(bit_r *r, unsigned n)   /* n <= 31 */
{
    if (r->cnt < n) br_refill(r);
    uint32_t v = (uint32_t)(r->buf & ((1ull << n) - 1));
    r->buf >>= n;
    r->cnt -= n;
    return v;
}

/* ---------------- element access ---------------- */
static inline uint32_t load_el(const uint8_t *p, size_t i, unsigned width)
{
    return width == 32 ? wv_rd32(p + 4 * i) : wv_rd16(p + 2 * i);
}

static inline void store_el(uint8_t *p, size_t i, unsigned width, uint32_t v)
{
    if (width == 32) wv_wr32(p + 4 * i, v);
    else wv_wr16(p + 2 * i, (uint16_t)v);
}

size_t wv_ckpt_bound(size_t n) { return HDR + n + n / 2 + 64; }

/* Cheap mode choice: the raw bits dominate the size, so the mode whose
 * residuals have the smaller total bit length wins (on sampled elements). */
static unsigned choose_mode(const uint8_t *src, const uint8_t *base, size_t count, const fmt *f)
{
    uint32_t mmask = (f->width == 32) ? 0x7FFFFFFFu : 0x7FFFu;
    uint64_t sx = 0, sm = 0;
    size_t step = count > 8192 ? count / 8192 : 1;
    for (size_t i = 0; i < count; i += step) {
        uint32_t c = load_el(src, i, f->width) & mmask, p = load_el(base, i, f->width) & mmask;
        sx += bitlen32(c ^ p);
        sm += bitlen32(c >= p ? c - p : p - c) + 1;   /* +1: the neg bit MAG codes */
    }
    return sm <= sx ? WV_CKPT_MAG : WV_CKPT_XOR;
}

size_t wv_ckpt_encode(uint8_t *dst, size_t cap, const uint8_t *src, const uint8_t *base, size_t n,
                      unsigned dtype, unsigned mode)
{
    fmt f;
    WV_RETURN_ERROR_IF(!get_fmt(dtype, &f), WV_ERR_BAD_DTYPE);
    size_t k = f.width / 8;
    WV_RETURN_ERROR_IF(n % k || n > WV_MAX_RAW, WV_ERR_BAD_SIZE);
    WV_RETURN_ERROR_IF(cap < HDR + n + 16, WV_ERR_DST_TOO_SMALL);
    size_t count = n / k;
    if (mode == WV_CKPT_AUTO) mode = choose_mode(src, base, count, &f);
    WV_RETURN_ERROR_IF(mode != WV_CKPT_XOR && mode != WV_CKPT_MAG, WV_ERR_GENERIC);

    models m;
    models_init(&m);
    /* Raw bits take at most width-2 bits per element (< n bytes), so they go
     * at HDR and the coder's bytes after HDR + n; the coder's part moves down
     * at the end. */
    bit_w bw = {0, 0, dst + HDR, dst + HDR + n, 0};
    rc_enc rc;
    rce_init(&rc, dst + HDR + n, dst + cap);

    const unsigned W = f.width, L = f.levels, sh = W - 1, M = f.mant;
    const uint32_t mmask = (1u << sh) - 1;
    const int is_mag = mode == WV_CKPT_MAG;
    for (size_t i = 0; i < count; i++) {
        uint32_t c = load_el(src, i, W), p = load_el(base, i, W);
        unsigned flip = (c ^ p) >> sh;
        uint32_t mc = c & mmask, mp = p & mmask;
        unsigned pe = mp >> M;
        rce_bit(&rc, &m.flip[pe], flip);
        uint32_t a;
        unsigned neg = 0;
        if (is_mag) { neg = mc < mp; a = neg ? mp - mc : mc - mp; }
        else a = mc ^ mp;
        unsigned nb = bitlen32(a);
        prob *t = m.nb[pe * 2 + flip];
        unsigned node = 1;
        for (int l = (int)L - 1; l >= 0; l--) {
            unsigned b = (nb >> l) & 1;
            rce_bit(&rc, &t[node], b);
            node = 2 * node + b;
        }
        if (nb == 0) continue;
        if (is_mag) rce_bit(&rc, &m.neg[flip][nb], neg);
        unsigned below = nb - 1;
        unsigned kk = below < TOP_BITS ? below : TOP_BITS;
        prob *tp = m.top[nb];
        node = 1;
        for (unsigned j = 0; j < kk; j++) {
            unsigned b = (a >> (below - 1 - j)) & 1;
            rce_bit(&rc, &tp[node], b);
            node = 2 * node + b;
        }
        unsigned nraw = below - kk;
        if (nraw) bw_put(&bw, a & ((1u << nraw) - 1), nraw);
    }
    bw_flush(&bw);
    rce_flush(&rc);
    if (rc.overflow || bw.overflow) return WV_ERROR(WV_ERR_NOT_COMPRESSIBLE);
    size_t raw_len = (size_t)(bw.out - (dst + HDR));
    size_t ac_len = (size_t)(rc.out - (dst + HDR + n));
    memmove(dst + HDR + raw_len, dst + HDR + n, ac_len);
    dst[0] = (uint8_t)mode;
    wv_wr32(dst + 1, (uint32_t)raw_len);
    return HDR + raw_len + ac_len;
}

size_t wv_ckpt_payload_mode(const uint8_t *src, size_t src_size)
{
    WV_RETURN_ERROR_IF(src_size < HDR, WV_ERR_SRC_TRUNCATED);
    WV_RETURN_ERROR_IF(src[0] != WV_CKPT_XOR && src[0] != WV_CKPT_MAG, WV_ERR_CORRUPT);
    return src[0];
}

size_t wv_ckpt_decode(uint8_t *dst, size_t n, const uint8_t *src, size_t src_size, const uint8_t *base,
                      unsigned dtype)
{
    fmt f;
    WV_RETURN_ERROR_IF(!get_fmt(dtype, &f), WV_ERR_BAD_DTYPE);
    size_t k = f.width / 8;
    WV_RETURN_ERROR_IF(n % k || n > WV_MAX_RAW, WV_ERR_BAD_SIZE);
    WV_FORWARD_IF_ERROR(wv_ckpt_payload_mode(src, src_size));
    unsigned mode = src[0];
    size_t raw_len = wv_rd32(src + 1);
    WV_RETURN_ERROR_IF(raw_len > src_size - HDR, WV_ERR_CORRUPT);
    size_t count = n / k;

    models m;
    models_init(&m);
    bit_r br = {0, 0, src + HDR, src + HDR + raw_len, 0};
    rc_dec rc;
    rcd_init(&rc, src + HDR + raw_len, src + src_size);

    const unsigned W = f.width, L = f.levels, sh = W - 1, M = f.mant;
    const uint32_t mmask = (1u << sh) - 1;
    const int is_mag = mode == WV_CKPT_MAG;
    for (size_t i = 0; i < count; i++) {
        uint32_t p = load_el(base, i, W);
        uint32_t mp = p & mmask;
        unsigned pe = mp >> M;
        unsigned flip = rcd_bit(&rc, &m.flip[pe]);
        prob *t = m.nb[pe * 2 + flip];
        unsigned node = 1;
        for (unsigned l = 0; l < L; l++) node = 2 * node + rcd_bit(&rc, &t[node]);
        unsigned nb = node - (1u << L);
        uint32_t mc = mp;
        if (nb) {
            unsigned neg = is_mag ? rcd_bit(&rc, &m.neg[flip][nb]) : 0;
            unsigned below = nb - 1;
            unsigned kk = below < TOP_BITS ? below : TOP_BITS;
            prob *tp = m.top[nb];
            node = 1;
            for (unsigned j = 0; j < kk; j++) node = 2 * node + rcd_bit(&rc, &tp[node]);
            unsigned nraw = below - kk;
            /* node = 1 followed by the kk top bits: the leading one comes free */
            uint32_t a = ((uint32_t)node << nraw) | (nraw ? br_get(&br, nraw) : 0);
            if (is_mag) mc = neg ? mp - a : mp + a;
            else mc = mp ^ a;
            mc &= mmask;   /* hostile input only: keeps the value a W-bit pattern */
        }
        store_el(dst, i, W, ((p ^ ((uint32_t)flip << sh)) & ~mmask) | mc);
    }
    /* Every byte the encoder wrote is consumed exactly: the coder reads 5 bytes
     * ahead of its flush, so it ends at the end; the bit stream ends within its last byte. */
    size_t bits_used = ((size_t)(br.in - (src + HDR)) + br.over) * 8 - br.cnt;
    WV_RETURN_ERROR_IF(br.over && bits_used > raw_len * 8, WV_ERR_CORRUPT);
    WV_RETURN_ERROR_IF((bits_used + 7) / 8 != raw_len, WV_ERR_CORRUPT);
    WV_RETURN_ERROR_IF(rc.over || rc.in != rc.end, WV_ERR_CORRUPT);
    return n;
}
