/* dtype codes -> element sizes; the table is the one in docs/FORMAT.md. */
#include "wv_base.h"

static const uint8_t dtype_size[WV_DT_COUNT] = {
    1, 8, 4, 2, 2, 1, 1, 8, 4, 2, 1, 1, 1, 2, 4, 8, 1,
};

unsigned wv_dtype_size(unsigned dtype) { return dtype < WV_DT_COUNT ? dtype_size[dtype] : 0; }

int wv_dtype_is_float(unsigned dtype)
{
    return dtype == WV_DT_F64 || dtype == WV_DT_F32 || dtype == WV_DT_F16 || dtype == WV_DT_BF16 ||
           dtype == WV_DT_F8_E4M3 || dtype == WV_DT_F8_E5M2 || dtype == WV_DT_F8_E8M0;
}
