/* weightvault native library: common declarations (errors, dtypes, byte access).
 *
 * Error contract (after zstd lib/zstd_errors.h): functions that can fail return
 * size_t; an error is (size_t)-code, tested with wv_isError().  Codes below 100
 * are stable and are mirrored by codec/_lib.py; leave gaps when adding.
 */
#ifndef WV_BASE_H
#define WV_BASE_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define WV_VERSION_MAJOR 0
#define WV_VERSION_MINOR 2

unsigned wv_version(void);

/* ---- errors (errors.c) ----
 * One code per cause; wv_getErrorName gives the why-string, and codec/_lib.py maps
 * each code to one class of weightvault.errors.  Code 1 (a catch-all) is retired. */
enum {
    WV_OK = 0,
    WV_ERR_NO_MEMORY = 2,
    WV_ERR_DST_TOO_SMALL = 10,
    WV_ERR_SRC_TRUNCATED = 11,
    WV_ERR_CORRUPT = 20,        /* payload structure is inconsistent */
    WV_ERR_BAD_MAGIC = 21,
    WV_ERR_BAD_VERSION = 22,
    WV_ERR_HEADER_CHECKSUM = 23,
    WV_ERR_PAYLOAD_CHECKSUM = 24,
    WV_ERR_RAW_CHECKSUM = 25,
    WV_ERR_RESERVED_BITS = 26,
    WV_ERR_BAD_DTYPE = 30,
    WV_ERR_BAD_SIZE = 31,       /* size not a multiple of the element size, or too large */
    WV_ERR_UNSUPPORTED_CAST = 32,
    WV_ERR_BASE_MISSING = 33,   /* a delta frame without the base it is predicted from */
    WV_ERR_UNKNOWN_CODEC = 34,
    WV_ERR_BAD_MODE = 35,       /* ckpt coder: an invalid mode word */
    WV_ERR_NOT_COMPRESSIBLE = 40 /* encoder: coding would not pay, store raw */
};
#define WV_ERROR_CODE_MAX 99 /* wv_isError: (size_t)-1 .. -WV_ERROR_CODE_MAX are errors */
#define WV_ERROR(e) ((size_t) - (e))
int wv_isError(size_t code);
unsigned wv_errorCode(size_t code);
const char *wv_getErrorName(size_t code);

#define WV_RETURN_ERROR_IF(cond, err) do { if (cond) return WV_ERROR(err); } while (0)
#define WV_FORWARD_IF_ERROR(expr) do { size_t wv_r_ = (expr); if (wv_isError(wv_r_)) return wv_r_; } while (0)

/* ---- dtype codes, stored in frame headers (docs/FORMAT.md) ---- */
enum {
    WV_DT_OPAQUE = 0, WV_DT_F64 = 1, WV_DT_F32 = 2, WV_DT_F16 = 3, WV_DT_BF16 = 4,
    WV_DT_F8_E4M3 = 5, WV_DT_F8_E5M2 = 6, WV_DT_I64 = 7, WV_DT_I32 = 8, WV_DT_I16 = 9,
    WV_DT_I8 = 10, WV_DT_U8 = 11, WV_DT_BOOL = 12, WV_DT_U16 = 13, WV_DT_U32 = 14,
    WV_DT_U64 = 15, WV_DT_F8_E8M0 = 16,
    WV_DT_COUNT = 17
};
unsigned wv_dtype_size(unsigned dtype);      /* 0 for an unknown code */
/* Exponent field of a BF16/F16/F32 element v: (v >> *shift) & *mask, bias *bias; 0 for other dtypes. */
int wv_exp_layout(unsigned dtype, unsigned *shift, unsigned *mask, int *bias);

/* ---- little-endian helpers ---- */
static inline uint32_t wv_rd32(const uint8_t *p) { uint32_t v; memcpy(&v, p, 4); return v; }
static inline uint16_t wv_rd16(const uint8_t *p) { uint16_t v; memcpy(&v, p, 2); return v; }
static inline void wv_wr32(uint8_t *p, uint32_t v) { memcpy(p, &v, 4); }
static inline void wv_wr16(uint8_t *p, uint16_t v) { memcpy(p, &v, 2); }

/* Largest frame a decoder accepts.  The Python layer writes 256 KiB frames;
 * decoders accept up to 16 MiB so the constant can grow without a format bump. */
#define WV_MAX_RAW (16u << 20)

#endif
