/* Content-defined chunking (cdc.c). */
#ifndef WV_CDC_H
#define WV_CDC_H
#include "wv_base.h"
size_t wv_cdc_bound(size_t n);
size_t wv_cdc_cuts(const uint8_t *src, size_t n, uint64_t *ends, size_t cap);
#endif
