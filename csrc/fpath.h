/* URL paths of static files (pure C): which mount a request path falls
 * under, and the part below it decoded and checked into a relative file
 * path that cannot name anything outside the mount's directory. Pure
 * functions over caller-owned memory. */
#ifndef LX_FPATH_H
#define LX_FPATH_H

#include <stddef.h>

/* The longest relative path a static request may name (bytes). */
#define LX_FPATH_MAX 4096

/* The first of n prefixes ("/static", no trailing slash; "" for the
 * root) that path[0..len) falls under on a segment boundary: the prefix
 * followed by '/' or the end. Escaped bytes (%73) compare decoded, so a
 * spelling of the prefix cannot reach the application instead. Returns
 * its index and *rest, the offset in path of what follows it; -1 when
 * none matches. */
int lx_fpath_match(const char *const *prefixes, const size_t *lens, int n,
                   const char *path, size_t len, size_t *rest);

/* Decode raw[0..n) (what follows a prefix: empty or starting with '/')
 * into out, a path relative to the mount's directory: segments joined by
 * '/', no leading slash, empty segments dropped, NUL-terminated; out has
 * room for cap bytes. *slash is set when raw ends with '/'. Returns the
 * length, or minus the status that answers the request: -400 for a bad
 * escape, a NUL or control byte, an escaped slash, a backslash, invalid
 * UTF-8 or a "." or ".." segment; -404 for a segment that begins with a
 * dot (unless dotfiles) or a path longer than cap - 1. */
int lx_fpath_decode(const char *raw, size_t n, char *out, size_t cap,
                    int dotfiles, int *slash);

#endif
