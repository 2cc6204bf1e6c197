/* Interleaved rANS, order 0, with optional per-symbol context (one table per context).
 *
 * Recipe (as in zstd lib/common/fse.h):
 *  1. count symbols (hist.c), 2. wv_rans_normalize() to 12-bit frequencies,
 *  3. wv_rans_write_table() / wv_rans_read_table() to serialise them,
 *  4. wv_rans_build_etab() + wv_rans_encode()  /
 *     wv_rans_build_dtab() + wv_rans_dec_init() + wv_rans_dec_finish().
 *
 * Parameters and why:
 *  - 12-bit probabilities: a decode table is 4096 x u32 = 16 KiB, one fits in L1;
 *    a near-constant plane still costs only log2(4096/4095) = 0.00035 bit/symbol.
 *  - 32 states, symbol i on state i % 32: enough independent chains to hide the
 *    multiply/load latency in the scalar loop and exactly 4 AVX2 registers of 8.
 *  - state x in [2^15, 2^31), renormalised 16 bits at a time: at most one word per
 *    symbol (no loop), and x < 2^31 keeps ryg's 32-bit reciprocal division exact.
 * Stream layout: the 32 initial states (3 or 4 bytes each, after a 32-bit width map),
 * then u16 LE words in decode order; each lane's last symbol rides in its state.
 * A lane that needs a word reads the next one; lanes are served in index order,
 * which is what lets a SIMD decoder serve 8 lanes with one load + permute.
 */
#ifndef WV_RANS_H
#define WV_RANS_H
#include "wv_base.h"

#define WV_RANS_LANES 32
#define WV_RANS_PROB_BITS 12
#define WV_RANS_M (1u << WV_RANS_PROB_BITS)
#define WV_RANS_L (1u << 15)
#define WV_RANS_STATE_BYTES (4 + 4 * WV_RANS_LANES) /* upper bound: map + 32 x 4 */
#define WV_RANS_MAX_TABLES 32 /* two planes' worth of 12 contexts + spare */
#define WV_RANS_TABLE_MAX_BYTES (3 + 32 + 2 * 256)

/* packed = bias | freq << 13 | rcp_shift << 25: what the AVX2 encoder gathers
 * (two gathers per 8 symbols instead of four). */
typedef struct {
    uint32_t x_max, rcp_freq, bias, packed;
} wv_rans_esym;

void wv_hist(const uint8_t *src, size_t n, uint32_t count[256]);
void wv_hist_ctx(const uint8_t *src, const uint8_t *cx, size_t n, unsigned nctx, uint32_t (*count)[256]);

/* freq[s] >= 1 for every s with count[s] > 0, sum 4096.  A single-symbol input gets a
 * dummy second symbol (freq 1) so no frequency reaches 4096.  total == 0 -> all zero. */
void wv_rans_normalize(const uint32_t count[256], uint16_t freq[256]);
double wv_rans_cost_bits(const uint32_t count[256], const uint16_t freq[256]);
size_t wv_rans_write_table(uint8_t *dst, const uint16_t freq[256]);  /* dst >= WV_RANS_TABLE_MAX_BYTES */
size_t wv_rans_read_table(const uint8_t *src, size_t size, uint16_t freq[256]);
void wv_rans_build_etab(const uint16_t freq[256], wv_rans_esym etab[256]);
void wv_rans_build_dtab(const uint16_t freq[256], uint32_t dtab[WV_RANS_M]);
/* A table's most frequent symbol: its slots are [cum, cum + freq), their entries
 * entry + ((slot - cum) << 20) (entry = sym | freq << 8; freq 0 for a table of zeros). */
typedef struct {
    uint32_t cum, freq, entry;
} wv_rans_dom;
void wv_rans_dominant(const uint16_t freq[256], wv_rans_dom *dom);

/* cx == NULL: every symbol uses table 0.  scratch must hold cap bytes. */
size_t wv_rans_encode(uint8_t *dst, size_t cap, const uint8_t *src, size_t n, const uint8_t *cx,
                      const wv_rans_esym *etabs, uint8_t *scratch);
int wv_rans_select_kernel(int kernel);
void wv_rans_enc_select(int avx2); /* called by wv_rans_select_kernel */

/* Resumable decoder, so two streams can be decoded in lockstep (wv_rans_dec_pair). */
typedef struct {
    uint32_t st[WV_RANS_LANES];
    const uint8_t *p, *end, *cx;
    const uint32_t *tab;
    const wv_rans_dom *dom; /* set by the caller (NULL from init) for a stream without cx: its
                               table's dominant symbol, decoded without the gather (rans_dec.c) */
    uint8_t *dst;
    size_t n, coded, i;
} wv_rans_dec;
/* Never reads outside src[0..size) nor writes outside dst[0..n); cx values must be < ntables. */
size_t wv_rans_dec_init(wv_rans_dec *d, uint8_t *dst, size_t n, const uint8_t *src, size_t size,
                        const uint8_t *cx, const uint32_t *tab);
size_t wv_rans_dec_finish(wv_rans_dec *d);
size_t wv_rans_dec_pair(wv_rans_dec *a, wv_rans_dec *b); /* finishes both */
/* Contexts from a prediction of k-byte elements (k = 2 or 4) instead of cx bytes: element
 * i's table is lut[min(max(bias - ((pred[i] >> shift) & mask), 0), 15)] (mag.c). */
typedef struct {
    unsigned k, shift, mask, bias;
    uint8_t lut[16];
} wv_rans_pctx;
/* Advances a and b as far as the AVX-512 kernel goes (nothing without it), the contexts of
 * their symbols from pred_a, pred_b; the cx bytes of the symbols from a->i and b->i on must
 * be in place before wv_rans_dec_pair finishes the streams. */
void wv_rans_dec_pair_pred(wv_rans_dec *a, wv_rans_dec *b, const wv_rans_pctx *c, const uint8_t *pred_a,
                           const uint8_t *pred_b);
/* Decodes what it can of a plane-0 stream of k-byte elements (k = 2 or 4) directly into out,
 * merged with the other planes low[0..k-2] (plane 1 first; merge order of planes.c);
 * returns elements done (d->i; 0 for another k or without the kernel). */
size_t wv_rans_dec_merge(wv_rans_dec *d, uint8_t *out, unsigned k, const uint8_t *const *low, int rot);
/* Same for a PAIRS plane 0 (symbols i -> elements 2i, 2i+1; d->n = ceil(n_el / 2); codes
 * >= nd other than 15 are corrupt, 15 takes the next byte of *esc..esc_end, planes.h):
 * returns symbols done, or an error for a corrupt code or too few escape bytes. */
size_t wv_rans_dec_merge_pairs(wv_rans_dec *d, uint8_t *out, unsigned k, const uint8_t *const *low, int rot,
                               const uint8_t *dict, unsigned nd, const uint8_t **esc, const uint8_t *esc_end);
#endif
