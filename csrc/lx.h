/* Common definitions of the pure C layer: return codes, helpers.
 * Nothing here includes Python.h. */
#ifndef LX_H
#define LX_H

#include <stddef.h>
#include <stdint.h>

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

/* ASCII case-insensitive equality of n bytes of s with lower (lower-case
 * already): the short header names of the hot path, without the locale
 * machinery of strncasecmp. */
static inline int lx_caseeq(const char *s, const char *lower, size_t n)
{
    size_t i;
    for (i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        c = (unsigned char)(c + (((unsigned)(c - 'A') < 26u) << 5));
        if (c != (unsigned char)lower[i])
            return 0;
    }
    return 1;
}

/* Eight bytes at a time: the word of eight bytes b, and whether a byte of
 * the word x is below n (n <= 128) or is b. Exact as a yes or no (not as
 * to which byte). */
#define LX_BYTES(b) (0x0101010101010101ULL * (uint64_t)(b))
#define LX_HAS_LESS(x, n) (((x)-LX_BYTES(n)) & ~(x)&LX_BYTES(0x80))
#define LX_HAS_BYTE(x, b) LX_HAS_LESS((x) ^ LX_BYTES(b), 1)

/* Identity constants for I/O outcomes (compare by pointer). */
extern const char lx_err_closed[];
extern const char lx_err_timeout[];
extern const char lx_err_io[];

#endif
