/* Static files over HTTP: the status and header fields of an answer. */
#define _GNU_SOURCE
#include "static.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* ------------------------------------------------------------------ */
/* Content-Type by extension: the common types of the web */

static const struct {
    const char *ext, *type;
} builtin_types[] = {
    {"html", "text/html; charset=utf-8"},
    {"htm", "text/html; charset=utf-8"},
    {"css", "text/css; charset=utf-8"},
    {"js", "text/javascript; charset=utf-8"},
    {"mjs", "text/javascript; charset=utf-8"},
    {"json", "application/json"},
    {"map", "application/json"},
    {"webmanifest", "application/manifest+json"},
    {"txt", "text/plain; charset=utf-8"},
    {"md", "text/markdown; charset=utf-8"},
    {"csv", "text/csv; charset=utf-8"},
    {"xml", "text/xml; charset=utf-8"},
    {"rss", "application/rss+xml"},
    {"atom", "application/atom+xml"},
    {"xhtml", "application/xhtml+xml"},
    {"ics", "text/calendar; charset=utf-8"},
    {"svg", "image/svg+xml"},
    {"png", "image/png"},
    {"apng", "image/apng"},
    {"jpg", "image/jpeg"},
    {"jpeg", "image/jpeg"},
    {"gif", "image/gif"},
    {"webp", "image/webp"},
    {"avif", "image/avif"},
    {"ico", "image/vnd.microsoft.icon"},
    {"bmp", "image/bmp"},
    {"tif", "image/tiff"},
    {"tiff", "image/tiff"},
    {"woff", "font/woff"},
    {"woff2", "font/woff2"},
    {"ttf", "font/ttf"},
    {"otf", "font/otf"},
    {"eot", "application/vnd.ms-fontobject"},
    {"wasm", "application/wasm"},
    {"pdf", "application/pdf"},
    {"zip", "application/zip"},
    {"gz", "application/gzip"},
    {"br", "application/octet-stream"},
    {"tar", "application/x-tar"},
    {"7z", "application/x-7z-compressed"},
    {"mp4", "video/mp4"},
    {"webm", "video/webm"},
    {"ogv", "video/ogg"},
    {"mp3", "audio/mpeg"},
    {"m4a", "audio/mp4"},
    {"ogg", "audio/ogg"},
    {"oga", "audio/ogg"},
    {"opus", "audio/ogg"},
    {"wav", "audio/wav"},
    {"flac", "audio/flac"},
    {"vtt", "text/vtt; charset=utf-8"},
};

#define DEFAULT_TYPE "application/octet-stream"

/* The extension of the last segment of path, "" when none. */
static const char *extension(const char *path, size_t len, size_t *n)
{
    size_t i = len;
    while (i > 0 && path[i - 1] != '/' && path[i - 1] != '.')
        i--;
    if (i == 0 || path[i - 1] != '.') {
        *n = 0;
        return path + len;
    }
    *n = len - i;
    return path + i;
}

static const char *content_type(const lx_static_t *s, const char *path,
                                size_t len)
{
    size_t n;
    const char *ext = extension(path, len, &n);
    if (n == 0)
        return DEFAULT_TYPE;
    for (int i = 0; i < s->ntypes; i++)
        if (lx_lowereq(ext, n, s->types[i].ext))
            return s->types[i].type;
    for (size_t i = 0; i < sizeof(builtin_types) / sizeof(*builtin_types); i++)
        if (lx_lowereq(ext, n, builtin_types[i].ext))
            return builtin_types[i].type;
    return DEFAULT_TYPE;
}

/* ------------------------------------------------------------------ */
/* configuration */

lx_static_t *lx_static_new(size_t cache_entries)
{
    lx_static_t *s = calloc(1, sizeof(*s));
    if (s == NULL)
        return NULL;
    s->max_age = -1;
    if (lx_fcache_init(&s->cache, cache_entries) < 0) {
        free(s);
        return NULL;
    }
    return s;
}

void lx_static_free(lx_static_t *s)
{
    if (s == NULL)
        return;
    lx_fcache_clear(&s->cache);
    for (int i = 0; i < s->nmounts; i++) {
        free(s->prefixes[i]);
        free(s->mounts[i].real);
        close(s->mounts[i].dirfd);
    }
    free(s->prefixes);
    free(s->prefix_lens);
    free(s->mounts);
    for (int i = 0; i < s->ntypes; i++) {
        free(s->types[i].ext);
        free(s->types[i].type);
    }
    free(s->types);
    if (s->immutable_on)
        regfree(&s->immutable);
    free(s->index);
    free(s);
}

int lx_static_mount(lx_static_t *s, const char *prefix, const char *dir)
{
    size_t plen = strlen(prefix);
    while (plen > 0 && prefix[plen - 1] == '/')
        plen--;
    int fd = open(dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return LX_ERR;
    char *real = realpath(dir, NULL);
    char *p = malloc(plen + 1);
    char **ps = realloc(s->prefixes, sizeof(*ps) * (size_t)(s->nmounts + 1));
    if (ps != NULL)
        s->prefixes = ps;
    size_t *ls =
        realloc(s->prefix_lens, sizeof(*ls) * (size_t)(s->nmounts + 1));
    if (ls != NULL)
        s->prefix_lens = ls;
    lx_fmount_t *ms =
        realloc(s->mounts, sizeof(*ms) * (size_t)(s->nmounts + 1));
    if (ms != NULL)
        s->mounts = ms;
    if (real == NULL || p == NULL || ps == NULL || ls == NULL || ms == NULL) {
        int err = real == NULL ? errno : ENOMEM;
        free(real);
        free(p);
        close(fd);
        errno = err;
        return LX_ERR;
    }
    memcpy(p, prefix, plen);
    p[plen] = '\0';
    s->prefixes[s->nmounts] = p;
    s->prefix_lens[s->nmounts] = plen;
    s->mounts[s->nmounts].dirfd = fd;
    s->mounts[s->nmounts].real = real;
    s->nmounts++;
    return LX_OK;
}

int lx_static_add_type(lx_static_t *s, const char *ext, const char *type)
{
    if (ext[0] == '.')
        ext++;
    lx_ftype_t *t = realloc(s->types, sizeof(*t) * (size_t)(s->ntypes + 1));
    if (t == NULL)
        return LX_ERR;
    s->types = t;
    char *e = strdup(ext), *ty = strdup(type);
    if (e == NULL || ty == NULL) {
        free(e);
        free(ty);
        return LX_ERR;
    }
    for (char *q = e; *q; q++)
        if (*q >= 'A' && *q <= 'Z')
            *q |= 0x20;
    t[s->ntypes].ext = e;
    t[s->ntypes].ext_len = strlen(e);
    t[s->ntypes].type = ty;
    s->ntypes++;
    return LX_OK;
}

int lx_static_set_immutable(lx_static_t *s, const char *regex, char *err,
                            size_t cap)
{
    if (s->immutable_on) {
        regfree(&s->immutable);
        s->immutable_on = 0;
    }
    int rc = regcomp(&s->immutable, regex, REG_EXTENDED | REG_NOSUB);
    if (rc != 0) {
        regerror(rc, &s->immutable, err, cap);
        return LX_ERR;
    }
    s->immutable_on = 1;
    return LX_OK;
}

int lx_static_set_index(lx_static_t *s, const char *name)
{
    char *n = strdup(name);
    if (n == NULL)
        return LX_ERR;
    free(s->index);
    s->index = n;
    s->index_len = strlen(n);
    return LX_OK;
}

int lx_static_match(const lx_static_t *s, lx_str_t path, size_t *rest)
{
    return lx_fpath_match((const char *const *)s->prefixes, s->prefix_lens,
                          s->nmounts, path.base, path.len, rest);
}

/* ------------------------------------------------------------------ */
/* the answer */

/* The statuses an answer has, their reasons, and the text of the ones
 * that have no file to send. */
static const struct {
    int status;
    const char *reason, *text;
} statuses[] = {
    {200, "OK", NULL},
    {206, "Partial Content", NULL},
    {301, "Moved Permanently", "Moved Permanently\n"},
    {304, "Not Modified", NULL},
    {400, "Bad Request", "Bad Request\n"},
    {403, "Forbidden", "Forbidden\n"},
    {404, "Not Found", "Not Found\n"},
    {405, "Method Not Allowed", "Method Not Allowed\n"},
    {412, "Precondition Failed", "Precondition Failed\n"},
    {416, "Range Not Satisfiable", "Range Not Satisfiable\n"},
    {503, "Service Unavailable", "Service Unavailable\n"},
    {500, "Internal Server Error", "Internal Server Error\n"},
};
#define NSTATUSES (sizeof(statuses) / sizeof(*statuses))

/* Its row; the last (500) for a status not in the table. */
static size_t status_row(int status)
{
    size_t k = 0;
    while (k < NSTATUSES - 1 && statuses[k].status != status)
        k++;
    return k;
}

const char *lx_static_reason(int status)
{
    return statuses[status_row(status)].reason;
}

static void field(lx_static_resp_t *a, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void field(lx_static_resp_t *a, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    size_t room = sizeof(a->fields) - a->fields_len;
    int n = vsnprintf(a->fields + a->fields_len, room, fmt, ap);
    va_end(ap);
    if (n > 0 && (size_t)n < room)
        a->fields_len += (size_t)n;
}

static void fail(lx_static_resp_t *a, int status)
{
    size_t k = status_row(status);
    a->status = statuses[k].status;
    a->body = statuses[k].text;
    a->body_len = strlen(statuses[k].text);
    field(a, "Content-Type: text/plain; charset=utf-8\r\n");
}

/* The request header fields an answer reads, first of each name. */
typedef struct {
    lx_str_t inm, ims, im, ius, range, if_range, ae;
} conds_t;

static void read_fields(const lx_http1_req_t *h, conds_t *q)
{
    memset(q, 0, sizeof(*q));
    for (size_t i = 0; i < h->num_headers; i++) {
        const lx_str_t *k = &h->headers[i].name;
        const lx_str_t *v = &h->headers[i].value;
        lx_str_t *to = NULL;
        switch (k->len) {
        case 5:
            if (LX_CASEEQ_LIT(k->base, k->len, "range"))
                to = &q->range;
            break;
        case 8:
            if (LX_CASEEQ_LIT(k->base, k->len, "if-match"))
                to = &q->im;
            else if (LX_CASEEQ_LIT(k->base, k->len, "if-range"))
                to = &q->if_range;
            break;
        case 13:
            if (LX_CASEEQ_LIT(k->base, k->len, "if-none-match"))
                to = &q->inm;
            break;
        case 15:
            if (LX_CASEEQ_LIT(k->base, k->len, "accept-encoding"))
                to = &q->ae;
            break;
        case 17:
            if (LX_CASEEQ_LIT(k->base, k->len, "if-modified-since"))
                to = &q->ims;
            break;
        case 19:
            if (LX_CASEEQ_LIT(k->base, k->len, "if-unmodified-since"))
                to = &q->ius;
            break;
        }
        if (to != NULL && to->base == NULL)
            *to = *v;
    }
}

static void put_back(lx_static_t *s, lx_fentry_t **e)
{
    if (*e != NULL) {
        lx_fcache_put(&s->cache, *e);
        *e = NULL;
    }
}

/* The precompressed sibling the client takes, opened; NULL for none. */
static lx_fentry_t *variant(lx_static_t *s, int m, const lx_fentry_t *e,
                            const conds_t *q, uint64_t now, const char **enc)
{
    static const struct {
        uint8_t bit;
        const char *coding, *suffix;
    } kinds[] = {{LX_FSIB_BR, "br", ".br"}, {LX_FSIB_GZ, "gzip", ".gz"}};
    if (q->ae.base == NULL || e->keylen + 4 > sizeof(s->path))
        return NULL;
    for (int k = 0; k < 2; k++) {
        if (!(e->siblings & kinds[k].bit) ||
            !lx_accepts(q->ae.base, q->ae.len, kinds[k].coding))
            continue;
        memcpy(s->path, e->key, e->keylen);
        memcpy(s->path + e->keylen, kinds[k].suffix, 4);
        int status;
        lx_fentry_t *v = lx_fcache_get(&s->cache, s->mounts, m, s->path,
                                       e->keylen + 3, 0, now, &status);
        if (v == NULL)
            continue;
        if (S_ISREG(v->mode)) {
            *enc = kinds[k].coding;
            return v;
        }
        lx_fcache_put(&s->cache, v);
    }
    return NULL;
}

/* Preconditions (RFC 9110 13.2.2): 0 to go on, else the status. */
static int preconditions(const conds_t *q, const lx_fentry_t *e,
                         const char *etag, size_t elen)
{
    int64_t t;
    if (q->im.base != NULL) {
        if (!lx_etag_match(q->im.base, q->im.len, etag, elen, 1))
            return 412;
    } else if (q->ius.base != NULL &&
               lx_http_date_parse(q->ius.base, q->ius.len, &t) == 0 &&
               e->mtime_s > t) {
        return 412;
    }
    if (q->inm.base != NULL) {
        if (lx_etag_match(q->inm.base, q->inm.len, etag, elen, 0))
            return 304;
    } else if (q->ims.base != NULL &&
               lx_http_date_parse(q->ims.base, q->ims.len, &t) == 0 &&
               e->mtime_s <= t) {
        return 304;
    }
    return 0;
}

/* Whether If-Range lets the range through. */
static int if_range_holds(const conds_t *q, const lx_fentry_t *e,
                          const char *etag, size_t elen)
{
    const lx_str_t *v = &q->if_range;
    if (v->base == NULL)
        return 1;
    if (v->len > 0 && (v->base[0] == '"' || v->base[0] == 'W'))
        return v->len == elen && memcmp(v->base, etag, elen) == 0;
    int64_t t;
    return lx_http_date_parse(v->base, v->len, &t) == 0 && t == e->mtime_s;
}

static void add(lx_static_resp_t *a, const char *p, size_t n)
{
    if (n <= sizeof(a->fields) - a->fields_len) {
        memcpy(a->fields + a->fields_len, p, n);
        a->fields_len += n;
    }
}

static int is_immutable(lx_static_t *s, lx_fentry_t *e, const char *rel);

/* The modification time of f, in ns: with its size, what says the file
 * changed. */
static uint64_t version(const lx_fentry_t *f)
{
    return (uint64_t)f->mtime_s * 1000000000u + (uint64_t)f->mtime_ns;
}

#define ACCEPT_RANGES "Accept-Ranges: bytes\r\n"

/* The fields every answer about the file f (e, or its sibling encoded
 * enc) has, made once for its size and time and kept in f->text:
 * Content-Type, Content-Encoding, Vary, then (at text_mark) ETag,
 * Last-Modified, Cache-Control and Accept-Ranges. 0, or -1 when out of
 * memory. */
static int describe(lx_static_t *s, lx_fentry_t *e, lx_fentry_t *f,
                    const char *enc)
{
    if (f->text != NULL && f->text_stamp[0] == f->size &&
        f->text_stamp[1] == version(f) && f->text_siblings == e->siblings)
        return 0;
    if (e->type == NULL) {
        e->type = content_type(s, e->key, e->keylen);
        e->type_len = strlen(e->type);
    }
    char cc[80] = "";
    if (s->immutable_on && is_immutable(s, e, e->key))
        snprintf(cc, sizeof(cc),
                 "Cache-Control: public, max-age=31536000, "
                 "immutable\r\n");
    else if (s->max_age >= 0)
        snprintf(cc, sizeof(cc), "Cache-Control: public, max-age=%lld\r\n",
                 (long long)s->max_age);
    char lm[30];
    lx_http_date_format(f->mtime_s, lm);
    size_t cap = e->type_len + 256 + strlen(cc);
    char *t = malloc(cap);
    if (t == NULL)
        return -1;
    int n1 = snprintf(t, cap, "Content-Type: %s\r\n%s%s%s%s", e->type,
                      enc ? "Content-Encoding: " : "", enc ? enc : "",
                      enc ? "\r\n" : "",
                      e->siblings ? "Vary: Accept-Encoding\r\n" : "");
    if (n1 < 0 || (size_t)n1 >= cap) {
        free(t);
        return -1;
    }
    /* the entity tag: "<mtime>.<ns>-<size>[-<coding>]" */
    int n2 = snprintf(t + n1, cap - (size_t)n1,
                      "ETag: \"%llx.%lx-%llx%s%s\"\r\nLast-Modified: %s\r\n"
                      "%s" ACCEPT_RANGES,
                      (unsigned long long)f->mtime_s, (long)f->mtime_ns,
                      (unsigned long long)f->size, enc ? "-" : "",
                      enc ? enc : "", lm, cc);
    if (n2 < 0 || (size_t)n2 >= cap - (size_t)n1) {
        free(t);
        return -1;
    }
    free(f->text);
    f->text = t;
    f->text_len = (size_t)(n1 + n2);
    f->text_stamp[0] = f->size;
    f->text_stamp[1] = version(f);
    f->text_siblings = e->siblings;
    f->text_mark = (size_t)n1;
    return 0;
}

/* A small file's bytes kept with its entry, renewed when its metadata
 * changed: they, or NULL when the body is to be read from the descriptor
 * (a larger file; a read that came short, the file changing meanwhile; or
 * an old snapshot that another request may still be sending, which is
 * not freed under it). */
static const char *snapshot(lx_fentry_t *f)
{
    uint64_t stamp[2] = {f->size, version(f)};
    if (f->bytes != NULL && f->bytes_stamp[0] == stamp[0] &&
        f->bytes_stamp[1] == stamp[1])
        return f->bytes;
    if (f->refs > 1)
        return NULL;
    free(f->bytes);
    f->bytes = NULL;
    if (f->size > LX_STATIC_SNAPSHOT_MAX)
        return NULL;
    char *b = malloc(f->size ? f->size : 1);
    if (b == NULL)
        return NULL;
    size_t got = 0;
    while (got < f->size) {
        ssize_t n = pread(f->fd, b + got, f->size - got, (off_t)got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        got += (size_t)n;
    }
    if (got != f->size) {
        free(b);
        return NULL;
    }
    f->bytes = b;
    f->bytes_stamp[0] = stamp[0];
    f->bytes_stamp[1] = stamp[1];
    return b;
}

static int is_immutable(lx_static_t *s, lx_fentry_t *e, const char *rel)
{
    /* Computed once per entry: bit 0 known, bit 1 the answer. */
    if (!(e->user & 1))
        e->user =
            (uint8_t)(1 |
                      (regexec(&s->immutable, rel, 0, NULL, 0) == 0 ? 2 : 0));
    return (e->user & 2) != 0;
}

void lx_static_answer(lx_static_t *s, int m, lx_str_t path, size_t rest,
                      const lx_http1_req_t *h, uint64_t now,
                      lx_static_resp_t *a)
{
    a->status = 0;
    a->file = NULL;
    a->bytes = NULL;
    a->offset = a->length = 0;
    a->body = NULL;
    a->body_len = 0;
    a->redirect = 0;
    a->fields_len = 0;
    int head = h->method.len == 4 && memcmp(h->method.base, "HEAD", 4) == 0;
    int get = h->method.len == 3 && memcmp(h->method.base, "GET", 3) == 0;
    if (!get && !head) {
        field(a, "Allow: GET, HEAD\r\n");
        fail(a, 405);
        return;
    }
    int slash;
    int len = lx_fpath_decode(path.base + rest, path.len - rest, s->path,
                              LX_FPATH_MAX, s->dotfiles, &slash);
    if (len < 0) {
        fail(a, -len);
        return;
    }
    int status;
    lx_fentry_t *e = lx_fcache_get(&s->cache, s->mounts, m, s->path,
                                   (size_t)len, 1, now, &status);
    if (e == NULL) {
        fail(a, status);
        return;
    }
    if (S_ISDIR(e->mode)) {
        put_back(s, &e);
        if (s->index == NULL) {
            fail(a, 404);
            return;
        }
        if (!slash) {
            a->redirect = 1;
            fail(a, 301);
            return;
        }
        size_t n = (size_t)len;
        if (n + 1 + s->index_len + 1 > LX_FPATH_MAX) {
            fail(a, 404);
            return;
        }
        if (n > 0)
            s->path[n++] = '/';
        memcpy(s->path + n, s->index, s->index_len + 1);
        len = (int)(n + s->index_len);
        e = lx_fcache_get(&s->cache, s->mounts, m, s->path, (size_t)len, 1,
                          now, &status);
        if (e == NULL) {
            fail(a, status);
            return;
        }
    } else if (slash) {
        put_back(s, &e);
        fail(a, 404);
        return;
    }
    if (!S_ISREG(e->mode)) {
        put_back(s, &e);
        fail(a, 404);
        return;
    }
    conds_t q;
    read_fields(h, &q);
    const char *enc = NULL;
    lx_fentry_t *v = e->siblings ? variant(s, m, e, &q, now, &enc) : NULL;
    lx_fentry_t *f = v ? v : e;
    if (describe(s, e, f, enc) < 0) {
        put_back(s, &v);
        put_back(s, &e);
        fail(a, 503);
        return;
    }
    /* f->text: Content-Type, Content-Encoding, Vary, then from
     * text_mark on: ETag, Last-Modified, Cache-Control, Accept-Ranges */
    const char *etag = f->text + f->text_mark + 6; /* after "ETag: " */
    size_t elen = strcspn(etag, "\r");
    int pre = preconditions(&q, f, etag, elen);
    if (pre == 412) {
        put_back(s, &v);
        put_back(s, &e);
        fail(a, 412);
        return;
    }
    a->status = 200;
    a->offset = 0;
    a->length = f->size;
    if (pre == 304) {
        /* what a 200 would say of the entity, but the body's own fields */
        a->status = 304;
        a->length = 0;
        size_t from = f->text_mark;
        add(a, f->text + from,
            f->text_len - from - (sizeof(ACCEPT_RANGES) - 1));
        if (e->siblings)
            add(a, "Vary: Accept-Encoding\r\n", 23);
        put_back(s, &v);
        put_back(s, &e);
        return;
    }
    if (get && q.range.base != NULL && if_range_holds(&q, f, etag, elen)) {
        uint64_t first, last;
        int rc =
            lx_range_parse(q.range.base, q.range.len, f->size, &first, &last);
        if (rc < 0) {
            field(a, "Content-Range: bytes */%llu\r\n",
                  (unsigned long long)f->size);
            put_back(s, &v);
            put_back(s, &e);
            fail(a, 416);
            return;
        }
        if (rc > 0) {
            a->status = 206;
            a->offset = first;
            a->length = last - first + 1;
            field(a, "Content-Range: bytes %llu-%llu/%llu\r\n",
                  (unsigned long long)first, (unsigned long long)last,
                  (unsigned long long)f->size);
        }
    }
    add(a, f->text, f->text_len);
    a->bytes = snapshot(f);
    if (v != NULL) {
        put_back(s, &e);
        a->file = v;
    } else {
        a->file = e;
    }
}

void lx_static_done(lx_static_t *s, lx_static_resp_t *a)
{
    put_back(s, &a->file);
}
