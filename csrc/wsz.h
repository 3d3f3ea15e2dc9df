/* permessage-deflate's compression (RFC 7692) with zlib, pure C: a
 * message compressed into a buffer or a compressed message inflated,
 * with the context kept between messages or not, as negotiated. The
 * streams are made at first use, so a websocket that never compresses
 * costs nothing. */
#ifndef LX_WSZ_H
#define LX_WSZ_H

#include <stddef.h>
#include <stdint.h>

#include "buf.h"

typedef struct {
    void *z;         /* the zlib stream, NULL until first used */
    uint8_t inflate; /* a decompressor (else a compressor) */
    uint8_t bits;    /* window: a compressor's own, 9..15 */
    uint8_t fresh;   /* no context takeover: a new context each message */
} lx_wsz_t;

/* A compressor with a window of bits (9..15), or a decompressor (any
 * window up to 15); fresh: each message stands alone. */
void lx_wsz_init(lx_wsz_t *s, int inflate, int bits, int fresh);
void lx_wsz_free(lx_wsz_t *s);

/* data[0..len) compressed into *out (a buffer of pool), the sync flush's
 * final empty block left off (RFC 7692 7.2.1). LX_OK, or LX_ERR (no
 * memory). */
int lx_wsz_deflate(lx_wsz_t *s, lx_bufpool_t *pool, const char *data,
                   size_t len, lx_buf_t **out);

/* The compressed message in *in (its buffer may move; it stays the
 * caller's) inflated into *out, at most max bytes (0: any). 0; or the
 * close code the message earns: 1009 past max, 1007 when it is not
 * deflate data; or LX_ERR (no memory). */
int lx_wsz_inflate(lx_wsz_t *s, lx_bufpool_t *pool, lx_buf_t **in,
                   uint64_t max, lx_buf_t **out);

#endif
