/* Python-callable API of the native codec (codec/_lib.py).  cdef-clean: no macros
 * with expressions, no attributes.  Errors: see wv_isError / wv_getErrorName. */
int wv_isError(size_t code);
unsigned wv_errorCode(size_t code);
unsigned wv_dtype_size(unsigned dtype);
const char *wv_getErrorName(size_t code);
/* error codes (values read from wv_base.h at build time; codec/_lib.py maps them to classes) */
#define WV_ERR_NO_MEMORY ...
#define WV_ERR_DST_TOO_SMALL ...
#define WV_ERR_SRC_TRUNCATED ...
#define WV_ERR_CORRUPT ...
#define WV_ERR_BAD_MAGIC ...
#define WV_ERR_BAD_VERSION ...
#define WV_ERR_HEADER_CHECKSUM ...
#define WV_ERR_PAYLOAD_CHECKSUM ...
#define WV_ERR_RAW_CHECKSUM ...
#define WV_ERR_RESERVED_BITS ...
#define WV_ERR_BAD_DTYPE ...
#define WV_ERR_BAD_SIZE ...
#define WV_ERR_UNSUPPORTED_CAST ...
#define WV_ERR_BASE_MISSING ...
#define WV_ERR_UNKNOWN_CODEC ...
#define WV_ERR_BAD_MODE ...
#define WV_ERR_NOT_COMPRESSIBLE ...

uint32_t wv_crc32c(uint32_t crc, const void *buf, size_t len);

#define WV_FRAME_HEADER_SIZE 32
typedef struct {
    unsigned codec, dtype, flags, base_dtype;
    uint32_t raw_size, payload_size, raw_crc, payload_crc;
    unsigned version;
} wv_frame_header;
size_t wv_frame_parse(const uint8_t *src, size_t src_size, wv_frame_header *h);
size_t wv_frame_write_header(uint8_t *dst, const wv_frame_header *h);
size_t wv_frame_bound(size_t raw_size);

typedef struct wv_ctx wv_ctx;
wv_ctx *wv_ctx_create(void);
void wv_ctx_free(wv_ctx *ctx);
void wv_ctx_set_contexts(wv_ctx *ctx, int on);
void wv_ctx_set_mag(wv_ctx *ctx, int on);

/* codec: 0 raw, 2 planes, 3 xor (falls back to planes, then raw, per frame) */
size_t wv_encode_frame(wv_ctx *ctx, unsigned codec, uint8_t *dst, size_t cap, const uint8_t *src, size_t n,
                       unsigned dtype, const uint8_t *base, size_t base_size, unsigned base_dtype);
size_t wv_decode_frame(wv_ctx *ctx, const uint8_t *frame, size_t size, uint8_t *dst, size_t dst_size,
                       const uint8_t *base, size_t base_size);
/* many frames per call (GIL released once); codec 0/2/3 only */
size_t wv_encode_many(wv_ctx *ctx, unsigned codec, uint8_t *dst, size_t cap, const uint8_t *src, size_t n,
                      unsigned dtype, const uint8_t *base, size_t base_size, unsigned base_dtype,
                      size_t frame_size, uint32_t *frame_sizes);
size_t wv_scan_frames(const uint8_t *src, size_t size, uint64_t *offsets, uint32_t *raw_sizes, size_t max_frames,
                      uint32_t *native_only);
size_t wv_decode_many(wv_ctx *ctx, const uint8_t *src, const uint64_t *offsets, size_t count, size_t src_end,
                      uint8_t *dst, size_t dst_size, uint64_t raw_start, const uint8_t *base, size_t base_size,
                      uint64_t *failed);
/* estimated payload bytes of planes (base NULL) or xor coding, without coding */
size_t wv_payload_estimate(wv_ctx *ctx, const uint8_t *src, size_t n, unsigned dtype, const uint8_t *base,
                           unsigned base_dtype);
int wv_cast_supported(unsigned dtype, unsigned base_dtype);

/* test hooks: reference vs dispatched kernels */
void wv_split(const uint8_t *src, size_t n_el, unsigned k, int rot, uint8_t *const *planes);
void wv_merge(uint8_t *dst, size_t n_el, unsigned k, int rot, const uint8_t *const *planes);
void wv_split_ref(const uint8_t *src, size_t n_el, unsigned k, int rot, uint8_t *const *planes);
void wv_merge_ref(uint8_t *dst, size_t n_el, unsigned k, int rot, const uint8_t *const *planes);
uint32_t wv_crc32c_scalar(uint32_t crc, const void *buf, size_t len);
int wv_rans_select_kernel(int kernel);
int wv_mag_select_kernel(int kernel);
size_t wv_pairs_expand(uint8_t *out, size_t n, const uint8_t *pairs, const uint8_t *dict, unsigned nd,
                       const uint8_t **esc, const uint8_t *esc_end, int ref);
