/* UTF-8 checked incrementally (pure C): a text arriving in pieces
 * (WebSocket fragments) or whole (a decoded path). */
#ifndef LX_UTF8_H
#define LX_UTF8_H

#include <stddef.h>
#include <stdint.h>

/* Incremental UTF-8 check: bytes still expected in the current
 * character, and the range the next one must be in. */
typedef struct {
    uint8_t need, lo, hi;
} lx_utf8_t;

/* Incrementally: 0 while s could still be valid, -1 as soon as it
 * cannot; lx_utf8_complete tells no character is left unfinished. */
void lx_utf8_init(lx_utf8_t *u);
int lx_utf8_feed(lx_utf8_t *u, const uint8_t *s, size_t n);
static inline int lx_utf8_complete(const lx_utf8_t *u)
{
    return u->need == 0;
}

/* Whether s[0..n) is valid UTF-8, whole. */
int lx_utf8_valid(const uint8_t *s, size_t n);

#endif
