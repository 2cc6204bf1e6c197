/* Per-thread coding context (ctx.h). */
#include "ctx.h"
#include <stdlib.h>

wv_ctx *wv_ctx_create(void)
{
    wv_ctx *c = calloc(1, sizeof *c);
    if (c) c->use_contexts = c->use_mag = c->use_sparse = 1;
    if (c && wv_isError(wv_ctx_reserve(c, 1u << 18))) { wv_ctx_free(c); return NULL; }
    return c;
}

void wv_ctx_free(wv_ctx *c)
{
    if (!c) return;
    free(c->planes); free(c->delta); free(c->pred); free(c->cx); free(c->stream); free(c->alt); free(c->pairs);
    free(c);
}

size_t wv_ctx_reserve(wv_ctx *c, size_t raw)
{
    if (raw <= c->cap) return 0;
    WV_RETURN_ERROR_IF(raw > WV_MAX_RAW, WV_ERR_BAD_SIZE);
    uint8_t **bufs[] = {&c->planes, &c->delta, &c->pred, &c->cx, &c->stream, &c->alt, &c->pairs};
    size_t sizes[] = {raw, raw, raw, raw, raw + 1024, WV_PAYLOAD_BOUND(raw), raw / 2 + 64};
    for (int k = 0; k < 7; k++) {
        free(*bufs[k]);
        *bufs[k] = malloc(sizes[k]);
        if (!*bufs[k]) { c->cap = 0; return WV_ERROR(WV_ERR_NO_MEMORY); }
    }
    c->cap = raw;
    return 0;
}

void wv_ctx_set_contexts(wv_ctx *c, int on) { c->use_contexts = on != 0; }
void wv_ctx_set_mag(wv_ctx *c, int on) { c->use_mag = on != 0; }
void wv_ctx_set_sparse(wv_ctx *c, int mode) { c->use_sparse = mode < 0 ? 0 : mode > 2 ? 2 : mode; }
