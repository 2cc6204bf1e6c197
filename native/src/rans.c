/* rANS tables, encoder and scalar decoder (see rans.h for the parameters). */
#include "rans.h"
#include <math.h>

static float cost_tab[WV_RANS_M + 1]; /* cost_tab[f] = 12 - log2(f) bits */

__attribute__((constructor)) static void rans_init(void)
{
    cost_tab[0] = 0;
    for (unsigned f = 1; f <= WV_RANS_M; f++) cost_tab[f] = (float)(WV_RANS_PROB_BITS - log2((double)f));
}

void wv_rans_normalize(const uint32_t count[256], uint16_t freq[256])
{
    uint64_t total = 0;
    unsigned nsym = 0, last = 0;
    for (int s = 0; s < 256; s++) {
        freq[s] = 0;
        total += count[s];
        if (count[s]) { nsym++; last = (unsigned)s; }
    }
    if (total == 0) return;
    if (nsym == 1) {
        freq[last] = WV_RANS_M - 1;
        freq[last ^ 1] = 1;
        return;
    }
    /* Rare symbols (ideal share under one slot) get one slot; the rest share the
     * remaining slots in proportion; the rounding residue goes to the largest. */
    uint64_t rare_total = 0;
    unsigned rare = 0;
    for (int s = 0; s < 256; s++)
        if (count[s] && (uint64_t)count[s] * WV_RANS_M < total) { rare++; rare_total += count[s]; }
    uint64_t rest = total - rare_total, slots = WV_RANS_M - rare;
    int sum = 0, big = -1;
    for (int s = 0; s < 256; s++) {
        if (!count[s]) continue;
        uint64_t f = 1;
        if ((uint64_t)count[s] * WV_RANS_M >= total) {
            f = ((uint64_t)count[s] * slots + rest / 2) / rest;
            if (f < 1) f = 1;
        }
        freq[s] = (uint16_t)f;
        sum += (int)f;
        if (big < 0 || count[s] > count[big]) big = s;
    }
    int diff = (int)WV_RANS_M - sum;
    while (diff != 0) {
        if (diff > 0 || freq[big] > 1 - diff) { freq[big] = (uint16_t)(freq[big] + diff); break; }
        /* rare in practice: the largest symbol cannot absorb it alone */
        int take = freq[big] / 2;
        freq[big] = (uint16_t)(freq[big] - take);
        diff += take;
        for (int s = 0; s < 256; s++)
            if (freq[s] > freq[big]) big = s;
    }
}

double wv_rans_cost_bits(const uint32_t count[256], const uint16_t freq[256])
{
    double bits = 0;
    for (int s = 0; s < 256; s++)
        if (count[s]) bits += (double)count[s] * cost_tab[freq[s]];
    return bits;
}

/* Table: kind byte 0 = empty (context never used), 1 = 32-byte bitmap of present
 * symbols, 2 = count-1 then the symbol list; then each present symbol's
 * frequency in symbol order, 1 byte if < 128 else 2 bytes (0x80 | f >> 8, f & 255). */
size_t wv_rans_write_table(uint8_t *dst, const uint16_t freq[256])
{
    unsigned nsym = 0;
    for (int s = 0; s < 256; s++) nsym += freq[s] != 0;
    if (nsym == 0) { dst[0] = 0; return 1; }
    size_t o;
    if (nsym > 32) {
        dst[0] = 1;
        memset(dst + 1, 0, 32);
        for (int s = 0; s < 256; s++)
            if (freq[s]) dst[1 + (s >> 3)] |= (uint8_t)(1u << (s & 7));
        o = 33;
    } else {
        dst[0] = 2;
        dst[1] = (uint8_t)(nsym - 1);
        o = 2;
        for (int s = 0; s < 256; s++)
            if (freq[s]) dst[o++] = (uint8_t)s;
    }
    for (int s = 0; s < 256; s++) {
        unsigned f = freq[s];
        if (!f) continue;
        if (f < 128) dst[o++] = (uint8_t)f;
        else { dst[o++] = (uint8_t)(0x80 | (f >> 8)); dst[o++] = (uint8_t)f; }
    }
    return o;
}

size_t wv_rans_read_table(const uint8_t *src, size_t size, uint16_t freq[256])
{
    uint8_t present[256];
    memset(present, 0, sizeof present);
    memset(freq, 0, 256 * sizeof freq[0]);
    WV_RETURN_ERROR_IF(size < 1, WV_ERR_CORRUPT);
    size_t o;
    if (src[0] == 0) {
        /* unused context: any valid table will do; garbage decodes fail the CRC */
        freq[0] = WV_RANS_M - 1;
        freq[1] = 1;
        return 1;
    } else if (src[0] == 1) {
        WV_RETURN_ERROR_IF(size < 33, WV_ERR_CORRUPT);
        for (int s = 0; s < 256; s++) present[s] = (src[1 + (s >> 3)] >> (s & 7)) & 1;
        o = 33;
    } else if (src[0] == 2) {
        WV_RETURN_ERROR_IF(size < 2, WV_ERR_CORRUPT);
        unsigned n = src[1] + 1u;
        WV_RETURN_ERROR_IF(size < 2 + n, WV_ERR_CORRUPT);
        for (unsigned k = 0; k < n; k++) {
            WV_RETURN_ERROR_IF(present[src[2 + k]], WV_ERR_CORRUPT);
            present[src[2 + k]] = 1;
        }
        o = 2 + n;
    } else {
        return WV_ERROR(WV_ERR_CORRUPT);
    }
    unsigned sum = 0, nsym = 0;
    for (int s = 0; s < 256; s++) {
        if (!present[s]) continue;
        WV_RETURN_ERROR_IF(o >= size, WV_ERR_CORRUPT);
        unsigned f = src[o++];
        if (f & 0x80) {
            WV_RETURN_ERROR_IF(o >= size, WV_ERR_CORRUPT);
            f = ((f & 0x7f) << 8) | src[o++];
        }
        WV_RETURN_ERROR_IF(f == 0 || f >= WV_RANS_M, WV_ERR_CORRUPT);
        freq[s] = (uint16_t)f;
        sum += f;
        nsym++;
    }
    WV_RETURN_ERROR_IF(nsym < 2 || sum != WV_RANS_M, WV_ERR_CORRUPT);
    return o;
}

void wv_rans_build_etab(const uint16_t freq[256], wv_rans_esym etab[256])
{
    uint32_t cum = 0;
    for (int s = 0; s < 256; s++) {
        uint32_t f = freq[s];
        wv_rans_esym *e = &etab[s];
        memset(e, 0, sizeof *e);
        if (!f) continue;
        /* ryg_rans reciprocal division, exact for x < 2^31 */
        e->x_max = ((WV_RANS_L >> WV_RANS_PROB_BITS) << 16) * f;
        e->cmpl_freq = (uint16_t)(WV_RANS_M - f);
        if (f < 2) {
            e->rcp_freq = ~0u;
            e->rcp_shift = 0;
            e->bias = cum + WV_RANS_M - 1;
        } else {
            uint32_t shift = 0;
            while (f > (1u << shift)) shift++;
            e->rcp_freq = (uint32_t)(((1ull << (shift + 31)) + f - 1) / f);
            e->rcp_shift = (uint16_t)(shift - 1);
            e->bias = cum;
        }
        cum += f;
    }
}

/* entry = symbol | freq << 8 | (slot - cum) << 20; freq < 4096 always (normalize). */
void wv_rans_build_dtab(const uint16_t freq[256], uint32_t dtab[WV_RANS_M])
{
    uint32_t cum = 0;
    for (uint32_t s = 0; s < 256; s++) {
        uint32_t f = freq[s];
        for (uint32_t k = 0; k < f; k++) dtab[cum + k] = s | (f << 8) | (k << 20);
        cum += f;
    }
}

static inline __attribute__((always_inline)) void enc_put(uint32_t *st, uint16_t **pp, const wv_rans_esym *e)
{
    uint32_t x = *st;
    if (x >= e->x_max) { *--(*pp) = (uint16_t)x; x >>= 16; }
    uint32_t q = (uint32_t)(((uint64_t)x * e->rcp_freq) >> 32) >> e->rcp_shift;
    *st = x + e->bias + q * e->cmpl_freq;
}

static inline __attribute__((always_inline)) size_t encode_body(uint8_t *dst, size_t cap, const uint8_t *src,
                                                                size_t n, const uint8_t *cx,
                                                                const wv_rans_esym *etabs, uint8_t *scratch)
{
    uint32_t st[WV_RANS_LANES];
    for (int l = 0; l < WV_RANS_LANES; l++) st[l] = WV_RANS_L;
    WV_RETURN_ERROR_IF(cap < WV_RANS_STATE_BYTES + 2 * WV_RANS_LANES, WV_ERR_NOT_COMPRESSIBLE);
    uint16_t *end = (uint16_t *)(scratch + (cap & ~(size_t)1)), *p = end;
    const uint16_t *stop = (const uint16_t *)(scratch + WV_RANS_STATE_BYTES + 2 * WV_RANS_LANES);
    size_t i = n, full = n & ~(size_t)(WV_RANS_LANES - 1);
    while (i > full) {
        i--;
        enc_put(&st[i % WV_RANS_LANES], &p, &etabs[(cx ? cx[i] * 256u : 0u) + src[i]]);
    }
    while (i > 0) {
        if (p < stop) return WV_ERROR(WV_ERR_NOT_COMPRESSIBLE); /* a block emits <= 32 words */
        i -= WV_RANS_LANES;
        for (int l = WV_RANS_LANES - 1; l >= 0; l--)
            enc_put(&st[l], &p, &etabs[(cx ? cx[i + l] * 256u : 0u) + src[i + l]]);
    }
    size_t words = (size_t)(end - p);
    WV_RETURN_ERROR_IF(WV_RANS_STATE_BYTES + 2 * words > cap, WV_ERR_NOT_COMPRESSIBLE);
    for (int l = 0; l < WV_RANS_LANES; l++) wv_wr32(dst + 4 * l, st[l]);
    memcpy(dst + WV_RANS_STATE_BYTES, p, 2 * words);
    return WV_RANS_STATE_BYTES + 2 * words;
}

size_t wv_rans_encode(uint8_t *dst, size_t cap, const uint8_t *src, size_t n, const uint8_t *cx,
                      const wv_rans_esym *etabs, uint8_t *scratch)
{
    return cx ? encode_body(dst, cap, src, n, cx, etabs, scratch)
              : encode_body(dst, cap, src, n, NULL, etabs, scratch);
}

/* ---- decoder ---- */

#define DEC_STEP(l, idx, READ)                                                  \
    do {                                                                        \
        uint32_t x_ = st[l];                                                    \
        uint32_t e_ = tab[(cx ? cx[idx] * WV_RANS_M : 0u) + (x_ & (WV_RANS_M - 1))]; \
        dst[idx] = (uint8_t)e_;                                                 \
        x_ = ((e_ >> 8) & 0xfff) * (x_ >> WV_RANS_PROB_BITS) + (e_ >> 20);      \
        if (x_ < WV_RANS_L) { READ; x_ = (x_ << 16) | wv_rd16(p); p += 2; }     \
        st[l] = x_;                                                             \
    } while (0)

static inline __attribute__((always_inline)) size_t decode_body(uint8_t *dst, size_t n, const uint8_t *src,
                                                                size_t size, const uint8_t *cx,
                                                                const uint32_t *tab)
{
    uint32_t st[WV_RANS_LANES];
    WV_RETURN_ERROR_IF(size < WV_RANS_STATE_BYTES || (size - WV_RANS_STATE_BYTES) % 2, WV_ERR_CORRUPT);
    for (int l = 0; l < WV_RANS_LANES; l++) {
        st[l] = wv_rd32(src + 4 * l);
        WV_RETURN_ERROR_IF(st[l] < WV_RANS_L || st[l] >= (1u << 31), WV_ERR_CORRUPT);
    }
    const uint8_t *p = src + WV_RANS_STATE_BYTES, *end = src + size;
    size_t i = 0;
    /* fast blocks: 32 symbols read at most 32 words, so check once per block */
    while (i + WV_RANS_LANES <= n && end - p >= 2 * WV_RANS_LANES) {
        for (int l = 0; l < WV_RANS_LANES; l++) DEC_STEP(l, i + l, (void)0);
        i += WV_RANS_LANES;
    }
    for (; i < n; i++)
        DEC_STEP(i % WV_RANS_LANES, i, if (p + 2 > end) return WV_ERROR(WV_ERR_CORRUPT));
    /* the encoder started every lane at L and used every word */
    for (int l = 0; l < WV_RANS_LANES; l++) WV_RETURN_ERROR_IF(st[l] != WV_RANS_L, WV_ERR_CORRUPT);
    WV_RETURN_ERROR_IF(p != end, WV_ERR_CORRUPT);
    return n;
}

size_t wv_rans_decode(uint8_t *dst, size_t n, const uint8_t *src, size_t size, const uint8_t *cx,
                      const uint32_t *dtabs)
{
    return cx ? decode_body(dst, n, src, size, cx, dtabs) : decode_body(dst, n, src, size, NULL, dtabs);
}
