/* permessage-deflate's compression with zlib: messages deflated and
 * inflated, the context kept between them or not. */
#include "wsz.h"

#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "lx.h"
#include "ws.h"

/* Our compressor's memory level: with a 4 KiB window (12 bits), about
 * 32 KiB a websocket that sends compressed. */
#define MEMLEVEL 5

static const char tail[4] = {0, 0, (char)0xff, (char)0xff};

void lx_wsz_init(lx_wsz_t *s, int inflate, int bits, int fresh)
{
    memset(s, 0, sizeof(*s));
    s->inflate = (uint8_t)(inflate != 0);
    s->bits = (uint8_t)bits;
    s->fresh = (uint8_t)(fresh != 0);
}

void lx_wsz_free(lx_wsz_t *s)
{
    if (s->z == NULL)
        return;
    if (s->inflate)
        inflateEnd(s->z);
    else
        deflateEnd(s->z);
    free(s->z);
    s->z = NULL;
}

static z_stream *stream(lx_wsz_t *s)
{
    if (s->z != NULL)
        return s->z;
    z_stream *z = calloc(1, sizeof(*z));
    if (z == NULL)
        return NULL;
    int rc = s->inflate
                 ? inflateInit2(z, -15)
                 : deflateInit2(z, Z_DEFAULT_COMPRESSION, Z_DEFLATED,
                                -(int)s->bits, MEMLEVEL, Z_DEFAULT_STRATEGY);
    if (rc != Z_OK) {
        free(z);
        return NULL;
    }
    s->z = z;
    return z;
}

int lx_wsz_deflate(lx_wsz_t *s, lx_bufpool_t *pool, const char *data,
                   size_t len, lx_buf_t **out)
{
    lx_buf_t *b = lx_buf_get(pool);
    if (b == NULL)
        return LX_ERR;
    if (len == 0) {
        /* An empty stored block's header (RFC 7692 7.2.3.6): a sync flush
         * right after another would give nothing at all. */
        b->data[b->len++] = 0;
        *out = b;
        return LX_OK;
    }
    z_stream *z = stream(s);
    if (z == NULL)
        goto fail;
    z->next_in = (Bytef *)data;
    z->avail_in = (uInt)len;
    for (;;) {
        if (lx_buf_reserve(pool, &b, len / 2 + 64, SIZE_MAX / 2) < 0)
            goto fail;
        z->next_out = (Bytef *)b->data + b->len;
        z->avail_out = (uInt)(b->cap - b->len);
        int rc = deflate(z, Z_SYNC_FLUSH);
        b->len = b->cap - z->avail_out;
        if (rc != Z_OK && rc != Z_BUF_ERROR)
            goto fail;
        if (z->avail_out != 0 && z->avail_in == 0)
            break;
    }
    if (b->len >= 4 && memcmp(b->data + b->len - 4, tail, 4) == 0)
        b->len -= 4;
    if (s->fresh)
        deflateReset(z);
    *out = b;
    return LX_OK;
fail:
    lx_buf_put(pool, b);
    return LX_ERR;
}

int lx_wsz_inflate(lx_wsz_t *s, lx_bufpool_t *pool, lx_buf_t **in,
                   uint64_t max, lx_buf_t **out)
{
    z_stream *z = stream(s);
    if (z == NULL || lx_buf_reserve(pool, in, 4, SIZE_MAX / 2) < 0)
        return LX_ERR;
    lx_buf_t *src = *in;
    memcpy(src->data + src->len, tail, 4);
    src->len += 4;
    lx_buf_t *b = lx_buf_get(pool);
    if (b == NULL)
        return LX_ERR;
    int code = 0;
    z->next_in = (Bytef *)lx_buf_head(src);
    z->avail_in = (uInt)lx_buf_avail(src);
    while (z->avail_in > 0) {
        if (lx_buf_reserve(pool, &b, lx_buf_avail(src) * 2 + 256,
                           SIZE_MAX / 2) < 0) {
            lx_buf_put(pool, b);
            return LX_ERR;
        }
        z->next_out = (Bytef *)b->data + b->len;
        z->avail_out = (uInt)(b->cap - b->len);
        int rc = inflate(z, Z_SYNC_FLUSH);
        b->len = b->cap - z->avail_out;
        if (rc == Z_STREAM_END || (rc != Z_OK && rc != Z_BUF_ERROR)) {
            code = LX_WS_INVALID_DATA; /* not the deflate data we take */
            break;
        }
        if (max && b->len > max) {
            code = LX_WS_TOO_BIG;
            break;
        }
        if (rc == Z_BUF_ERROR && z->avail_out != 0)
            break; /* no progress possible: the input is exhausted */
    }
    if (code != 0 || s->fresh)
        lx_wsz_free(s); /* the next message stands alone */
    if (code != 0) {
        lx_buf_put(pool, b);
        return code;
    }
    *out = b;
    return 0;
}
