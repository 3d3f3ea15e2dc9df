/* WebSocket framing (RFC 6455): client frames read and checked, server
 * frames' headers, the handshake's accept key. */
#include "ws.h"

#include <string.h>

#include "lx.h"

/* The current frame ended its data message: a text one (uncompressed)
 * must not end inside a character. 0, or -1007. */
static int finish(lx_ws_parser_t *p)
{
    int text = p->msg_opcode == LX_WS_TEXT && !p->msg_rsv1;
    p->msg_opcode = 0;
    if (text && !lx_utf8_complete(&p->utf8))
        return -LX_WS_INVALID_DATA;
    return 0;
}

void lx_ws_parser_init(lx_ws_parser_t *p, uint64_t max_message, int rsv1_ok)
{
    memset(p, 0, sizeof(*p));
    p->max_message = max_message;
    p->rsv1_ok = (uint8_t)(rsv1_ok != 0);
    lx_utf8_init(&p->utf8);
}

int lx_ws_frame_head(lx_ws_parser_t *p, const uint8_t *buf, size_t len)
{
    if (len < 2)
        return LX_AGAIN;
    uint8_t b0 = buf[0], b1 = buf[1];
    int fin = b0 >> 7, rsv1 = (b0 >> 6) & 1, opcode = b0 & 0x0f;
    if ((b0 & 0x30) || (rsv1 && !p->rsv1_ok))
        return -LX_WS_PROTOCOL_ERROR; /* RSV2, RSV3, or RSV1 unnegotiated */
    if (!(b1 & 0x80))
        return -LX_WS_PROTOCOL_ERROR; /* client frames are masked */
    uint64_t plen = b1 & 0x7f;
    size_t hl = 2;
    if (plen == 126)
        hl += 2;
    else if (plen == 127)
        hl += 8;
    if (len < hl + 4)
        return LX_AGAIN;
    if (plen == 126) {
        plen = (uint64_t)buf[2] << 8 | buf[3];
    } else if (plen == 127) {
        plen = 0;
        for (int i = 0; i < 8; i++)
            plen = plen << 8 | buf[2 + i];
        if (plen >> 63)
            return -LX_WS_PROTOCOL_ERROR;
    }
    if (opcode >= 8) {
        /* control: never fragmented, at most 125 bytes, no RSV1 */
        if (opcode > LX_WS_PONG || !fin || plen > 125 || rsv1)
            return -LX_WS_PROTOCOL_ERROR;
    } else if (opcode == LX_WS_CONT) {
        if (p->msg_opcode == 0 || rsv1)
            return -LX_WS_PROTOCOL_ERROR;
    } else if (opcode <= LX_WS_BINARY) {
        if (p->msg_opcode != 0)
            return -LX_WS_PROTOCOL_ERROR; /* a message inside a message */
    } else {
        return -LX_WS_PROTOCOL_ERROR; /* reserved data opcode */
    }
    if (opcode < 8) {
        uint64_t so_far = opcode == LX_WS_CONT ? p->msg_len : 0;
        if (p->max_message &&
            (plen > p->max_message || so_far > p->max_message - plen))
            return -LX_WS_TOO_BIG;
        if (opcode != LX_WS_CONT) {
            p->msg_opcode = (uint8_t)opcode;
            p->msg_rsv1 = (uint8_t)rsv1;
            p->msg_len = 0;
            lx_utf8_init(&p->utf8);
        }
        p->msg_len += plen;
    }
    p->opcode = (uint8_t)opcode;
    p->fin = (uint8_t)fin;
    p->rsv1 = (uint8_t)rsv1;
    memcpy(p->mask, buf + hl, 4);
    p->length = p->remaining = plen;
    if (opcode < 8 && fin && plen == 0) {
        int rc = finish(p);
        if (rc < 0)
            return rc;
    }
    return (int)(hl + 4);
}

int lx_ws_payload(lx_ws_parser_t *p, uint8_t *data, size_t n)
{
    if (n > p->remaining)
        n = (size_t)p->remaining;
    size_t phase = (size_t)((p->length - p->remaining) & 3), i = 0;
    /* byte by byte up to a word boundary of the mask, then 8 at a time */
    while (i < n && ((phase + i) & 3))
        data[i] ^= p->mask[(phase + i) & 3], i++;
    if (n - i >= 8) {
        uint8_t m8[8];
        for (int k = 0; k < 8; k++)
            m8[k] = p->mask[k & 3];
        uint64_t m;
        memcpy(&m, m8, 8);
        for (; i + 8 <= n; i += 8) {
            uint64_t w;
            memcpy(&w, data + i, 8);
            w ^= m;
            memcpy(data + i, &w, 8);
        }
    }
    for (; i < n; i++)
        data[i] ^= p->mask[(phase + i) & 3];
    p->remaining -= n;
    if (p->opcode >= 8)
        return 0;
    if (p->msg_opcode == LX_WS_TEXT && !p->msg_rsv1 &&
        lx_utf8_feed(&p->utf8, data, n) < 0)
        return -LX_WS_INVALID_DATA;
    if (p->remaining == 0 && p->fin)
        return finish(p);
    return 0;
}

int lx_ws_close_code_ok(int code)
{
    return (code >= 1000 && code <= 1003) || (code >= 1007 && code <= 1011) ||
           (code >= 3000 && code <= 4999);
}

int lx_ws_close_payload(const uint8_t *data, size_t n, int *code)
{
    if (n == 0) {
        *code = LX_WS_NO_STATUS;
        return 0;
    }
    if (n == 1)
        return -LX_WS_PROTOCOL_ERROR;
    *code = data[0] << 8 | data[1];
    if (!lx_ws_close_code_ok(*code))
        return -LX_WS_PROTOCOL_ERROR;
    lx_utf8_t u;
    lx_utf8_init(&u);
    if (lx_utf8_feed(&u, data + 2, n - 2) < 0 || !lx_utf8_complete(&u))
        return -LX_WS_INVALID_DATA;
    return 0;
}

size_t lx_ws_head(uint8_t out[10], int opcode, int fin, int rsv1, uint64_t len)
{
    out[0] = (uint8_t)((fin ? 0x80 : 0) | (rsv1 ? 0x40 : 0) | (opcode & 15));
    if (len < 126) {
        out[1] = (uint8_t)len;
        return 2;
    }
    if (len < 65536) {
        out[1] = 126;
        out[2] = (uint8_t)(len >> 8);
        out[3] = (uint8_t)len;
        return 4;
    }
    out[1] = 127;
    for (int i = 0; i < 8; i++)
        out[2 + i] = (uint8_t)(len >> (56 - 8 * i));
    return 10;
}

/* ------------------------------------------------------------------ */
/* SHA-1 (FIPS 180-4, 6.1) and the accept key */

static uint32_t rol(uint32_t x, int n)
{
    return (x << n) | (x >> (32 - n));
}

static void sha1_block(uint32_t h[5], const uint8_t *b)
{
    uint32_t w[80];
    for (int t = 0; t < 16; t++)
        w[t] = (uint32_t)b[4 * t] << 24 | (uint32_t)b[4 * t + 1] << 16 |
               (uint32_t)b[4 * t + 2] << 8 | b[4 * t + 3];
    for (int t = 16; t < 80; t++)
        w[t] = rol(w[t - 3] ^ w[t - 8] ^ w[t - 14] ^ w[t - 16], 1);
    uint32_t a = h[0], bb = h[1], c = h[2], d = h[3], e = h[4];
    for (int t = 0; t < 80; t++) {
        uint32_t f, k;
        if (t < 20) {
            f = (bb & c) | (~bb & d);
            k = 0x5a827999;
        } else if (t < 40) {
            f = bb ^ c ^ d;
            k = 0x6ed9eba1;
        } else if (t < 60) {
            f = (bb & c) | (bb & d) | (c & d);
            k = 0x8f1bbcdc;
        } else {
            f = bb ^ c ^ d;
            k = 0xca62c1d6;
        }
        uint32_t tmp = rol(a, 5) + f + e + k + w[t];
        e = d;
        d = c;
        c = rol(bb, 30);
        bb = a;
        a = tmp;
    }
    h[0] += a;
    h[1] += bb;
    h[2] += c;
    h[3] += d;
    h[4] += e;
}

void lx_sha1(const void *data, size_t n, uint8_t out[20])
{
    uint32_t h[5] = {0x67452301, 0xefcdab89, 0x98badcfe, 0x10325476,
                     0xc3d2e1f0};
    const uint8_t *p = data;
    size_t i;
    for (i = 0; i + 64 <= n; i += 64)
        sha1_block(h, p + i);
    uint8_t last[128];
    size_t rest = n - i;
    memcpy(last, p + i, rest);
    last[rest] = 0x80;
    size_t total = rest + 1 + 8 <= 64 ? 64 : 128;
    memset(last + rest + 1, 0, total - rest - 1);
    uint64_t bits = (uint64_t)n * 8;
    for (int k = 0; k < 8; k++)
        last[total - 1 - k] = (uint8_t)(bits >> (8 * k));
    sha1_block(h, last);
    if (total == 128)
        sha1_block(h, last + 64);
    for (int k = 0; k < 5; k++) {
        out[4 * k] = (uint8_t)(h[k] >> 24);
        out[4 * k + 1] = (uint8_t)(h[k] >> 16);
        out[4 * k + 2] = (uint8_t)(h[k] >> 8);
        out[4 * k + 3] = (uint8_t)h[k];
    }
}

void lx_ws_accept(const char *key, size_t len, char out[29])
{
    static const char guid[] = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
    static const char b64[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    uint8_t buf[256 + sizeof(guid)], digest[20];
    if (len > 256)
        len = 256; /* a key is 24 characters; longer ones are refused */
    memcpy(buf, key, len);
    memcpy(buf + len, guid, sizeof(guid) - 1);
    lx_sha1(buf, len + sizeof(guid) - 1, digest);
    char *o = out;
    for (int i = 0; i < 20; i += 3) {
        uint32_t v = (uint32_t)digest[i] << 16;
        if (i + 1 < 20)
            v |= (uint32_t)digest[i + 1] << 8;
        if (i + 2 < 20)
            v |= digest[i + 2];
        *o++ = b64[(v >> 18) & 63];
        *o++ = b64[(v >> 12) & 63];
        *o++ = i + 1 < 20 ? b64[(v >> 6) & 63] : '=';
        *o++ = i + 2 < 20 ? b64[v & 63] : '=';
    }
    *o = '\0';
}
