/* Python-callable API of the checkpoint-delta coder (native/src/ckpt.c, codec/ckpt.py). */
size_t wv_ckpt_bound(size_t n);
size_t wv_ckpt_encode(uint8_t *dst, size_t cap, const uint8_t *src, const uint8_t *base, size_t n,
                      unsigned dtype, unsigned base_dtype, unsigned mode);
size_t wv_ckpt_decode(uint8_t *dst, size_t n, const uint8_t *src, size_t src_size, const uint8_t *base,
                      unsigned dtype, unsigned base_dtype);
size_t wv_ckpt_payload_mode(const uint8_t *src, size_t src_size);
