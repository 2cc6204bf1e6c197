/* rANS frequency tables: normalisation to 12 bits, cost estimates, serialisation
 * (docs/FORMAT.md "Frequency table") and the encoder/decoder lookup tables. */
#include "rans.h"
#include <immintrin.h>
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
 * symbols, 2 = count-1 then the symbol list, 3 = first symbol and span-1 of a
 * contiguous range (symbols inside it may be absent: frequency byte 0); then the
 * frequencies in symbol order, 1 byte if < 128 else 2 bytes (0x80 | f >> 8, f & 255).
 * Kind 3 exists for exponent planes: ~40 adjacent symbols, where it saves the
 * 33-byte bitmap (~0.0001 of a BF16 model).  The writer picks the smallest kind. */
static size_t put_freq(uint8_t *dst, unsigned f)
{
    if (f < 128) { dst[0] = (uint8_t)f; return 1; }
    dst[0] = (uint8_t)(0x80 | (f >> 8));
    dst[1] = (uint8_t)f;
    return 2;
}

size_t wv_rans_write_table(uint8_t *dst, const uint16_t freq[256])
{
    unsigned nsym = 0, lo = 256, hi = 0;
    for (unsigned s = 0; s < 256; s++) {
        if (!freq[s]) continue;
        nsym++;
        if (lo == 256) lo = s;
        hi = s;
    }
    if (nsym == 0) { dst[0] = 0; return 1; }
    size_t span = hi - lo + 1, list = 2 + nsym, range = 3 + (span - nsym);
    size_t o;
    if (range <= list && range <= 33) {
        dst[0] = 3; dst[1] = (uint8_t)lo; dst[2] = (uint8_t)(span - 1);
        o = 3;
        for (unsigned s = lo; s <= hi; s++) o += freq[s] ? put_freq(dst + o, freq[s]) : (dst[o] = 0, 1);
        return o;
    }
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
    for (int s = 0; s < 256; s++)
        if (freq[s]) o += put_freq(dst + o, freq[s]);
    return o;
}

static size_t get_freq(const uint8_t *src, size_t size, size_t *o, unsigned *f)
{
    WV_RETURN_ERROR_IF(*o >= size, WV_ERR_CORRUPT);
    unsigned v = src[(*o)++];
    if (v & 0x80) {
        WV_RETURN_ERROR_IF(*o >= size, WV_ERR_CORRUPT);
        v = ((v & 0x7f) << 8) | src[(*o)++];
    }
    *f = v;
    return 0;
}

size_t wv_rans_read_table(const uint8_t *src, size_t size, uint16_t freq[256])
{
    uint8_t present[256];
    memset(present, 0, sizeof present);
    memset(freq, 0, 256 * sizeof freq[0]);
    WV_RETURN_ERROR_IF(size < 1, WV_ERR_CORRUPT);
    size_t o;
    unsigned sum = 0, nsym = 0;
    if (src[0] == 0) {
        /* unused context: any valid table will do; garbage decodes fail the CRC */
        freq[0] = WV_RANS_M - 1;
        freq[1] = 1;
        return 1;
    } else if (src[0] == 3) {
        WV_RETURN_ERROR_IF(size < 3, WV_ERR_CORRUPT);
        unsigned lo = src[1], span = src[2] + 1u;
        WV_RETURN_ERROR_IF(lo + span > 256, WV_ERR_CORRUPT);
        o = 3;
        for (unsigned s = lo; s < lo + span; s++) {
            unsigned f = 0;
            WV_FORWARD_IF_ERROR(get_freq(src, size, &o, &f));
            WV_RETURN_ERROR_IF(f >= WV_RANS_M, WV_ERR_CORRUPT);
            freq[s] = (uint16_t)f;
            sum += f;
            nsym += f != 0;
        }
        WV_RETURN_ERROR_IF(nsym < 2 || sum != WV_RANS_M, WV_ERR_CORRUPT);
        return o;
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
    for (int s = 0; s < 256; s++) {
        if (!present[s]) continue;
        unsigned f = 0;
        WV_FORWARD_IF_ERROR(get_freq(src, size, &o, &f));
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
        uint32_t rcp_shift = 0;
        if (f < 2) {
            e->rcp_freq = ~0u;
            e->bias = cum + WV_RANS_M - 1;
        } else {
            uint32_t shift = 0;
            while (f > (1u << shift)) shift++;
            e->rcp_freq = (uint32_t)(((1ull << (shift + 31)) + f - 1) / f);
            rcp_shift = shift - 1;
            e->bias = cum;
        }
        e->packed = e->bias | f << 13 | rcp_shift << 25;
        cum += f;
    }
}

/* entry = symbol | freq << 8 | (slot - cum) << 20; freq < 4096 always (normalize), and
 * the frequencies sum to 4096 (normalize, wv_rans_read_table).  size_t offsets let the
 * compiler vectorise the fill (with uint32_t ones it did not: 6.9% of a BF16 fine-tune's
 * decode, whose frames build up to 12 tables). */
static void build_dtab_sse2(const uint16_t freq[256], uint32_t dtab[WV_RANS_M])
{
    uint32_t *out = dtab;
    for (uint32_t s = 0; s < 256; s++) {
        uint32_t f = freq[s], e = s | f << 8;
        for (size_t k = 0; k < f; k++) out[k] = e + ((uint32_t)k << 20);
        out += f;
    }
}

/* The same 16 entries per store, the last store of a symbol masked (the baseline build
 * stores 4 at a time): distance payloads build up to 12 tables per frame.  perf, FP32
 * fine-tune's xor v3 decode: the build went from 3.5% to 2.2% of the samples. */
__attribute__((target("avx512f"))) static void build_dtab_avx512(const uint16_t freq[256], uint32_t dtab[WV_RANS_M])
{
    const __m512i step = _mm512_slli_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15), 20);
    const __m512i next = _mm512_set1_epi32(16 << 20);
    uint32_t *out = dtab;
    for (uint32_t s = 0; s < 256; s++) {
        uint32_t f = freq[s], k = 0;
        if (!f) continue;
        __m512i e = _mm512_add_epi32(_mm512_set1_epi32((int)(s | f << 8)), step);
        for (; k + 16 <= f; k += 16, e = _mm512_add_epi32(e, next)) _mm512_storeu_si512((void *)(out + k), e);
        if (k < f) _mm512_mask_storeu_epi32(out + k, (__mmask16)((1u << (f - k)) - 1), e);
        out += f;
    }
}

static void (*build_dtab)(const uint16_t *, uint32_t *) = build_dtab_sse2;
__attribute__((constructor)) static void dtab_init(void)
{
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f")) build_dtab = build_dtab_avx512;
}

void wv_rans_build_dtab(const uint16_t freq[256], uint32_t dtab[WV_RANS_M]) { build_dtab(freq, dtab); }

void wv_rans_dominant(const uint16_t freq[256], wv_rans_dom *dom)
{
    uint32_t cum = 0;
    *dom = (wv_rans_dom){0, 0, 0};
    for (uint32_t s = 0; s < 256; s++) {
        if (freq[s] > dom->freq) *dom = (wv_rans_dom){cum, freq[s], s | (uint32_t)freq[s] << 8};
        cum += freq[s];
    }
}
