/* URL paths of static files: mount matching, decoding and checking. */
#include "fpath.h"

#include "lx.h"
#include "utf8.h"

#include <string.h>

/* The byte at raw[*i] (decoded when it is a valid escape), *i advanced;
 * -1 for a bad escape. *escaped tells it came from one. */
static int next_byte(const char *raw, size_t n, size_t *i, int *escaped)
{
    unsigned char ch = (unsigned char)raw[*i];
    *escaped = 0;
    if (ch != '%') {
        (*i)++;
        return ch;
    }
    if (n - *i < 3)
        return -1;
    int hi = lx_hexval((unsigned char)raw[*i + 1]);
    int lo = lx_hexval((unsigned char)raw[*i + 2]);
    if (hi < 0 || lo < 0)
        return -1;
    *i += 3;
    *escaped = 1;
    return hi << 4 | lo;
}

int lx_fpath_match(const char *const *prefixes, const size_t *lens, int n,
                   const char *path, size_t len, size_t *rest)
{
    int any_escape = memchr(path, '%', len) != NULL;
    for (int m = 0; m < n; m++) {
        const char *p = prefixes[m];
        size_t plen = lens[m];
        if (!any_escape) {
            if (len >= plen && memcmp(path, p, plen) == 0 &&
                (len == plen || path[plen] == '/')) {
                *rest = plen;
                return m;
            }
            continue;
        }
        size_t i = 0, j = 0;
        int esc;
        while (j < plen && i < len) {
            int ch = next_byte(path, len, &i, &esc);
            if (ch < 0 || ch != (unsigned char)p[j])
                break;
            j++;
        }
        if (j < plen)
            continue;
        size_t at = i;
        if (i == len) {
            *rest = at;
            return m;
        }
        int ch = next_byte(path, len, &i, &esc);
        if (ch == '/') {
            *rest = at;
            return m;
        }
    }
    return -1;
}

/* A segment of out[start..end) just completed: its verdict. */
static int check_segment(const char *seg, size_t len, int dotfiles)
{
    if (seg[0] != '.')
        return 0;
    if (len == 1 || (len == 2 && seg[1] == '.'))
        return -400;
    return dotfiles ? 0 : -404;
}

int lx_fpath_decode(const char *raw, size_t n, char *out, size_t cap,
                    int dotfiles, int *slash)
{
    size_t i = 0, o = 0, seg = 0;
    *slash = n > 0 && raw[n - 1] == '/';
    if (n > 0 && raw[0] != '/')
        return -400;
    while (i < n) {
        int esc;
        int ch = next_byte(raw, n, &i, &esc);
        if (ch < 0 || ch == 0 || ch < 0x20 || ch == 0x7f || ch == '\\')
            return -400;
        if (ch == '/') {
            if (esc)
                return -400;
            if (o > seg) {
                int v = check_segment(out + seg, o - seg, dotfiles);
                if (v < 0)
                    return v;
                if (o + 1 >= cap)
                    return -404;
                out[o++] = '/';
                seg = o;
            }
            continue;
        }
        if (o + 1 >= cap)
            return -404;
        out[o++] = (char)ch;
    }
    if (o > seg) {
        int v = check_segment(out + seg, o - seg, dotfiles);
        if (v < 0)
            return v;
    } else if (o > 0) {
        o--; /* the separator after the last segment */
    }
    out[o] = '\0';
    if (!lx_utf8_valid((const uint8_t *)out, o))
        return -400;
    return (int)o;
}
