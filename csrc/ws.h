/* WebSocket framing (RFC 6455), pure C: the frames a client sends, read
 * and checked incrementally; the frames a server sends; the opening
 * handshake's accept key. No allocation, no I/O, no Python.
 *
 * Reading: lx_ws_frame_head on the buffered bytes gives a frame's header
 * (or that more bytes are needed, or the close code the frame earns);
 * its payload follows, and lx_ws_payload unmasks it in place, as much of
 * it as is buffered at a time, checking a text message's UTF-8 across
 * frames as it goes (RFC 6455 8.1: fail as soon as it cannot be valid). */
#ifndef LX_WS_H
#define LX_WS_H

#include <stddef.h>
#include <stdint.h>

#include "utf8.h"

enum {
    LX_WS_CONT = 0x0,
    LX_WS_TEXT = 0x1,
    LX_WS_BINARY = 0x2,
    LX_WS_CLOSE = 0x8,
    LX_WS_PING = 0x9,
    LX_WS_PONG = 0xA,
};

/* Close codes (RFC 6455 7.4.1) the framing itself gives. */
#define LX_WS_NORMAL 1000
#define LX_WS_PROTOCOL_ERROR 1002
#define LX_WS_NO_STATUS 1005
#define LX_WS_INVALID_DATA 1007
#define LX_WS_TOO_BIG 1009

typedef struct {
    /* configuration */
    uint64_t max_message; /* bytes of a message (all its frames), 0: any */
    uint8_t rsv1_ok;      /* permessage-deflate was negotiated */
    /* the frame being read (after lx_ws_frame_head) */
    uint8_t opcode, fin, rsv1;
    uint8_t mask[4];
    uint64_t length;    /* its payload length */
    uint64_t remaining; /* payload bytes not unmasked yet */
    /* the data message in progress, fragmented or not */
    uint8_t msg_opcode; /* LX_WS_TEXT or LX_WS_BINARY; 0 between messages */
    uint8_t msg_rsv1;   /* its first frame had RSV1 (compressed) */
    uint64_t msg_len;   /* its payload bytes so far */
    lx_utf8_t utf8;     /* of a text message (uncompressed) */
} lx_ws_parser_t;

void lx_ws_parser_init(lx_ws_parser_t *p, uint64_t max_message, int rsv1_ok);

/* The header of the next frame from buf[0..len): its length in bytes (2
 * to 14), the frame described in p (its payload follows); LX_AGAIN
 * (nothing consumed) when buf holds less than the header; or minus the
 * close code the frame earns: -1002 for a protocol error (reserved bits
 * or opcodes, an unmasked frame, a control frame fragmented or longer
 * than 125 bytes, a continuation with no message to continue or a new
 * message inside one, a 64-bit length with its top bit set; a length not
 * in its shortest form is taken), -1009 for a message longer than
 * max_message. Call it only once the previous frame's payload was all
 * given to lx_ws_payload. */
int lx_ws_frame_head(lx_ws_parser_t *p, const uint8_t *buf, size_t len);

/* n (<= p->remaining) more payload bytes of the current frame, unmasked
 * in place. For a text message (uncompressed) the UTF-8 is checked
 * across frames: -1007 as soon as it cannot be valid, or when the
 * message ends inside a character. 0 otherwise. When the frame's last
 * byte is given and it ends a data message, the message is over. */
int lx_ws_payload(lx_ws_parser_t *p, uint8_t *data, size_t n);

/* Whether the current frame ends its data message (FIN, all payload
 * given). */
static inline int lx_ws_message_done(const lx_ws_parser_t *p)
{
    return p->remaining == 0 && p->msg_opcode == 0 && p->opcode <= 2;
}

/* A close frame's payload (unmasked, whole): 0 with *code (1005 when it
 * is empty) and the reason at data + 2; -1002 for a length of 1 or a
 * code that may not be sent; -1007 for a reason that is not UTF-8. */
int lx_ws_close_payload(const uint8_t *data, size_t n, int *code);

/* Whether code may be sent in a close frame (1000-1003, 1007-1011,
 * 3000-4999). */
int lx_ws_close_code_ok(int code);

/* A server frame's header (never masked) into out: its length, 2 to 10. */
size_t lx_ws_head(uint8_t out[10], int opcode, int fin, int rsv1,
                  uint64_t len);

/* Sec-WebSocket-Accept of a Sec-WebSocket-Key (RFC 6455 4.2.2): base64
 * of the SHA-1 of the key and the protocol's GUID; 28 characters and a
 * NUL into out. */
void lx_ws_accept(const char *key, size_t len, char out[29]);
/* SHA-1 (FIPS 180-4) of data[0..n) into out. */
void lx_sha1(const void *data, size_t n, uint8_t out[20]);

#endif
