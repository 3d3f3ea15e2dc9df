/* The WebSocket opening handshake (RFC 6455 4.2, RFC 7692 5), pure C:
 * whether a request asks for a websocket and may have one, what it
 * offers (subprotocols, permessage-deflate), and what the 101 answers. */
#ifndef LX_WSHAKE_H
#define LX_WSHAKE_H

#include "http1.h"

/* permessage-deflate, as negotiated */
typedef struct {
    uint8_t on;
    uint8_t server_no_takeover; /* we reset our compressor per message */
    uint8_t client_no_takeover; /* the client resets its own */
    uint8_t server_bits;        /* our window, 8..15 */
    uint8_t client_bits;        /* the client's window, 8..15 */
} lx_deflate_t;

typedef struct {
    lx_str_t key;        /* Sec-WebSocket-Key */
    lx_str_t protocols;  /* Sec-WebSocket-Protocol, as sent (may be empty) */
    lx_str_t origin;     /* Origin, or empty */
    lx_str_t extensions; /* Sec-WebSocket-Extensions, as sent */
} lx_wshake_t;

/* Whether h asks for a websocket: Upgrade: websocket with Connection:
 * upgrade. */
int lx_wshake_wanted(const lx_http1_req_t *h);

/* Check a request that asks for a websocket: 0 with *w filled, or the
 * status that refuses it: 400 (not a GET of HTTP/1.1, or a key that is
 * not 16 bytes in base64), 426 (a version other than 13: the answer
 * carries Sec-WebSocket-Version: 13). */
int lx_wshake_check(const lx_http1_req_t *h, lx_wshake_t *w);

/* Whether name[0..n) is one of the subprotocols offered in the list
 * offers (exact, a whole element: never a substring). */
int lx_wshake_offered(lx_str_t offers, const char *name, size_t n);

/* The client's permessage-deflate offers in the Sec-WebSocket-Extensions
 * value ext, the first acceptable one taken (with max_bits, 8..15, the
 * largest window we allow ourselves): 1 with *d, else 0 (none, or none
 * acceptable: the connection goes on uncompressed). */
int lx_wshake_deflate(lx_str_t ext, int max_bits, lx_deflate_t *d);

/* The Sec-WebSocket-Extensions value that answers *d, NUL-terminated
 * into out (at least 128 bytes): its length. */
size_t lx_wshake_deflate_answer(const lx_deflate_t *d, char *out, size_t cap);

/* What a 101 answers with. */
typedef struct {
    const char *accept;          /* Sec-WebSocket-Accept, 28 characters */
    lx_str_t protocol;           /* the subprotocol chosen, or empty */
    const lx_deflate_t *deflate; /* NULL: no extension */
    lx_str_t fields; /* the application's field lines ("Name: value\r\n"
                        each), or empty; its framing fields and those the
                        handshake owns are left out */
    lx_str_t server; /* "Server: ...\r\n" unless fields have a Server */
} lx_wshake_answer_t;

/* The most bytes lx_wshake_response writes for a. */
size_t lx_wshake_response_max(const lx_wshake_answer_t *a);
/* The 101's head, empty line included, into out: its length. */
size_t lx_wshake_response(const lx_wshake_answer_t *a, char *out);
/* The value of the field name (lowercase, with its colon) in field lines
 * [p, p + n), trimmed: 1 with *value, else 0. */
int lx_wshake_field(const char *p, size_t n, const char *name,
                    lx_str_t *value);

#endif
