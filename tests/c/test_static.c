/* Unit tests of the static files' pure C layer: paths (fpath.c), the
 * open-file cache (fcache.c) and the HTTP answer's parts (static.c). */
#define _GNU_SOURCE
#include "../../csrc/fcache.c"
#include "../../csrc/fpath.c"
#include "../../csrc/utf8.c"
#include "../../csrc/hvalue.c"
#include "../../csrc/http1.c"
#include "../../csrc/static.c"

#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"

/* ---- fpath ---- */

static void decode_is(const char *raw, int dotfiles, int want, const char *out)
{
    char buf[64];
    int slash;
    int rc =
        lx_fpath_decode(raw, strlen(raw), buf, sizeof(buf), dotfiles, &slash);
    CHECK(rc == want, "decode %s: %d, want %d", raw, rc, want);
    if (rc >= 0 && out != NULL)
        CHECK(strcmp(buf, out) == 0, "decode %s: '%s', want '%s'", raw, buf,
              out);
}

static void test_decode(void)
{
    decode_is("", 0, 0, "");
    decode_is("/", 0, 0, "");
    decode_is("/a.css", 0, 5, "a.css");
    decode_is("/css/a.css", 0, 9, "css/a.css");
    decode_is("/css//a.css/", 0, 9, "css/a.css");
    decode_is("/a%20b", 0, 3, "a b");
    decode_is("/%c3%a9t%C3%A9", 0, 5, "\xc3\xa9t\xc3\xa9");
    /* 400: no file name has these */
    decode_is("/../secret", 0, -400, NULL);
    decode_is("/a/..", 0, -400, NULL);
    decode_is("/./a", 0, -400, NULL);
    decode_is("/%2e%2e/secret", 0, -400, NULL);
    decode_is("/.%2E/secret", 0, -400, NULL);
    decode_is("/..%2fsecret", 0, -400, NULL);
    decode_is("/a%2Fb", 0, -400, NULL);
    decode_is("/..\\secret", 0, -400, NULL);
    decode_is("/a%5csecret", 0, -400, NULL);
    decode_is("/a%00.txt", 0, -400, NULL);
    decode_is("/a%0a", 0, -400, NULL);
    decode_is("/a%7f", 0, -400, NULL);
    decode_is("/a%", 0, -400, NULL);
    decode_is("/a%2", 0, -400, NULL);
    decode_is("/a%zz", 0, -400, NULL);
    decode_is("/%c0%ae%c0%ae/secret", 0, -400, NULL); /* overlong */
    decode_is("/%e0%80%ae", 0, -400, NULL);
    decode_is("/%ed%a0%80", 0, -400, NULL); /* surrogate */
    decode_is("/%f4%90%80%80", 0, -400, NULL);
    decode_is("/%ff", 0, -400, NULL);
    decode_is("/%c3", 0, -400, NULL);
    decode_is("a", 0, -400, NULL);
    /* dotfiles: 404 unless asked; dot segments never */
    decode_is("/.env", 0, -404, NULL);
    decode_is("/.git/config", 0, -404, NULL);
    decode_is("/%2egit/config", 0, -404, NULL);
    decode_is("/.env", 1, 4, ".env");
    decode_is("/.git/config", 1, 11, ".git/config");
    decode_is("/../x", 1, -400, NULL);
    decode_is("/a/./b", 1, -400, NULL);
    decode_is("/...", 0, -404, NULL);
    /* too long for the buffer */
    char lng[200];
    memset(lng, 'a', sizeof(lng) - 1);
    lng[0] = '/';
    lng[sizeof(lng) - 1] = '\0';
    decode_is(lng, 0, -404, NULL);
    int slash;
    char buf[16];
    lx_fpath_decode("/d/", 3, buf, sizeof(buf), 0, &slash);
    CHECK(slash == 1, "trailing slash");
    lx_fpath_decode("/d", 2, buf, sizeof(buf), 0, &slash);
    CHECK(slash == 0, "no trailing slash");
}

static void match_is(const char *path, int want, size_t want_rest)
{
    const char *prefixes[] = {"/static/img", "/static", "/s"};
    size_t lens[] = {11, 7, 2};
    size_t rest = 99;
    int m = lx_fpath_match(prefixes, lens, 3, path, strlen(path), &rest);
    CHECK(m == want, "match %s: %d, want %d", path, m, want);
    if (m >= 0)
        CHECK(rest == want_rest, "match %s: rest %zu, want %zu", path, rest,
              want_rest);
}

static void test_match(void)
{
    match_is("/static/a.css", 1, 7);
    match_is("/static", 1, 7);
    match_is("/static/", 1, 7);
    match_is("/staticx", -1, 0);
    match_is("/static/img/a.png", 0, 11);
    match_is("/static/imgx", 1, 7);
    match_is("/s/x", 2, 2);
    match_is("/", -1, 0);
    match_is("/%73tatic/a.css", 1, 9);
    match_is("/st%61tic", 1, 9);
    match_is("/static%2fa.css", 1, 7);
    match_is("/stat%zzic", -1, 0);
    const char *root[] = {""};
    size_t zero[] = {0};
    size_t rest;
    CHECK(lx_fpath_match(root, zero, 1, "/x", 2, &rest) == 0 && rest == 0,
          "the root prefix");
}

/* ---- static.c's parts ---- */

static void test_dates(void)
{
    int64_t t;
    CHECK(lx_http_date_parse("Sun, 06 Nov 1994 08:49:37 GMT", 29, &t) == 0 &&
              t == 784111777,
          "IMF-fixdate");
    CHECK(lx_http_date_parse("Sunday, 06-Nov-94 08:49:37 GMT", 30, &t) == 0 &&
              t == 784111777,
          "RFC 850");
    CHECK(lx_http_date_parse("Sun Nov  6 08:49:37 1994", 24, &t) == 0 &&
              t == 784111777,
          "asctime");
    CHECK(lx_http_date_parse("Sun, 06 Nov 1994 08:49:37 UTC", 29, &t) < 0,
          "not GMT");
    CHECK(lx_http_date_parse("Sun, 06 Xyz 1994 08:49:37 GMT", 29, &t) < 0,
          "month");
    CHECK(lx_http_date_parse("yesterday", 9, &t) < 0, "garbage");
    CHECK(lx_http_date_parse("", 0, &t) < 0, "empty");
    char buf[30];
    lx_http_date_format(784111777, buf);
    CHECK(strcmp(buf, "Sun, 06 Nov 1994 08:49:37 GMT") == 0, "format: %s",
          buf);
    lx_http_date_format(0, buf);
    CHECK(strcmp(buf, "Thu, 01 Jan 1970 00:00:00 GMT") == 0, "epoch: %s", buf);
    for (int64_t x = 0; x < 4000000000LL; x += 86399 * 97) {
        lx_http_date_format(x, buf);
        CHECK(lx_http_date_parse(buf, 29, &t) == 0 && t == x,
              "round trip %lld", (long long)x);
    }
}

#define ET "\"5f.1-10\""

static void test_etags(void)
{
    size_t n = strlen(ET);
#define M(v, strong) lx_etag_match(v, strlen(v), ET, n, strong)
    CHECK(M(ET, 0) && M(ET, 1), "itself");
    CHECK(M("*", 0) && M("*", 1), "star");
    CHECK(M("\"a\", " ET, 0), "in a list");
    CHECK(M("\"a\",W/" ET, 0), "weak, weakly");
    CHECK(!M("W/" ET, 1), "weak, strongly");
    CHECK(!M("\"5f.1-11\"", 0), "another");
    CHECK(!M("5f.1-10", 0), "unquoted");
    CHECK(!M("\"5f.1-10", 0), "unterminated");
    CHECK(!M("", 0), "empty");
#undef M
}

static void range_is(const char *v, uint64_t size, int want, uint64_t a,
                     uint64_t b)
{
    uint64_t first = 0, last = 0;
    int rc = lx_range_parse(v, strlen(v), size, &first, &last);
    CHECK(rc == want, "range %s of %llu: %d, want %d", v,
          (unsigned long long)size, rc, want);
    if (rc == 1 && want == 1)
        CHECK(first == a && last == b, "range %s: %llu-%llu", v,
              (unsigned long long)first, (unsigned long long)last);
}

static void test_ranges(void)
{
    range_is("bytes=0-9", 100, 1, 0, 9);
    range_is("bytes=10-", 100, 1, 10, 99);
    range_is("bytes=-5", 100, 1, 95, 99);
    range_is("bytes=-500", 100, 1, 0, 99);
    range_is("bytes=90-500", 100, 1, 90, 99);
    range_is("Bytes= 3-4 ", 100, 1, 3, 4);
    range_is("bytes=100-", 100, -1, 0, 0);
    range_is("bytes=100-200", 100, -1, 0, 0);
    range_is("bytes=-0", 100, -1, 0, 0);
    range_is("bytes=0-", 0, -1, 0, 0);
    range_is("bytes=5-4", 100, 0, 0, 0);
    range_is("bytes=0-1,5-6", 100, 0, 0, 0);
    range_is("bytes=a-b", 100, 0, 0, 0);
    range_is("items=0-1", 100, 0, 0, 0);
    range_is("bytes=", 100, 0, 0, 0);
    range_is("bytes=99999999999999999999999-", 100, 0, 0, 0);
}

static void test_accepts(void)
{
#define A(v, c) lx_accepts(v, strlen(v), c)
    CHECK(A("gzip", "gzip"), "gzip");
    CHECK(A("br, gzip", "br") && A("br, gzip", "gzip"), "both");
    CHECK(!A("gzip;q=0", "gzip"), "q=0");
    CHECK(!A("gzip; q=0.000", "gzip"), "q=0.000");
    CHECK(A("gzip;q=0.5", "gzip"), "q=0.5");
    CHECK(A("gzip;q=0.001", "gzip"), "q=0.001");
    CHECK(A("*", "br"), "star");
    CHECK(!A("br;q=0, *", "br") && A("br;q=0, *", "gzip"), "star but br");
    CHECK(A("x-gzip", "gzip"), "x-gzip");
    CHECK(!A("identity", "gzip"), "identity");
    CHECK(!A("", "gzip"), "empty");
    CHECK(!A("gzipped", "gzip"), "a longer name");
    CHECK(A("deflate, GZIP", "gzip"), "case");
#undef A
}

/* ---- the cache, on a real directory ---- */

static void put_file(const char *dir, const char *name, const char *text)
{
    char path[512];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    if (f == NULL) {
        perror(path);
        exit(2);
    }
    fputs(text, f);
    fclose(f);
}

static void test_cache(void)
{
    char tmpl[] = "/tmp/lx-static-XXXXXX";
    char *dir = mkdtemp(tmpl);
    if (dir == NULL) {
        perror("mkdtemp");
        exit(2);
    }
    char root[600], outside[600];
    snprintf(root, sizeof(root), "%s/root", dir);
    mkdir(root, 0755);
    put_file(dir, "secret", "secret\n");
    put_file(root, "a.txt", "aaaa");
    put_file(root, "a.txt.gz", "gz");
    snprintf(outside, sizeof(outside), "%s/secret", dir);
    char link[700];
    snprintf(link, sizeof(link), "%s/out", root);
    CHECK(symlink(outside, link) == 0, "symlink");
    snprintf(link, sizeof(link), "%s/in", root);
    CHECK(symlink("a.txt", link) == 0, "symlink");

    lx_fmount_t mt = {open(root, O_PATH | O_DIRECTORY), realpath(root, NULL)};
    lx_fcache_t fc;
    CHECK(lx_fcache_init(&fc, 2) == 0, "init");
    int status = 0;
    lx_fentry_t *e = lx_fcache_get(&fc, &mt, 0, "a.txt", 5, 1, 0, &status);
    CHECK(e != NULL && e->size == 4 && e->siblings == LX_FSIB_GZ,
          "opened, with its sibling");
    lx_fentry_t *again =
        lx_fcache_get(&fc, &mt, 0, "a.txt", 5, 1, 10, &status);
    CHECK(again == e && e->refs == 2, "cached");
    lx_fcache_put(&fc, again);
    CHECK(lx_fcache_get(&fc, &mt, 0, "out", 3, 0, 0, &status) == NULL &&
              status == 404,
          "a symlink out of the root: %d", status);
    CHECK(lx_fcache_get(&fc, &mt, 0, "../secret", 9, 0, 0, &status) == NULL &&
              status == 404,
          "a path out of the root");
    lx_fentry_t *in = lx_fcache_get(&fc, &mt, 0, "in", 2, 0, 0, &status);
    CHECK(in != NULL && in->size == 4, "a symlink inside");
    if (in)
        lx_fcache_put(&fc, in);
    /* In place: the next lookup sees the new size (fstat). */
    put_file(root, "a.txt", "aaaaaaaa");
    again = lx_fcache_get(&fc, &mt, 0, "a.txt", 5, 1, 20, &status);
    CHECK(again == e && e->size == 8, "rewritten in place: %llu",
          (unsigned long long)e->size);
    lx_fcache_put(&fc, again);
    /* Replaced: seen once the entry is a second old, not before. */
    put_file(root, "b.tmp", "bb");
    char from[700], to[700];
    snprintf(from, sizeof(from), "%s/b.tmp", root);
    snprintf(to, sizeof(to), "%s/a.txt", root);
    CHECK(rename(from, to) == 0, "rename");
    again = lx_fcache_get(&fc, &mt, 0, "a.txt", 5, 1, 500, &status);
    CHECK(again == e, "replaced, not checked yet");
    lx_fcache_put(&fc, again);
    lx_fentry_t *fresh =
        lx_fcache_get(&fc, &mt, 0, "a.txt", 5, 1, 1001, &status);
    CHECK(fresh != NULL && fresh != e && fresh->size == 2,
          "replaced, checked");
    /* e (still held) was evicted: it lives until put back */
    CHECK(e->cached == 0 && lx_fcache_live() >= 2, "held after eviction");
    lx_fcache_put(&fc, e);
    if (fresh)
        lx_fcache_put(&fc, fresh);
    /* the bound */
    put_file(root, "c", "c");
    put_file(root, "d", "d");
    for (int i = 0; i < 3; i++) {
        lx_fentry_t *x =
            lx_fcache_get(&fc, &mt, 0, i % 2 ? "c" : "d", 1, 0, 2000, &status);
        if (x)
            lx_fcache_put(&fc, x);
    }
    CHECK(fc.count <= 2, "bounded: %zu", fc.count);
    /* a FIFO opens without blocking, and is not a regular file */
    char fifo[700];
    snprintf(fifo, sizeof(fifo), "%s/fifo", root);
    CHECK(mkfifo(fifo, 0644) == 0, "mkfifo");
    lx_fentry_t *ff = lx_fcache_get(&fc, &mt, 0, "fifo", 4, 0, 3000, &status);
    CHECK(ff != NULL && !S_ISREG(ff->mode), "a FIFO, opened at once");
    if (ff)
        lx_fcache_put(&fc, ff);
    lx_fcache_clear(&fc);
    CHECK(lx_fcache_live() == 0, "all freed: %ld", lx_fcache_live());
    close(mt.dirfd);
    free(mt.real);
    char cmd[700];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    CHECK(system(cmd) == 0, "cleanup");
}

static void test_errno_status(void)
{
    /* The tests run as root, who reads every file: the mapping here. */
    CHECK(status_of(EACCES) == 403 && status_of(EPERM) == 403, "403");
    CHECK(status_of(ENOENT) == 404 && status_of(EXDEV) == 404 &&
              status_of(ELOOP) == 404 && status_of(ENOTDIR) == 404,
          "404");
    CHECK(status_of(EMFILE) == 503 && status_of(ENFILE) == 503, "503");
}

int main(void)
{
    test_errno_status();
    test_decode();
    test_match();
    test_dates();
    test_etags();
    test_ranges();
    test_accepts();
    test_cache();
    return check_done();
}
