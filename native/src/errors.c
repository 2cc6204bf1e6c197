/* Error codes -> names, in one switch (as zstd lib/common/error_private.c). */
#include "wv_base.h"

int wv_isError(size_t code) { return code > WV_ERROR(WV_ERROR_CODE_MAX); }

unsigned wv_errorCode(size_t code) { return wv_isError(code) ? (unsigned)(0 - code) : 0; }

const char *wv_getErrorName(size_t code)
{
    switch (wv_errorCode(code)) {
    case WV_OK: return "no error";
    case WV_ERR_NO_MEMORY: return "out of memory: scratch buffers could not be allocated";
    case WV_ERR_DST_TOO_SMALL: return "destination buffer too small";
    case WV_ERR_SRC_TRUNCATED: return "input truncated";
    case WV_ERR_CORRUPT: return "corrupt payload";
    case WV_ERR_BAD_MAGIC: return "bad frame magic";
    case WV_ERR_BAD_VERSION: return "unsupported frame version";
    case WV_ERR_HEADER_CHECKSUM: return "frame header checksum mismatch";
    case WV_ERR_PAYLOAD_CHECKSUM: return "payload checksum mismatch";
    case WV_ERR_RAW_CHECKSUM: return "decoded data checksum mismatch";
    case WV_ERR_RESERVED_BITS: return "reserved bits set";
    case WV_ERR_BAD_DTYPE: return "unknown dtype code";
    case WV_ERR_BAD_SIZE: return "size is not a multiple of the element size or too large";
    case WV_ERR_UNSUPPORTED_CAST: return "no prediction from this base dtype to this dtype";
    case WV_ERR_BASE_MISSING: return "delta frame needs its base tensor, none was given";
    case WV_ERR_UNKNOWN_CODEC: return "unknown codec id (a frame from a newer release, or damaged)";
    case WV_ERR_BAD_MODE: return "invalid checkpoint coder mode";
    case WV_ERR_NOT_COMPRESSIBLE: return "coding does not pay";
    default: return "unknown error code";
    }
}
