/* Byte histograms.  Four sub-tables break the store-to-load dependency when the
 * same byte repeats (exponent planes are ~2.6 bits, so repeats are the norm). */
#include "rans.h"

void wv_hist(const uint8_t *src, size_t n, uint32_t count[256])
{
    uint32_t c[4][256];
    memset(c, 0, sizeof c);
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        uint64_t v;
        memcpy(&v, src + i, 8);
        c[0][v & 0xff]++; c[1][(v >> 8) & 0xff]++; c[2][(v >> 16) & 0xff]++; c[3][(v >> 24) & 0xff]++;
        c[0][(v >> 32) & 0xff]++; c[1][(v >> 40) & 0xff]++; c[2][(v >> 48) & 0xff]++; c[3][v >> 56]++;
    }
    for (; i < n; i++) c[0][src[i]]++;
    for (int s = 0; s < 256; s++) count[s] = c[0][s] + c[1][s] + c[2][s] + c[3][s];
}

/* Context histograms of XOR planes, which are mostly one symbol: four interleaved
 * copies keep consecutive increments of the same bin off one store->load chain. */
void wv_hist_ctx(const uint8_t *src, const uint8_t *cx, size_t n, unsigned nctx, uint32_t (*count)[256])
{
    uint32_t c1[WV_RANS_MAX_TABLES * 256], c2[WV_RANS_MAX_TABLES * 256], c3[WV_RANS_MAX_TABLES * 256];
    uint32_t *c0 = &count[0][0];
    size_t used = (size_t)nctx * 256, i = 0;
    memset(c0, 0, used * sizeof *c0);
    memset(c1, 0, used * sizeof *c1);
    memset(c2, 0, used * sizeof *c2);
    memset(c3, 0, used * sizeof *c3);
    for (; i + 4 <= n; i += 4) {
        c0[(size_t)cx[i] << 8 | src[i]]++;
        c1[(size_t)cx[i + 1] << 8 | src[i + 1]]++;
        c2[(size_t)cx[i + 2] << 8 | src[i + 2]]++;
        c3[(size_t)cx[i + 3] << 8 | src[i + 3]]++;
    }
    for (; i < n; i++) c0[(size_t)cx[i] << 8 | src[i]]++;
    for (size_t k = 0; k < used; k++) c0[k] += c1[k] + c2[k] + c3[k];
}
