/* Common definitions of the pure C layer: return codes, helpers.
 * Nothing here includes Python.h. */
#ifndef LX_H
#define LX_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* Return codes (nginx style): >= 0 success, LX_AGAIN would-block or
 * incomplete, LX_ERR failure with errno (or a status) kept. */
#define LX_OK 0
#define LX_ERR (-1)
#define LX_AGAIN (-2)

#define LX_STRUCT_FROM_MEMBER(type, member, ptr) \
    ((type *)((char *)(ptr)-offsetof(type, member)))

#if defined(__GNUC__)
#define LX_LIKELY(x) __builtin_expect(!!(x), 1)
#define LX_UNLIKELY(x) __builtin_expect(!!(x), 0)
#else
#define LX_LIKELY(x) (x)
#define LX_UNLIKELY(x) (x)
#endif

/* Case-insensitive equality of n bytes at s with lower, a lower-case
 * literal of letters, digits and '-'. s holds a token or a field value: no
 * control byte but HTAB. Setting bit 0x20 then folds the case of letters
 * and maps no other byte of s onto those characters (only CR and 0x10-0x19
 * would), so eight bytes compare at once; from eight bytes on, the last
 * word overlaps the one before. The one case-insensitive compare of the
 * engine. */
static inline int lx_caseeq(const char *s, const char *lower, size_t n)
{
    const uint64_t fold = 0x2020202020202020ull;
    uint64_t a, b;
    size_t i;
    if (n < 8) {
        for (i = 0; i < n; i++)
            if (((unsigned char)s[i] | 0x20) != (unsigned char)lower[i])
                return 0;
        return 1;
    }
    for (i = 0; i + 8 < n; i += 8) {
        memcpy(&a, s + i, 8);
        memcpy(&b, lower + i, 8);
        if ((a | fold) != b)
            return 0;
    }
    memcpy(&a, s + n - 8, 8);
    memcpy(&b, lower + n - 8, 8);
    return (a | fold) == b;
}

/* s[0..n) equals the NUL-terminated lower-case literal lower, the case of
 * ASCII letters aside: for literals lx_caseeq cannot take (an
 * underscore, a '+'); a byte at a time. */
static inline int lx_lowereq(const char *s, size_t n, const char *lower)
{
    size_t i;
    for (i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (ch >= 'A' && ch <= 'Z')
            ch |= 0x20;
        if (lower[i] == '\0' || ch != (unsigned char)lower[i])
            return 0;
    }
    return lower[i] == '\0';
}

/* s[0..n) equals the literal lit, case aside (lx_caseeq's terms). */
#define LX_CASEEQ_LIT(s, n, lit) \
    ((n) == sizeof(lit) - 1 && lx_caseeq((const char *)(s), lit, (n)))

/* Eight bytes at a time: the word of eight bytes b, and whether a byte of
 * the word x is below n (n <= 128) or is b. Exact as a yes or no (not as
 * to which byte). */
#define LX_BYTES(b) (0x0101010101010101ULL * (uint64_t)(b))
#define LX_HAS_LESS(x, n) (((x)-LX_BYTES(n)) & ~(x)&LX_BYTES(0x80))
#define LX_HAS_BYTE(x, b) LX_HAS_LESS((x) ^ LX_BYTES(b), 1)

/* The value of a hex digit, -1 for another byte. */
static inline int lx_hexval(int ch)
{
    if (ch >= '0' && ch <= '9')
        return ch - '0';
    ch |= 0x20;
    if (ch >= 'a' && ch <= 'f')
        return ch - 'a' + 10;
    return -1;
}

/* Identity constants for I/O outcomes (compare by pointer). */
extern const char lx_err_closed[];
extern const char lx_err_timeout[];
extern const char lx_err_io[];

#endif
