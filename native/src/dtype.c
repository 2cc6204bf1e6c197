/* dtype codes -> element sizes; the table is the one in docs/FORMAT.md. */
#include "wv_base.h"

static const uint8_t dtype_size[WV_DT_COUNT] = {
    1, 8, 4, 2, 2, 1, 1, 8, 4, 2, 1, 1, 1, 2, 4, 8, 1,
};

unsigned wv_dtype_size(unsigned dtype) { return dtype < WV_DT_COUNT ? dtype_size[dtype] : 0; }

