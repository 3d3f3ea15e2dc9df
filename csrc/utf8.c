/* UTF-8 checked incrementally (RFC 3629): no overlong form, no
 * surrogate, nothing past U+10FFFF, failing at the first byte that cannot
 * be valid. */
#include "utf8.h"

#include <string.h>

#include "lx.h"

void lx_utf8_init(lx_utf8_t *u)
{
    u->need = 0;
    u->lo = 0x80;
    u->hi = 0xbf;
}

int lx_utf8_feed(lx_utf8_t *u, const uint8_t *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        if (u->need == 0) {
            /* ASCII eight bytes at a time */
            while (i + 8 <= n) {
                uint64_t w;
                memcpy(&w, s + i, 8);
                if (w & LX_BYTES(0x80))
                    break;
                i += 8;
            }
            if (i >= n)
                break;
        }
        uint8_t c = s[i++];
        if (u->need > 0) {
            if (c < u->lo || c > u->hi)
                return -1;
            u->lo = 0x80;
            u->hi = 0xbf;
            u->need--;
            continue;
        }
        if (c < 0x80)
            continue;
        if (c >= 0xc2 && c <= 0xdf) {
            u->need = 1;
        } else if (c >= 0xe0 && c <= 0xef) {
            u->need = 2;
            if (c == 0xe0)
                u->lo = 0xa0; /* no overlong form */
            else if (c == 0xed)
                u->hi = 0x9f; /* no surrogate */
        } else if (c >= 0xf0 && c <= 0xf4) {
            u->need = 3;
            if (c == 0xf0)
                u->lo = 0x90; /* no overlong form */
            else if (c == 0xf4)
                u->hi = 0x8f; /* nothing past U+10FFFF */
        } else {
            return -1;
        }
    }
    return 0;
}

int lx_utf8_valid(const uint8_t *s, size_t n)
{
    lx_utf8_t u;
    lx_utf8_init(&u);
    return lx_utf8_feed(&u, s, n) == 0 && lx_utf8_complete(&u);
}
