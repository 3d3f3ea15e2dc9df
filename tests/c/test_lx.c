/* Unit tests of csrc/lx.h: the token compare and the SWAR byte tests.
 *
 * Build and run from the repository root (always under the sanitizers):
 *   mkdir -p tests/c/bin
 *   gcc -std=c11 -Wall -Wextra -Werror -g -O1 -fsanitize=address,undefined \
 *       -fno-sanitize-recover=all -Icsrc tests/c/test_lx.c \
 *       -o tests/c/bin/test_lx
 *   ./tests/c/bin/test_lx
 *
 * lx_caseeq is checked against a byte-by-byte model for every token byte
 * at every position of names of 0 to 40 bytes; the literals and names sit
 * in exactly sized heap blocks, so a read past either end is caught. */
#include "../../csrc/lx.h"

#include <stdlib.h>
#include <string.h>

#include "check.h"

static int is_tchar(int c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') ||
           (c >= 'A' && c <= 'Z') || (c != 0 && strchr("!#$%&'*+-.^_`|~", c));
}

/* The meaning: equal after lower-casing ASCII letters. */
static int model(const char *s, const char *lower, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        int c = (unsigned char)s[i];
        if (c >= 'A' && c <= 'Z')
            c += 32;
        if (c != (unsigned char)lower[i])
            return 0;
    }
    return 1;
}

static char *heap_copy(const char *s, size_t n)
{
    char *p = malloc(n ? n : 1);
    if (p == NULL)
        abort();
    memcpy(p, s, n);
    return p;
}

static void test_caseeq_every_byte_everywhere(void)
{
    static const char alphabet[] = "abcdefghijklmnopqrstuvwxyz0123456789-";
    char lit[41], name[41];
    for (size_t n = 0; n <= 40; n++) {
        for (size_t i = 0; i < n; i++)
            lit[i] = alphabet[(i * 7 + n) % (sizeof(alphabet) - 1)];
        char *l = heap_copy(lit, n);
        /* the name itself, then in upper case */
        memcpy(name, lit, n);
        char *s = heap_copy(name, n);
        CHECK(lx_caseeq(s, l, n), "n=%zu equal", n);
        free(s);
        for (size_t i = 0; i < n; i++)
            name[i] = (lit[i] >= 'a' && lit[i] <= 'z') ? (char)(lit[i] - 32)
                                                       : lit[i];
        s = heap_copy(name, n);
        CHECK(lx_caseeq(s, l, n), "n=%zu upper case", n);
        free(s);
        /* every token byte at every position */
        for (size_t pos = 0; pos < n; pos++) {
            for (int c = 1; c < 256; c++) {
                if (!is_tchar(c))
                    continue;
                memcpy(name, lit, n);
                name[pos] = (char)c;
                s = heap_copy(name, n);
                CHECK(lx_caseeq(s, l, n) == model(s, l, n),
                      "n=%zu pos=%zu byte 0x%02x", n, pos, c);
                free(s);
            }
        }
        free(l);
    }
}

static void test_caseeq_header_names(void)
{
    CHECK(lx_caseeq("Content-Length", "content-length", 14), "Content-Length");
    CHECK(lx_caseeq("CONTENT-LENGTH", "content-length", 14), "upper case");
    CHECK(!lx_caseeq("Content-Lengtx", "content-length", 14), "last byte");
    CHECK(!lx_caseeq("Dontent-Length", "content-length", 14), "first byte");
    CHECK(!lx_caseeq("Content_Length", "content-length", 14), "'_' for '-'");
    CHECK(lx_caseeq("Host", "host", 4), "Host");
    CHECK(!lx_caseeq("Hos~", "host", 4), "'~'");
    CHECK(lx_caseeq("Upgrade-Insecure-Requests", "upgrade-insecure-requests",
                    25),
          "25 bytes");
    CHECK(!lx_caseeq("Upgrade-Insecure-Request^", "upgrade-insecure-requests",
                     25),
          "'^' in the last word");
}

static void test_swar(void)
{
    unsigned char w[8];
    for (int pos = 0; pos < 8; pos++) {
        for (int c = 0; c < 256; c++) {
            uint64_t x;
            memset(w, 'a', 8);
            w[pos] = (unsigned char)c;
            memcpy(&x, w, 8);
            CHECK(!!LX_HAS_BYTE(x, ' ') == (c == ' '), "HAS_BYTE pos=%d c=%d",
                  pos, c);
            CHECK(!!LX_HAS_LESS(x, 0x20) == (c < 0x20), "HAS_LESS pos=%d c=%d",
                  pos, c);
        }
    }
}

int main(void)
{
    test_caseeq_every_byte_everywhere();
    test_caseeq_header_names();
    test_swar();
    return check_done();
}
