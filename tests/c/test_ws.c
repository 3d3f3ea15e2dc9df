/* Unit tests of the WebSocket framing (ws.c). */
#include "../../csrc/utf8.c"
#include "../../csrc/ws.c"

#include <stdio.h>
#include <stdlib.h>

#include "check.h"

static void hex(const uint8_t *d, size_t n, char *out)
{
    for (size_t i = 0; i < n; i++)
        sprintf(out + 2 * i, "%02x", d[i]);
}

static void sha1_is(const char *msg, size_t n, const char *want)
{
    uint8_t d[20];
    char h[41];
    lx_sha1(msg, n, d);
    hex(d, 20, h);
    CHECK(strcmp(h, want) == 0, "sha1 of %zu bytes: %s", n, h);
}

static void test_sha1(void)
{
    sha1_is("", 0, "da39a3ee5e6b4b0d3255bfef95601890afd80709");
    sha1_is("abc", 3, "a9993e364706816aba3e25717850c26c9cd0d89d");
    const char *m56 =
        "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
    sha1_is(m56, strlen(m56), "84983e441c3bd26ebaae4aa1f95129e5e54670f1");
    char *a = malloc(1000000);
    memset(a, 'a', 1000000);
    sha1_is(a, 1000000, "34aa973cd4c4daa4f61eeb2bdbad27316534016f");
    free(a);
    char out[29];
    lx_ws_accept("dGhlIHNhbXBsZSBub25jZQ==", 24, out);
    CHECK(strcmp(out, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=") == 0,
          "RFC 6455's accept key: %s", out);
}

static int utf8_ok(const char *s, size_t n)
{
    lx_utf8_t u;
    lx_utf8_init(&u);
    return lx_utf8_feed(&u, (const uint8_t *)s, n) == 0 &&
           lx_utf8_complete(&u);
}

/* Fed one byte at a time: the index of the byte found bad, -1 if none. */
static int utf8_fails_at(const char *s, size_t n)
{
    lx_utf8_t u;
    lx_utf8_init(&u);
    for (size_t i = 0; i < n; i++)
        if (lx_utf8_feed(&u, (const uint8_t *)s + i, 1) < 0)
            return (int)i;
    return -1;
}

static void test_utf8(void)
{
    const char *hello = "\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5";
    CHECK(utf8_ok(hello, strlen(hello)), "kosme");
    CHECK(utf8_ok("plain ascii, long enough for words", 34), "ascii");
    CHECK(utf8_ok("\xf4\x8f\xbf\xbf", 4), "U+10FFFF");
    CHECK(!utf8_ok("\xf4\x90\x80\x80", 4), "past U+10FFFF");
    CHECK(!utf8_ok("\xc0\xaf", 2) && !utf8_ok("\xe0\x80\xaf", 3) &&
              !utf8_ok("\xf0\x80\x80\xaf", 4),
          "overlong");
    CHECK(!utf8_ok("\xed\xa0\x80", 3), "surrogate");
    CHECK(!utf8_ok("\xce", 1), "unfinished");
    CHECK(!utf8_ok("\xff", 1) && !utf8_ok("\x80", 1), "bad bytes");
    /* fail fast: at the first byte that cannot be valid */
    CHECK(utf8_fails_at("\xce\xba\xed\xa0\x80", 5) == 3, "surrogate at 3");
    CHECK(utf8_fails_at("ab\xf4\x90", 4) == 3, "past U+10FFFF at 3");
    CHECK(utf8_fails_at("\xe0\x80", 2) == 1, "overlong at 1");
    /* split anywhere, the same verdict */
    const char *mixed = "a\xce\xba\xe1\xbd\xb9 \xf0\x9f\x98\x80z";
    size_t n = strlen(mixed);
    for (size_t cut = 0; cut <= n; cut++) {
        lx_utf8_t u;
        lx_utf8_init(&u);
        int rc = lx_utf8_feed(&u, (const uint8_t *)mixed, cut);
        rc |= lx_utf8_feed(&u, (const uint8_t *)mixed + cut, n - cut);
        CHECK(rc == 0 && lx_utf8_complete(&u), "split at %zu", cut);
    }
}

/* A masked client frame into out: its length. */
static size_t client_frame(uint8_t *out, int b0, const void *payload, size_t n,
                           const uint8_t mask[4])
{
    size_t h = 0;
    out[h++] = (uint8_t)b0;
    if (n < 126) {
        out[h++] = (uint8_t)(0x80 | n);
    } else if (n < 65536) {
        out[h++] = 0x80 | 126;
        out[h++] = (uint8_t)(n >> 8);
        out[h++] = (uint8_t)n;
    } else {
        out[h++] = 0x80 | 127;
        for (int i = 0; i < 8; i++)
            out[h++] = (uint8_t)((uint64_t)n >> (56 - 8 * i));
    }
    memcpy(out + h, mask, 4);
    h += 4;
    for (size_t i = 0; i < n; i++)
        out[h + i] = ((const uint8_t *)payload)[i] ^ mask[i & 3];
    return h + n;
}

static const uint8_t MASK[4] = {0x37, 0xfa, 0x21, 0x3d};

static int head_of(lx_ws_parser_t *p, int b0, const void *payload, size_t n)
{
    uint8_t buf[300];
    size_t len = client_frame(buf, b0, payload, n, MASK);
    int rc = lx_ws_frame_head(p, buf, len);
    if (rc > 0)
        rc = lx_ws_payload(p, buf + rc, n) < 0 ? -9999 : rc;
    return rc;
}

static void test_frames(void)
{
    lx_ws_parser_t p;
    /* RFC 6455 5.7: a masked "Hello" */
    uint8_t hello[] = {0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d,
                       0x7f, 0x9f, 0x4d, 0x51, 0x58};
    lx_ws_parser_init(&p, 0, 0);
    for (size_t cut = 0; cut < 6; cut++)
        CHECK(lx_ws_frame_head(&p, hello, cut) == LX_AGAIN, "short %zu", cut);
    int h = lx_ws_frame_head(&p, hello, sizeof(hello));
    CHECK(h == 6 && p.opcode == LX_WS_TEXT && p.fin && p.remaining == 5,
          "hello head");
    CHECK(lx_ws_payload(&p, hello + h, 5) == 0 &&
              memcmp(hello + h, "Hello", 5) == 0 && lx_ws_message_done(&p),
          "hello payload");

    /* protocol errors */
    uint8_t unmasked[] = {0x81, 0x05, 'H', 'e', 'l', 'l', 'o'};
    lx_ws_parser_init(&p, 0, 0);
    CHECK(lx_ws_frame_head(&p, unmasked, sizeof(unmasked)) == -1002,
          "unmasked");
    for (int rsv = 0x10; rsv <= 0x40; rsv <<= 1) {
        lx_ws_parser_init(&p, 0, 0);
        CHECK(head_of(&p, 0x81 | rsv, "x", 1) == -1002, "rsv %x", rsv);
    }
    lx_ws_parser_init(&p, 0, 1);
    CHECK(head_of(&p, 0xc1, "x", 1) > 0 && p.rsv1, "rsv1 when negotiated");
    for (int op = 3; op <= 15; op++) {
        if (op >= 8 && op <= 10)
            continue;
        lx_ws_parser_init(&p, 0, 0);
        CHECK(head_of(&p, 0x80 | op, "", 0) == -1002, "opcode %d", op);
    }
    char big[126];
    memset(big, 'p', sizeof(big));
    lx_ws_parser_init(&p, 0, 0);
    CHECK(head_of(&p, 0x89, big, 125) > 0, "ping of 125");
    lx_ws_parser_init(&p, 0, 0);
    CHECK(head_of(&p, 0x89, big, 126) == -1002, "ping of 126");
    lx_ws_parser_init(&p, 0, 0);
    CHECK(head_of(&p, 0x09, "x", 1) == -1002, "fragmented ping");
    lx_ws_parser_init(&p, 0, 0);
    CHECK(head_of(&p, 0x80, "x", 1) == -1002, "continuation of nothing");
    uint8_t huge[14] = {0x82, 0xff, 0x80, 0, 0, 0, 0, 0, 0, 1, 1, 2, 3, 4};
    lx_ws_parser_init(&p, 0, 0);
    CHECK(lx_ws_frame_head(&p, huge, sizeof(huge)) == -1002,
          "64-bit length with its top bit");

    /* fragments, a control frame between them, UTF-8 across them */
    const char *k = "\xce\xba\xe1\xbd\xb9\xcf\x83";
    lx_ws_parser_init(&p, 0, 0);
    CHECK(head_of(&p, 0x01, k, 3) > 0 && !lx_ws_message_done(&p),
          "first fragment");
    CHECK(head_of(&p, 0x89, "ping", 4) > 0, "a ping between");
    CHECK(head_of(&p, 0x01, "x", 1) == -1002, "a new message inside one");
    lx_ws_parser_init(&p, 0, 0);
    CHECK(head_of(&p, 0x01, k, 3) > 0, "first fragment again");
    CHECK(head_of(&p, 0x00, k + 3, 2) > 0, "middle");
    CHECK(head_of(&p, 0x80, k + 5, 2) > 0 && lx_ws_message_done(&p),
          "last fragment");
    CHECK(head_of(&p, 0x81, "next", 4) > 0, "the next message");
    /* a text message that ends inside a character */
    lx_ws_parser_init(&p, 0, 0);
    CHECK(head_of(&p, 0x01, k, 1) > 0, "unfinished fragment");
    CHECK(head_of(&p, 0x80, "", 0) == -1007, "ends unfinished");
    lx_ws_parser_init(&p, 0, 0);
    CHECK(head_of(&p, 0x81, "\xed\xa0\x80", 3) == -9999, "invalid text");
    lx_ws_parser_init(&p, 0, 0);
    CHECK(head_of(&p, 0x82, "\xed\xa0\x80", 3) > 0, "binary is any bytes");
    /* the message size */
    lx_ws_parser_init(&p, 10, 0);
    CHECK(head_of(&p, 0x82, "0123456789", 10) > 0, "at the limit");
    CHECK(head_of(&p, 0x82, "0123456789a", 11) == -1009, "past it");
    lx_ws_parser_init(&p, 10, 0);
    CHECK(head_of(&p, 0x02, "012345", 6) > 0, "fragment");
    CHECK(head_of(&p, 0x80, "01234", 5) == -1009, "fragments past it");
    /* 16- and 64-bit lengths, and unmasking in pieces of any size */
    static uint8_t payload[70000], frame[70020];
    for (size_t i = 0; i < sizeof(payload); i++)
        payload[i] = (uint8_t)(i * 7 + 3);
    size_t sizes[] = {126, 65535, 65536, 70000};
    for (int s = 0; s < 4; s++) {
        size_t fl = client_frame(frame, 0x82, payload, sizes[s], MASK);
        lx_ws_parser_init(&p, 0, 0);
        int hl = lx_ws_frame_head(&p, frame, fl);
        CHECK(hl > 0 && p.length == sizes[s], "length %zu", sizes[s]);
        size_t at = (size_t)hl, step = 1;
        while (p.remaining > 0) {
            size_t n = step < p.remaining ? step : (size_t)p.remaining;
            lx_ws_payload(&p, frame + at, n);
            at += n;
            step = step * 3 + 1;
        }
        CHECK(memcmp(frame + hl, payload, sizes[s]) == 0, "unmasked %zu",
              sizes[s]);
    }
}

static void test_close_and_head(void)
{
    int code = 0;
    CHECK(lx_ws_close_payload(NULL, 0, &code) == 0 && code == 1005, "empty");
    uint8_t one[] = {0x03};
    CHECK(lx_ws_close_payload(one, 1, &code) == -1002, "one byte");
    int good[] = {1000, 1001, 1002, 1003, 1007, 1008,
                  1009, 1010, 1011, 3000, 4999};
    int bad[] = {0, 999, 1004, 1005, 1006, 1012, 1015, 2000, 2999, 5000};
    for (size_t i = 0; i < sizeof(good) / sizeof(*good); i++) {
        uint8_t b[2] = {(uint8_t)(good[i] >> 8), (uint8_t)good[i]};
        CHECK(lx_ws_close_payload(b, 2, &code) == 0 && code == good[i],
              "code %d", good[i]);
    }
    for (size_t i = 0; i < sizeof(bad) / sizeof(*bad); i++) {
        uint8_t b[2] = {(uint8_t)(bad[i] >> 8), (uint8_t)bad[i]};
        CHECK(lx_ws_close_payload(b, 2, &code) == -1002, "code %d", bad[i]);
    }
    uint8_t reason[] = {0x03, 0xe8, 0xed, 0xa0, 0x80};
    CHECK(lx_ws_close_payload(reason, 5, &code) == -1007, "bad reason");
    uint8_t ok[] = {0x03, 0xe8, 'b', 'y', 'e'};
    CHECK(lx_ws_close_payload(ok, 5, &code) == 0 && code == 1000, "reason");

    uint8_t out[10];
    CHECK(lx_ws_head(out, LX_WS_TEXT, 1, 0, 5) == 2 && out[0] == 0x81 &&
              out[1] == 5,
          "small");
    CHECK(lx_ws_head(out, LX_WS_BINARY, 1, 1, 126) == 4 && out[0] == 0xc2 &&
              out[1] == 126 && out[2] == 0 && out[3] == 126,
          "16-bit");
    CHECK(lx_ws_head(out, LX_WS_BINARY, 0, 0, 65536) == 10 && out[0] == 0x02 &&
              out[1] == 127 && out[7] == 1 && out[9] == 0,
          "64-bit");
}

int main(void)
{
    test_sha1();
    test_utf8();
    test_frames();
    test_close_and_head();
    return check_done();
}
