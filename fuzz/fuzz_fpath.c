/* Fuzz target: static file paths (fpath.c) and the header values a
 * static answer reads (static.c: ranges, entity tags, dates, codings).
 *
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -Icsrc \
 *       fuzz/fuzz_fpath.c -o fuzz/bin/fuzz_fpath
 *   fuzz/bin/fuzz_fpath -max_total_time=180 fuzz/corpus/fpath
 *
 * Besides memory errors it aborts when a decoded path could leave its
 * directory: a leading slash, a "." or ".." segment, an empty segment, a
 * NUL, a backslash, a control byte, invalid UTF-8; when a dotfile passes
 * without dotfiles; or when a range lies outside the file. */
#define _GNU_SOURCE
#include "../csrc/fcache.c"
#include "../csrc/fpath.c"
#include "../csrc/utf8.c"
#include "../csrc/hvalue.c"
#include "../csrc/http1.c"
#include "../csrc/static.c"

#include <stdlib.h>
#include <string.h>

static void check_path(const char *out, int n, int dotfiles)
{
    if (n == 0)
        return;
    if (out[0] == '/' || out[n - 1] == '/' || (int)strlen(out) != n)
        abort();
    if (!lx_utf8_valid((const uint8_t *)out, (size_t)n))
        abort();
    const char *seg = out;
    for (int i = 0; i <= n; i++) {
        if (i < n && out[i] != '/') {
            unsigned char ch = (unsigned char)out[i];
            if (ch < 0x20 || ch == 0x7f || ch == '\\')
                abort();
            continue;
        }
        size_t len = (size_t)(out + i - seg);
        if (len == 0)
            abort(); /* empty segment */
        if (seg[0] == '.' &&
            (len == 1 || (len == 2 && seg[1] == '.') || !dotfiles))
            abort();
        seg = out + i + 1;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *raw = (const char *)data;
    char out[256], small[16];
    int slash;
    for (int dot = 0; dot < 2; dot++) {
        int n = lx_fpath_decode(raw, size, out, sizeof(out), dot, &slash);
        if (n >= 0)
            check_path(out, n, dot);
        else if (n != -400 && n != -404)
            abort();
        /* a smaller buffer changes nothing but the length verdict */
        int m = lx_fpath_decode(raw, size, small, sizeof(small), dot, &slash);
        if (m >= 0 && (n != m || memcmp(out, small, (size_t)m + 1) != 0))
            abort();
    }
    const char *prefixes[] = {"/static", ""};
    size_t lens[] = {7, 0}, rest = 0;
    int mt = lx_fpath_match(prefixes, lens, 2, raw, size, &rest);
    if (mt >= 0 && rest > size)
        abort();
    uint64_t first, last, fsize = size * 7;
    int rc = lx_range_parse(raw, size, fsize, &first, &last);
    if (rc == 1 && (first > last || last >= fsize))
        abort();
    int64_t t;
    if (lx_http_date_parse(raw, size, &t) == 0) {
        char buf[30];
        int64_t back;
        if (t >= 0 && t < 253402300800LL) {
            lx_http_date_format(t, buf);
            if (lx_http_date_parse(buf, 29, &back) != 0 || back != t)
                abort();
        }
    }
    (void)lx_etag_match(raw, size, "\"1.2-3\"", 7, size & 1);
    (void)lx_accepts(raw, size, "gzip");
    return 0;
}
