/* HTTP field values (pure C): the dates, entity tags, ranges and content
 * codings of requests for static files. Pure functions. */
#ifndef LX_HVALUE_H
#define LX_HVALUE_H

#include <stddef.h>
#include <stdint.h>

/* An HTTP-date (IMF-fixdate, RFC 850 or asctime): 0 and *t, else -1. */
int lx_http_date_parse(const char *s, size_t n, int64_t *t);
/* "Sun, 06 Nov 1994 08:49:37 GMT" (29 bytes and a NUL) into buf. */
void lx_http_date_format(int64_t t, char buf[30]);
/* Whether the list of entity tags v[0..n) has etag (quoted), compared
 * weakly, or strongly (a weak tag in the list never matches). "*"
 * matches. */
int lx_etag_match(const char *v, size_t n, const char *etag, size_t elen,
                  int strong);
/* A Range value against size: 1 with [*first, *last] for one range that
 * can be served; 0 when it must be ignored (it does not parse, or names
 * several ranges); -1 when unsatisfiable (416). */
int lx_range_parse(const char *v, size_t n, uint64_t size, uint64_t *first,
                   uint64_t *last);
/* Whether Accept-Encoding v[0..n) accepts coding (lower-case). */
int lx_accepts(const char *v, size_t n, const char *coding);

#endif
