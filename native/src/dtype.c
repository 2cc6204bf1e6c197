/* dtype codes -> element sizes (the table in docs/FORMAT.md) and exponent fields. */
#include "wv_base.h"

static const uint8_t dtype_size[WV_DT_COUNT] = {
    1, 8, 4, 2, 2, 1, 1, 8, 4, 2, 1, 1, 1, 2, 4, 8, 1,
};

unsigned wv_dtype_size(unsigned dtype) { return dtype < WV_DT_COUNT ? dtype_size[dtype] : 0; }


int wv_exp_layout(unsigned dtype, unsigned *shift, unsigned *mask, int *bias)
{
    switch (dtype) {
    case WV_DT_BF16: *shift = 7; *mask = 0xff; *bias = 127; return 1;
    case WV_DT_F32: *shift = 23; *mask = 0xff; *bias = 127; return 1;
    case WV_DT_F16: *shift = 10; *mask = 0x1f; *bias = 15; return 1;
    default: return 0;
    }
}
