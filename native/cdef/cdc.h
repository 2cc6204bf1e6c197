/* Content-defined chunking, Xet's gear hash (cdc.c): chunk end offsets of src[0..n).
 * ends must hold wv_cdc_bound(n) entries; returns the count or an error code. */
size_t wv_cdc_bound(size_t n);
size_t wv_cdc_cuts(const uint8_t *src, size_t n, uint64_t *ends, size_t cap);
