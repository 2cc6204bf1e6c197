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

void wv_hist_ctx(const uint8_t *src, const uint8_t *cx, size_t n, uint32_t (*count)[256])
{
    for (size_t i = 0; i < n; i++) count[cx[i]][src[i]]++;
}
