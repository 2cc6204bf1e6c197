/* Checkpoint-delta coder: each float of a frame is predicted by the same
 * element of the previous checkpoint (the base) and the residual is coded with
 * an adaptive binary range coder whose contexts come from that prediction.
 *
 * Per element (W = 32 or 16 bits, M mantissa bits, pe = the prediction's exponent):
 *   flip  = sign(cur) ^ sign(pred)          1 decision, context pe
 *   a     = |cur| XOR |pred|      (mode XOR) or
 *           ||cur| - |pred||, neg (mode MAG) on the W-1 bit magnitudes
 *   nb    = bit length of a (0..W-1)        3-level tree around an adaptive
 *                                           centre, context (pe, flip); see NB_CTX
 *   neg   (MAG, nb > 0)                     1 decision, context (flip, nb), or raw
 *                                           when that context gains too little
 *   the TOP_BITS bits under a's leading one tree, context nb (XOR only, see below)
 *   the remaining bits                      raw, in a separate bit stream
 * The sign is split off first because Adam's first moment flips sign for ~45%
 * of elements between checkpoints 50 steps apart, yet its magnitude stays close
 * to the prediction's: coding |cur| against |pred| after a flip bit left 0.828
 * of exp_avg versus 0.867 for a signed integer difference and 0.860 for a plain
 * XOR (empirical conditional entropies, make_checkpoints.py default run,
 * checkpoints 50 -> 100).  On weights MAG beats XOR (0.742 vs 0.756): a change
 * that crosses a power of two flips many XOR bits but few difference bits.  The
 * encoder picks the mode per frame from a sample (choose_mode).
 * Bits below the leading one are uniform (an update's low bits are noise), so
 * they bypass the coder: that keeps decode fast and costs nothing.  On FP32
 * weights the result is within ~1% of an i.i.d. Laplace/Gaussian bound for
 * prediction from the previous value (bench/checkpoints.py prints it).
 *
 * Frames where no element changes sign (Adam's second moment) skip the flip;
 * where the flip is a coin toss (Adam's first moment) it goes raw.
 * Elements alternate between two range coders sharing one set of models.
 * Payload: mode (1) | raw_len (u32 LE) | ac0_len (u32 LE) | raw bits | coder 0 | coder 1.
 * Models are reset per frame, so every frame decodes on its own.
 */
#include "ckpt.h"
#include "cast.h"
#include <stddef.h>

/* The decode loop is specialised per dtype and mode; gcc stops inlining the
 * coder into five copies unless told (rcd_bit was left as a call: -30% speed). */
#if defined(__GNUC__)
#define WV_INLINE static inline __attribute__((always_inline))
#else
#define WV_INLINE static inline
#endif


/* 12-bit probabilities, adaptation rate 1/32 (LZMA's choice). */
#define PROB_BITS 12
#define PROB_ONE (1u << PROB_BITS)
#define ADAPT 5
/* Bits under the leading one coded with a model; the rest are raw.  With XOR
 * the first three pay (exp_avg 0.8373 -> 0.8324 from 1 to 3 bits); with MAG
 * they are uniform (FP32 weights 0.7464 with 1 bit, 0.7465 with 3). */
#define TOP_BITS_MAG 0
#define TOP_BITS_XOR 3
#define TOP_NODES 8
#define RC_TOP (1u << 24)
#define HDR 9

typedef uint16_t prob;

/* nb is coded relative to an adaptive centre per context (the running mean of
 * nb there): a 3-level tree over nb - centre clamped to -3..4, then truncated
 * unary beyond the ends (rare).  Three branch-free decisions where a tree over
 * nb takes 5; the same size (FP32 weights 0.7465 both).  Binarising as
 * "equal? above? distance in unary" took 2.9 decisions but its data-dependent
 * branches made decoding slower. */
#define NB_CTX 512           /* pred exponent (8 bits) * 2 + flip */
#define DIST_CTX 8
/* The centre's mean weighs each new nb 1, 1/2, ... down to 1/64: a fast start,
 * then stable (FP32 weights 0.7465 at 1/64; 0.7494 at a fixed 1/8, 0.7469 at 1/128). */
#define CEN_RATE 6

typedef struct {
    prob flip[256];
    prob near[NB_CTX][8];            /* tree over clamp(nb - centre, -3, 4) */
    prob esc[NB_CTX][2][DIST_CTX];    /* unary beyond -3 (0) or 4 (1) */
    prob neg[2][32];         /* [flip][nb] */
    prob top[32][TOP_NODES]; /* [nb][tree node] */
    uint16_t avg[NB_CTX];    /* running mean of nb, 1/16 units */
    uint8_t seen[NB_CTX];    /* log2 of the mean's weight so far, up to CEN_RATE */
} models;

typedef struct {
    unsigned width;    /* 32 or 16 */
    unsigned mant;     /* mantissa bits */
} fmt;

static int get_fmt(unsigned dtype, fmt *f)
{
    switch (dtype) {
    case WV_DT_F32: f->width = 32; f->mant = 23; return 1;
    case WV_DT_BF16: f->width = 16; f->mant = 7; return 1;
    case WV_DT_F16: f->width = 16; f->mant = 10; return 1;
    default: return 0;
    }
}

static void models_init(models *m, unsigned width)
{
    prob *p = (prob *)m;
    size_t k = offsetof(models, avg) / sizeof(prob);
    for (size_t i = 0; i < k; i++) p[i] = PROB_ONE / 2;
    for (size_t i = 0; i < NB_CTX; i++) { m->avg[i] = (uint16_t)(16 * (width * 2 / 3)); m->seen[i] = 0; }
}

/* EMA of nb with rate 1/8: tracks a context's level within ~10 elements. */
WV_INLINE unsigned nb_center(const models *m, unsigned ctx) { return (m->avg[ctx] + 8u) >> 4; }
WV_INLINE void nb_update(models *m, unsigned ctx, unsigned nb)
{
    unsigned s = m->seen[ctx];
    m->avg[ctx] = (uint16_t)((m->avg[ctx] * ((1u << s) - 1) + nb * 16u + ((1u << s) >> 1)) >> s);
    m->seen[ctx] = (uint8_t)(s + (s < CEN_RATE));
}

WV_INLINE unsigned bitlen32(uint32_t a) { return a ? 32u - (unsigned)__builtin_clz(a) : 0u; }

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

WV_INLINE void rce_bit(rc_enc *e, prob *pp, unsigned bit)
{
    /* the same branch-free selects as rcd_bit: the bits are as unpredictable here */
    uint32_t p = *pp;
    uint32_t bound = (e->range >> PROB_BITS) * p;
    uint32_t mask = 0u - (uint32_t)(bit != 0);
    e->low += bound & mask;
    e->range = bound + ((e->range - 2 * bound) & mask);
    *pp = (prob)(p + (((PROB_ONE - p) >> ADAPT) & ~mask) - ((p >> ADAPT) & mask));
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

static void rcd_init(rc_dec *d, const uint8_t *in, const uint8_t *end)
{
    d->in = in; d->end = end; d->over = 0; d->range = 0xFFFFFFFFu; d->code = 0;
    for (int i = 0; i < 5; i++) {
        uint8_t b = 0;
        if (d->in < d->end) b = *d->in++;
        else d->over++;
        d->code = (d->code << 8) | b;
    }
}

/* Branch-free, renormalisation included: most decisions here are close to
 * coin flips (the sign of an update, the distance of nb from its centre) and
 * renormalisation falls every few decisions at no fixed rhythm, so branches
 * would mispredict often; the selects compile to cmov and the byte is read
 * from a zero byte once the input is exhausted (counted in over). */
WV_INLINE unsigned rcd_bit(rc_dec *d, prob *pp)
{
    uint32_t p = *pp;
    uint32_t bound = (d->range >> PROB_BITS) * p;
    unsigned bit = d->code >= bound;
    /* Selects by mask: written as ?: gcc 12 turns some of them into a branch,
     * which mispredicted on 30% of decisions (cachegrind). */
    uint32_t mask = 0u - (uint32_t)bit;
    uint32_t range = bound + ((d->range - 2 * bound) & mask);
    d->code -= bound & mask;
    *pp = (prob)(p + (((PROB_ONE - p) >> ADAPT) & ~mask) - ((p >> ADAPT) & mask));
    d->range = range;
    if (range < RC_TOP) {
        uint8_t by = 0;
        if (d->in < d->end) by = *d->in++;
        else d->over++;
        d->range = range << 8;
        d->code = (d->code << 8) | by;
    }
    return bit;
}

/* ---------------- raw bit stream, LSB first ---------------- */
typedef struct {
    uint64_t acc;
    unsigned cnt;
    uint8_t *out, *end;
    int overflow;
} bit_w;

WV_INLINE void bw_put(bit_w *w, uint32_t v, unsigned n)   /* n <= 31 */
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

/* Keeps at least 56 bits buffered; called once per element so the check
 * never branches on data (the slow path runs only in the last 8 bytes). */
WV_INLINE void br_refill(bit_r *r)
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

WV_INLINE uint32_t br_get(bit_r *r, unsigned n)   /* n <= 31, after br_refill */
{
    uint32_t v = (uint32_t)(r->buf & ((1ull << n) - 1));
    r->buf >>= n;
    r->cnt -= n;
    return v;
}

/* ---------------- element access ---------------- */
WV_INLINE uint32_t load_el(const uint8_t *p, size_t i, unsigned width)
{
    return width == 32 ? wv_rd32(p + 4 * i) : wv_rd16(p + 2 * i);
}

WV_INLINE void store_el(uint8_t *p, size_t i, unsigned width, uint32_t v)
{
    if (width == 32) wv_wr32(p + 4 * i, v);
    else wv_wr16(p + 2 * i, (uint16_t)v);
}

static int mode_valid(unsigned mode)
{
    unsigned kind = mode & 3u;
    if (mode & ~(3u | WV_CKPT_NEG_RAW | WV_CKPT_NO_FLIP | WV_CKPT_FLIP_RAW)) return 0;
    if ((mode & WV_CKPT_NO_FLIP) && (mode & WV_CKPT_FLIP_RAW)) return 0;
    if (kind != WV_CKPT_XOR && kind != WV_CKPT_MAG) return 0;
    return !(mode & WV_CKPT_NEG_RAW) || kind == WV_CKPT_MAG;
}

/* True if some element's sign differs from its prediction's.  Adam's second
 * moment never changes sign, so its frames skip the flip decision (1 of 5 per
 * element there); must look at every element, as the flag is a promise. */
static int any_flip(const uint8_t *src, const uint8_t *base, size_t count, unsigned width)
{
    uint32_t acc = 0;
    if (width == 32)
        for (size_t i = 0; i < count; i++) acc |= wv_rd32(src + 4 * i) ^ wv_rd32(base + 4 * i);
    else
        for (size_t i = 0; i < count; i++) acc |= (uint32_t)(wv_rd16(src + 2 * i) ^ wv_rd16(base + 2 * i)) << 16;
    return acc >> 31;
}

size_t wv_ckpt_bound(size_t n) { return HDR + n + n / 2 + 64; }

/* Cheap mode choice on sampled elements.  The raw bits dominate the size, so
 * the kind whose residuals have the smaller total bit length wins.  Under MAG
 * the sign of the difference is a coin flip on weights (49.9% negative on the
 * default run) but not on Adam's second moment (mostly decaying), so the sample
 * estimates what modelling it in its context (flip, nb) would save: about
 * 0.72 * sum (n0 - n1)^2 / n bits (1 - H(p) to second order around p = 1/2).
 * Under 0.04 bit per element it goes raw: one decision in five fewer.  On the
 * default run exp_avg then loses 0.0006 of its size, and exp_avg_sq (0.17 bit
 * of gain from its context) stays modelled. */
static unsigned choose_mode(const uint8_t *src, const uint8_t *base, size_t count, const fmt *f)
{
    uint32_t mmask = (f->width == 32) ? 0x7FFFFFFFu : 0x7FFFu, smask = mmask + 1;
    uint64_t sx = 0, sm = 0, nz = 0;
    uint32_t negs[2][32][2] = {{{0}}};
    uint32_t flips[256][2] = {{0}};
    uint64_t seen = 0;
    size_t step = count > 8192 ? count / 8192 : 1;
    for (size_t i = 0; i < count; i += step) {
        uint32_t c = load_el(src, i, f->width), p = load_el(base, i, f->width);
        unsigned flip = ((c ^ p) & smask) != 0;
        c &= mmask;
        p &= mmask;
        unsigned nb = bitlen32(c >= p ? c - p : p - c);
        sx += bitlen32(c ^ p);
        sm += nb + 1;   /* +1: the neg bit MAG codes */
        nz += c != p;
        negs[flip][nb & 31][c < p]++;
        flips[(p >> f->mant) & 255][flip]++;
        seen++;
    }
    double fgain = 0;
    for (int e = 0; e < 256; e++) {
        double n0 = flips[e][0], n1 = flips[e][1];
        if (n0 + n1 > 0) fgain += 0.72 * (n0 - n1) * (n0 - n1) / (n0 + n1);
    }
    /* the same test for the sign flip: exp_avg flips ~45% of signs, with little
     * to learn from the exponent, so its flips go raw; weights' (~1-5%) never do */
    unsigned fr = seen >= 256 && fgain < 0.04 * (double)seen ? WV_CKPT_FLIP_RAW : 0u;
    if (sm > sx) return WV_CKPT_XOR | fr;
    double gain = 0;
    for (int fl = 0; fl < 2; fl++)
        for (int b = 1; b < 32; b++) {
            double n0 = negs[fl][b][0], n1 = negs[fl][b][1];
            if (n0 + n1 > 0) gain += 0.72 * (n0 - n1) * (n0 - n1) / (n0 + n1);
        }
    int even = nz >= 256 && gain < 0.04 * (double)nz;
    return WV_CKPT_MAG | fr | (even ? WV_CKPT_NEG_RAW : 0u);
}

enum { FLIP_CODED = 0, FLIP_NONE = 1, FLIP_RAW = 2 };

static int flip_how(unsigned mode)
{
    return (mode & WV_CKPT_NO_FLIP) ? FLIP_NONE : (mode & WV_CKPT_FLIP_RAW) ? FLIP_RAW : FLIP_CODED;
}

/* Per-frame constants of one dtype and mode. */
typedef struct {
    unsigned W, M;     /* width and mantissa bits */
    int is_mag;
    unsigned top_bits;
    int neg_raw;       /* MAG: the sign of the difference goes raw (see choose_mode) */
    int flip_how;      /* FLIP_CODED, FLIP_NONE (no element changes sign) or FLIP_RAW; runtime */
} params;

WV_INLINE void enc_one(rc_enc *rc, models *m, bit_w *bw, uint32_t c, uint32_t p, const params P)
{
    const unsigned W = P.W, sh = W - 1;
    const uint32_t mmask = (1u << sh) - 1;
    unsigned flip = (c ^ p) >> sh;
    uint32_t mc = c & mmask, mp = p & mmask;
    unsigned pe = mp >> P.M;
    if (P.flip_how == FLIP_CODED) rce_bit(rc, &m->flip[pe], flip);
    else if (P.flip_how == FLIP_RAW) bw_put(bw, flip, 1);
    uint32_t a;
    unsigned neg = 0;
    if (P.is_mag) { neg = mc < mp; a = neg ? mp - mc : mc - mp; }
    else a = mc ^ mp;
    unsigned nb = bitlen32(a);
    unsigned ctx = pe * 2 + flip;
    int c0 = (int)nb_center(m, ctx), d = (int)nb - c0;
    unsigned leaf = (unsigned)((d < -3 ? -3 : d > 4 ? 4 : d) + 3);
    prob *t = m->near[ctx];
    rce_bit(rc, &t[1], leaf >> 2);
    rce_bit(rc, &t[2 + (leaf >> 2)], (leaf >> 1) & 1);
    rce_bit(rc, &t[4 + (leaf >> 1)], leaf & 1);
    if (leaf == 0 || leaf == 7) {
        unsigned hi = leaf == 7;
        int lim = hi ? (int)W - 5 - c0 : c0 - 3;   /* largest possible excess */
        unsigned ex = (unsigned)(hi ? d - 4 : -3 - d);
        prob *ep = m->esc[ctx][hi];
        for (unsigned j = 0; j < ex; j++) rce_bit(rc, &ep[j < DIST_CTX ? j : DIST_CTX - 1], 1);
        if ((int)ex < lim) rce_bit(rc, &ep[ex < DIST_CTX ? ex : DIST_CTX - 1], 0);
    }
    nb_update(m, ctx, nb);
    if (nb == 0) return;
    if (P.is_mag && !P.neg_raw) rce_bit(rc, &m->neg[flip][nb], neg);
    unsigned below = nb - 1;
    unsigned kk = below < P.top_bits ? below : P.top_bits;
    prob *tp = m->top[nb];
    unsigned node = 1;
    for (unsigned j = 0; j < kk; j++) {
        unsigned b = (a >> (below - 1 - j)) & 1;
        rce_bit(rc, &tp[node], b);
        node = 2 * node + b;
    }
    unsigned nraw = below - kk;
    if (P.neg_raw) bw_put(bw, (a & ((1u << nraw) - 1)) | (neg << nraw), nraw + 1);
    else if (nraw) bw_put(bw, a & ((1u << nraw) - 1), nraw);
}

WV_INLINE uint32_t dec_one(rc_dec *rc, models *m, bit_r *br, uint32_t p, const params P)
{
    const unsigned W = P.W, sh = W - 1;
    const uint32_t mmask = (1u << sh) - 1;
    uint32_t mp = p & mmask;
    unsigned pe = mp >> P.M;
    unsigned flip = 0;
    if (P.flip_how == FLIP_CODED) {
        flip = rcd_bit(rc, &m->flip[pe]);
    } else if (P.flip_how == FLIP_RAW) {
        br_refill(br);
        flip = br_get(br, 1);
    }
    unsigned ctx = pe * 2 + flip;
    int c0 = (int)nb_center(m, ctx);
    prob *t = m->near[ctx];
    unsigned node = 2 + rcd_bit(rc, &t[1]);
    node = 2 * node + rcd_bit(rc, &t[node]);
    node = 2 * node + rcd_bit(rc, &t[node]);
    unsigned leaf = node - 8;
    int d = (int)leaf - 3;
    if (leaf == 0 || leaf == 7) {
        unsigned hi = leaf == 7;
        int lim = hi ? (int)W - 5 - c0 : c0 - 3, ex = 0;
        prob *ep = m->esc[ctx][hi];
        while (ex < lim && rcd_bit(rc, &ep[ex < DIST_CTX ? ex : DIST_CTX - 1])) ex++;
        d = hi ? d + ex : d - ex;
    }
    /* only a hostile payload can leave 0..W-1 */
    int nbi = c0 + d;
    unsigned nb = nbi < 0 ? 0u : nbi > (int)W - 1 ? W - 1 : (unsigned)nbi;
    nb_update(m, ctx, nb);
    uint32_t mc = mp;
    if (nb) {
        unsigned neg = P.is_mag && !P.neg_raw ? rcd_bit(rc, &m->neg[flip][nb]) : 0;
        unsigned below = nb - 1;
        unsigned kk = below < P.top_bits ? below : P.top_bits;
        prob *tp = m->top[nb];
        unsigned node = 1;
        for (unsigned j = 0; j < kk; j++) node = 2 * node + rcd_bit(rc, &tp[node]);
        unsigned nraw = below - kk;
        /* node = 1 followed by the kk top bits: the leading one comes free */
        br_refill(br);
        uint32_t a;
        if (P.neg_raw) {
            uint32_t r = br_get(br, nraw + 1);
            neg = r >> nraw;
            a = ((uint32_t)node << nraw) | (r & ((1u << nraw) - 1));
        } else {
            a = ((uint32_t)node << nraw) | br_get(br, nraw);
        }
        if (P.is_mag) mc = neg ? mp - a : mp + a;
        else mc = mp ^ a;
        mc &= mmask;   /* hostile input only: keeps the value a W-bit pattern */
    }
    return ((p ^ ((uint32_t)flip << sh)) & ~mmask) | mc;
}

/* Elements alternate between two range coders (even -> 0, odd -> 1) sharing
 * one set of models, so the two decoders' dependency chains are independent.
 * Measured here it decodes no faster than one coder (instruction count and the
 * remaining mispredicts dominate, not the chain) nor with a model set per
 * coder; the layout stays so a wider machine can overlap them.
 * Payload: mode | raw_len | ac0_len | raw | ac0 | ac1. */
WV_INLINE void enc_loop(rc_enc *rc, models *m, bit_w *bw, const uint8_t *src, const uint8_t *base,
                        size_t count, const params P)
{
    rc_enc r0 = rc[0], r1 = rc[1];   /* locals: see dec_loop */
    bit_w b = *bw;
    size_t i = 0;
    for (; i + 1 < count; i += 2) {
        enc_one(&r0, m, &b, load_el(src, i, P.W), load_el(base, i, P.W), P);
        enc_one(&r1, m, &b, load_el(src, i + 1, P.W), load_el(base, i + 1, P.W), P);
    }
    if (i < count) enc_one(&r0, m, &b, load_el(src, i, P.W), load_el(base, i, P.W), P);
    rc[0] = r0; rc[1] = r1; *bw = b;
}

WV_INLINE void dec_loop(rc_dec *rc, models *m, bit_r *br, uint8_t *dst, const uint8_t *base, size_t count,
                        const params P)
{
    /* Local copies: with -fno-strict-aliasing every probability store could
     * alias the coders' state through the pointers, forcing a reload per
     * decision; locals whose address stays here live in registers. */
    rc_dec r0 = rc[0], r1 = rc[1];
    bit_r b = *br;
    size_t i = 0;
    for (; i + 1 < count; i += 2) {
        store_el(dst, i, P.W, dec_one(&r0, m, &b, load_el(base, i, P.W), P));
        store_el(dst, i + 1, P.W, dec_one(&r1, m, &b, load_el(base, i + 1, P.W), P));
    }
    if (i < count) store_el(dst, i, P.W, dec_one(&r0, m, &b, load_el(base, i, P.W), P));
    rc[0] = r0; rc[1] = r1; *br = b;
}

/* One specialised copy per (width, mode): the constants fold into the loop. */
#define WV_CKPT_DISPATCH(LOOP, f, mode, ...)                                                    \
    do {                                                                                       \
        unsigned kind_ = (mode) & 3u;                                                          \
        int nraw_ = ((mode) & WV_CKPT_NEG_RAW) != 0, nf_ = flip_how(mode);                      \
        if ((f).width == 32 && kind_ == WV_CKPT_MAG && nraw_)                                  \
            LOOP(__VA_ARGS__, (params){32, 23, 1, TOP_BITS_MAG, 1, nf_});                      \
        else if ((f).width == 32 && kind_ == WV_CKPT_MAG)                                      \
            LOOP(__VA_ARGS__, (params){32, 23, 1, TOP_BITS_MAG, 0, nf_});                      \
        else if ((f).width == 32)                                                              \
            LOOP(__VA_ARGS__, (params){32, 23, 0, TOP_BITS_XOR, 0, nf_});                      \
        else if (kind_ == WV_CKPT_MAG)                                                         \
            LOOP(__VA_ARGS__, (params){16, (f).mant, 1, TOP_BITS_MAG, nraw_, nf_});            \
        else                                                                                   \
            LOOP(__VA_ARGS__, (params){16, (f).mant, 0, TOP_BITS_XOR, 0, nf_});                \
    } while (0)

/* A base of another dtype (an F32 base for a BF16 checkpoint, or back) is cast
 * to the member's dtype as the xor codec does (cast.c), a block at a time into
 * this stack buffer: no allocation, and the cast stays in L1. */
#define CAST_BLOCK 2048   /* elements; even, so the two coders keep alternating */

static int base_ok(unsigned dtype, unsigned base_dtype)
{
    return base_dtype == dtype || wv_cast_supported(dtype, base_dtype);
}

size_t wv_ckpt_encode(uint8_t *dst, size_t cap, const uint8_t *src, const uint8_t *base, size_t n,
                      unsigned dtype, unsigned base_dtype, unsigned mode)
{
    fmt f;
    WV_RETURN_ERROR_IF(!get_fmt(dtype, &f), WV_ERR_BAD_DTYPE);
    WV_RETURN_ERROR_IF(!base_ok(dtype, base_dtype), WV_ERR_UNSUPPORTED_CAST);
    size_t k = f.width / 8, bk = wv_dtype_size(base_dtype);
    WV_RETURN_ERROR_IF(n % k || n > WV_MAX_RAW, WV_ERR_BAD_SIZE);
    WV_RETURN_ERROR_IF(cap < HDR + n + 64, WV_ERR_DST_TOO_SMALL);
    size_t count = n / k;
    uint8_t cast[CAST_BLOCK * 4];
    if (mode == WV_CKPT_AUTO) {
        if (base_dtype == dtype) {
            mode = choose_mode(src, base, count, &f);
        } else {
            size_t c = count < CAST_BLOCK ? count : CAST_BLOCK;
            wv_cast(cast, dtype, base, base_dtype, c);
            mode = choose_mode(src, cast, c, &f);
        }
    }
    WV_RETURN_ERROR_IF(!mode_valid(mode), WV_ERR_BAD_MODE);
    /* NO_FLIP only with a base of the same dtype (a cast can change a NaN's sign) */
    if (base_dtype == dtype && !any_flip(src, base, count, f.width)) mode = (mode & ~WV_CKPT_FLIP_RAW) | WV_CKPT_NO_FLIP;
    else mode &= ~WV_CKPT_NO_FLIP;

    models m;
    models_init(&m, f.width);
    /* Raw bits take at most width-1 bits per element (< n bytes), so they go
     * at HDR; the coders' bytes go after HDR + n, half the rest each, and
     * move down at the end. */
    uint8_t *ac = dst + HDR + n;
    size_t half = (cap - HDR - n) / 2;
    bit_w bw = {0, 0, dst + HDR, dst + HDR + n, 0};
    rc_enc rc[2];
    rce_init(&rc[0], ac, ac + half);
    rce_init(&rc[1], ac + half, ac + 2 * half);
    if (base_dtype == dtype) {
        WV_CKPT_DISPATCH(enc_loop, f, mode, rc, &m, &bw, src, base, count);
    } else {
        for (size_t i = 0; i < count; i += CAST_BLOCK) {
            size_t c = count - i < CAST_BLOCK ? count - i : CAST_BLOCK;
            wv_cast(cast, dtype, base + i * bk, base_dtype, c);
            WV_CKPT_DISPATCH(enc_loop, f, mode, rc, &m, &bw, src + i * k, cast, c);
        }
    }
    bw_flush(&bw);
    rce_flush(&rc[0]);
    rce_flush(&rc[1]);
    if (rc[0].overflow || rc[1].overflow || bw.overflow) return WV_ERROR(WV_ERR_NOT_COMPRESSIBLE);
    size_t raw_len = (size_t)(bw.out - (dst + HDR));
    size_t l0 = (size_t)(rc[0].out - ac), l1 = (size_t)(rc[1].out - (ac + half));
    memmove(dst + HDR + raw_len, ac, l0);
    memmove(dst + HDR + raw_len + l0, ac + half, l1);
    dst[0] = (uint8_t)mode;
    wv_wr32(dst + 1, (uint32_t)raw_len);
    wv_wr32(dst + 5, (uint32_t)l0);
    return HDR + raw_len + l0 + l1;
}

size_t wv_ckpt_payload_mode(const uint8_t *src, size_t src_size)
{
    WV_RETURN_ERROR_IF(src_size < HDR, WV_ERR_SRC_TRUNCATED);
    WV_RETURN_ERROR_IF(!mode_valid(src[0]), WV_ERR_CORRUPT);
    return src[0];
}

size_t wv_ckpt_decode(uint8_t *dst, size_t n, const uint8_t *src, size_t src_size, const uint8_t *base,
                      unsigned dtype, unsigned base_dtype)
{
    fmt f;
    WV_RETURN_ERROR_IF(!get_fmt(dtype, &f), WV_ERR_BAD_DTYPE);
    WV_RETURN_ERROR_IF(!base_ok(dtype, base_dtype), WV_ERR_UNSUPPORTED_CAST);
    size_t k = f.width / 8, bk = wv_dtype_size(base_dtype);
    WV_RETURN_ERROR_IF(n % k || n > WV_MAX_RAW, WV_ERR_BAD_SIZE);
    WV_FORWARD_IF_ERROR(wv_ckpt_payload_mode(src, src_size));
    unsigned mode = src[0];
    size_t raw_len = wv_rd32(src + 1), l0 = wv_rd32(src + 5);
    WV_RETURN_ERROR_IF(raw_len > src_size - HDR || l0 > src_size - HDR - raw_len, WV_ERR_CORRUPT);
    const uint8_t *ac0 = src + HDR + raw_len, *ac1 = ac0 + l0;
    size_t count = n / k;

    models m;
    models_init(&m, f.width);
    bit_r br = {0, 0, src + HDR, ac0, 0};
    rc_dec rc[2];
    rcd_init(&rc[0], ac0, ac1);
    rcd_init(&rc[1], ac1, src + src_size);
    if (base_dtype == dtype) {
        WV_CKPT_DISPATCH(dec_loop, f, mode, rc, &m, &br, dst, base, count);
    } else {
        uint8_t cast[CAST_BLOCK * 4];
        for (size_t i = 0; i < count; i += CAST_BLOCK) {
            size_t c = count - i < CAST_BLOCK ? count - i : CAST_BLOCK;
            wv_cast(cast, dtype, base + i * bk, base_dtype, c);
            WV_CKPT_DISPATCH(dec_loop, f, mode, rc, &m, &br, dst + i * k, cast, c);
        }
    }
    /* Every byte the encoder wrote is consumed exactly: each coder reads 5
     * bytes ahead of its flush, so it ends at its end; the bit stream ends
     * within its last byte. */
    size_t bits_used = ((size_t)(br.in - (src + HDR)) + br.over) * 8 - br.cnt;
    WV_RETURN_ERROR_IF((bits_used + 7) / 8 != raw_len, WV_ERR_CORRUPT);
    WV_RETURN_ERROR_IF(rc[0].over || rc[0].in != rc[0].end, WV_ERR_CORRUPT);
    WV_RETURN_ERROR_IF(rc[1].over || rc[1].in != rc[1].end, WV_ERR_CORRUPT);
    return n;
}
