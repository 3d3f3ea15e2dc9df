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

/* Identity constants for I/O outcomes (compare by pointer). */
extern const char lx_err_closed[];
extern const char lx_err_timeout[];
extern const char lx_err_io[];

#endif
