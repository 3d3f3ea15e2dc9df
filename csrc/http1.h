/* Strict HTTP/1.1 request parser and chunked decoder (RFC 9112).
 *
 * Pure functions over caller-owned memory, in the manner of a zero-copy
 * parser: no allocation, no errno, no Python. The request head parser is
 * re-entrant on a growing buffer: call it again with the same buffer (now
 * longer) after LX_AGAIN. Everything it reports points into that buffer. */
#ifndef LX_HTTP1_H
#define LX_HTTP1_H

#include <stddef.h>
#include <stdint.h>

#include "lx.h"

typedef struct {
    const char *base;
    size_t len;
} lx_str_t;

typedef struct {
    lx_str_t name;  /* as sent (case kept), a non-empty token */
    lx_str_t value; /* leading and trailing SP/HTAB removed */
} lx_header_t;

typedef struct {
    size_t max_request_line; /* bytes before the CRLF; over it: 414 */
    size_t max_field_size;   /* bytes of one header line before CRLF: 431 */
    size_t max_fields;       /* number of header lines; over it: 431 */
} lx_http1_limits_t;

/* Request flags, derived from the header fields while parsing. */
#define LX_REQ_CHUNKED 0x01    /* Transfer-Encoding: chunked */
#define LX_REQ_KEEPALIVE 0x02  /* connection may persist after this request */
#define LX_REQ_EXPECT_100 0x04 /* Expect: 100-continue */
#define LX_REQ_UPGRADE 0x08    /* Connection: upgrade token present */
#define LX_REQ_HAS_BODY 0x10   /* chunked, or content_length > 0 */

typedef struct {
    lx_str_t method;
    lx_str_t target;        /* the whole request-target as sent */
    lx_str_t path;          /* target up to the first '?' (not decoded) */
    lx_str_t query;         /* after the first '?', empty if none */
    int minor_version;      /* 0 or 1 (HTTP/1.0, HTTP/1.1) */
    unsigned flags;         /* LX_REQ_* */
    int64_t content_length; /* -1 when absent (or chunked) */
    lx_header_t *headers;   /* caller-provided array ... */
    size_t num_headers;     /* in: capacity of headers; out: count */
} lx_http1_req_t;

/* Parse a request head from buf[0..len).
 * Returns the number of bytes of the head (through the empty line) when
 * complete; LX_AGAIN when all bytes so far are valid but the head is not
 * complete; LX_ERR when the request must be rejected, with *status set to the
 * response status (400, 414, 431, 501, 505). A head that can already be told
 * too long is rejected before it completes. Leading empty lines (CRLF) before
 * the request line are skipped and counted in the return value. */
int lx_http1_parse_request(const char *buf, size_t len, lx_http1_req_t *req,
                           const lx_http1_limits_t *limits, int *status);

/* The path of a request target's path part, as origin-form has it: for
 * absolute-form (http://host/x, as proxies send) the part after the
 * authority ("/" when none); anything else as it is. */
lx_str_t lx_http1_origin_path(lx_str_t path);

/* The value of h's first header field named lower[0..n) (lower case,
 * lx_caseeq's terms); base NULL when it has none. */
lx_str_t lx_http1_field(const lx_http1_req_t *h, const char *lower, size_t n);

/* Whether s[0..n) is a token (RFC 9110 5.6.2): what a field name is. */
int lx_http1_is_token(const char *s, size_t n);

/* Whether the comma-separated list value v[0..n) (no control byte but
 * HTAB) has the element lower[0..len), a lower-case token, case aside:
 * "close" in "Keep-Alive, Close". */
int lx_http1_list_has(const char *v, size_t n, const char *lower, size_t len);

/* Chunked body decoder: an explicit state machine fed any split of input. */
typedef struct {
    uint64_t remaining; /* bytes left in the current chunk's data */
    uint32_t state;
    uint32_t line_len; /* bytes of the current size/trailer line so far */
    uint32_t trailer_count;
    uint32_t pad_;
} lx_chunked_t;

#define LX_CHUNKED_DATA 1 /* now at chunk data: d->remaining > 0 bytes */
#define LX_CHUNKED_END 2  /* last-chunk and trailer section consumed */

void lx_chunked_init(lx_chunked_t *d);

/* Consume framing (size lines, extensions, CRLF after data, last-chunk,
 * trailer fields) from buf[0..len). *consumed is set to the bytes eaten.
 * Returns LX_CHUNKED_DATA when positioned at chunk data (it does not consume
 * data: the caller takes up to d->remaining bytes at buf + *consumed and
 * reports them with lx_chunked_take), LX_CHUNKED_END when the body is over
 * (*consumed ends right after the final CRLF), LX_AGAIN when buf ran out
 * inside framing (all of it consumed and remembered), LX_ERR on any syntax
 * error (400) or when a size line or the trailers exceed their limits. */
int lx_chunked_parse(lx_chunked_t *d, const char *buf, size_t len,
                     size_t *consumed);

/* The caller took n (<= d->remaining) data bytes. */
void lx_chunked_take(lx_chunked_t *d, uint64_t n);

/* Whether the decoder sits in chunk data with bytes left to take (while a
 * size line is parsed, remaining holds the size read so far). */
int lx_chunked_in_data(const lx_chunked_t *d);

#endif
