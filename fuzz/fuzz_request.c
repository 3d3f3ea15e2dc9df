/* Fuzz target: the HTTP/1.1 request head parser.
 *
 * libFuzzer (from the repository root):
 *   mkdir -p fuzz/bin /tmp/lx-fuzz/request /tmp/lx-fuzz/artifacts
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -Icsrc \
 *       fuzz/fuzz_request.c -o fuzz/bin/fuzz_request
 *   fuzz/bin/fuzz_request -dict=fuzz/http1.dict -max_total_time=180 \
 *       -artifact_prefix=/tmp/lx-fuzz/artifacts/ -print_final_stats=1 \
 *       /tmp/lx-fuzz/request fuzz/corpus/request
 * Replay of the corpus without libFuzzer:
 *   gcc -std=c11 -Wall -Wextra -Werror -g -O1 -fsanitize=address,undefined \
 *       -fno-sanitize-recover=all -Icsrc fuzz/replay.c fuzz/fuzz_request.c \
 *       -o fuzz/bin/replay_request
 *   fuzz/bin/replay_request fuzz/corpus/request
 *
 * Besides memory errors it aborts when an invariant breaks: a reported string
 * outside the head, a flag that contradicts the fields, or an outcome that
 * changes when the same bytes arrive in two parts. */
#include "../csrc/http1.c"

#include <stdlib.h>
#include <string.h>

#define FZ_MAXH 128

typedef struct {
    int ret, status;
    size_t off[4], len[4]; /* method, target, path, query */
    int minor;
    unsigned flags;
    int64_t cl;
    size_t nh;
    size_t hoff[2 * FZ_MAXH], hlen[2 * FZ_MAXH];
} fz_out_t;

static const lx_http1_limits_t fz_limits[2] = {
    {8192, 8192, 100}, {24, 20, 4}, /* tight, to reach the 414 and 431 paths */
};

static void fz_span(lx_str_t s, const uint8_t *b, size_t head, size_t *off,
                    size_t *len)
{
    const char *base = (const char *)b;
    if (s.base < base || s.len > head ||
        (size_t)(s.base - base) > head - s.len)
        abort();
    *off = (size_t)(s.base - base);
    *len = s.len;
}

static int fz_tchar(uint8_t c)
{
    return (ctab[c] & C_TCHAR) != 0;
}

/* Parse b[0..n) and check everything that must hold of the answer. */
static fz_out_t fz_parse(const uint8_t *b, size_t n, lx_http1_req_t *req,
                         const lx_http1_limits_t *lim, size_t cap)
{
    fz_out_t o;
    int status = -7;

    memset(&o, 0, sizeof o);
    req->num_headers = cap;
    o.ret = lx_http1_parse_request((const char *)b, n, req, lim, &status);
    if (o.ret == LX_AGAIN) {
        if (req->num_headers != cap)
            abort();
        return o;
    }
    if (o.ret == LX_ERR) {
        if (status != 400 && status != 414 && status != 431 && status != 501 &&
            status != 505)
            abort();
        o.status = status;
        return o;
    }
    if (o.ret <= 0 || (size_t)o.ret > n)
        abort();
    size_t head = (size_t)o.ret;
    if (head < 4 || memcmp(b + head - 4, "\r\n\r\n", 4) != 0)
        abort();
    fz_span(req->method, b, head, &o.off[0], &o.len[0]);
    fz_span(req->target, b, head, &o.off[1], &o.len[1]);
    fz_span(req->path, b, head, &o.off[2], &o.len[2]);
    fz_span(req->query, b, head, &o.off[3], &o.len[3]);
    o.minor = req->minor_version;
    o.flags = req->flags;
    o.cl = req->content_length;
    o.nh = req->num_headers;
    if (o.len[0] == 0 || o.len[1] == 0)
        abort();
    for (size_t i = 0; i < o.len[0]; i++)
        if (!fz_tchar(b[o.off[0] + i]))
            abort();
    for (size_t i = 0; i < o.len[1]; i++) {
        uint8_t c = b[o.off[1] + i];
        if (c <= 0x20 || c == 0x7f || c == '#')
            abort();
    }
    if (o.off[2] != o.off[1] || o.len[2] > o.len[1])
        abort();
    if (o.len[2] < o.len[1] && (b[o.off[1] + o.len[2]] != '?' ||
                                o.off[3] != o.off[2] + o.len[2] + 1 ||
                                o.len[2] + 1 + o.len[3] != o.len[1]))
        abort();
    if (memchr(b + o.off[2], '?', o.len[2]))
        abort();
    if (o.minor != 0 && o.minor != 1)
        abort();
    if (o.nh > cap || o.nh > lim->max_fields)
        abort();

    int hosts = 0, cls = 0, tes = 0;
    for (size_t i = 0; i < o.nh; i++) {
        size_t *no = &o.hoff[2 * i], *nl = &o.hlen[2 * i];
        fz_span(req->headers[i].name, b, head, no, nl);
        fz_span(req->headers[i].value, b, head, no + 1, nl + 1);
        if (*nl == 0)
            abort();
        const uint8_t *nm = b + *no, *v = b + no[1];
        for (size_t k = 0; k < *nl; k++)
            if (!fz_tchar(nm[k]))
                abort();
        if (nm + *nl >= b + head || nm[*nl] != ':')
            abort();
        for (size_t k = 0; k < nl[1]; k++)
            if (!(ctab[v[k]] & C_VALUE))
                abort();
        if (nl[1] && (is_ows(v[0]) || is_ows(v[nl[1] - 1])))
            abort();
        if (LX_CASEEQ_LIT(nm, *nl, "host"))
            hosts++;
        if (LX_CASEEQ_LIT(nm, *nl, "content-length"))
            cls++;
        if (LX_CASEEQ_LIT(nm, *nl, "transfer-encoding"))
            tes++;
    }
    if (hosts > 1 || cls > 1 || (cls && tes))
        abort();
    if (o.minor == 1 && hosts != 1)
        abort();
    if (tes && o.minor == 0)
        abort();
    if (o.flags & LX_REQ_CHUNKED) {
        if (!tes || !(o.flags & LX_REQ_HAS_BODY) || o.cl != -1)
            abort();
    } else {
        if (tes)
            abort();
        if (o.cl < -1 || o.cl > 999999999999999999LL)
            abort();
        if (!!(o.flags & LX_REQ_HAS_BODY) != (o.cl > 0))
            abort();
        if ((o.cl >= 0) != (cls == 1))
            abort();
    }
    if ((o.flags & LX_REQ_EXPECT_100) && o.minor != 1)
        abort();
    req->num_headers = cap;
    return o;
}

static int fz_same(const fz_out_t *a, const fz_out_t *b)
{
    if (a->ret != b->ret)
        return 0;
    if (a->ret == LX_ERR)
        return a->status == b->status;
    if (a->ret == LX_AGAIN)
        return 1;
    if (memcmp(a->off, b->off, sizeof a->off) ||
        memcmp(a->len, b->len, sizeof a->len) || a->minor != b->minor ||
        a->flags != b->flags || a->cl != b->cl || a->nh != b->nh)
        return 0;
    for (size_t i = 0; i < 2 * a->nh; i++)
        if (a->hoff[i] != b->hoff[i] || a->hlen[i] != b->hlen[i])
            return 0;
    return 1;
}

static uint64_t fz_hash(const uint8_t *d, size_t n)
{
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < n; i++)
        h = (h ^ d[i]) * 0x100000001b3ull;
    return h;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    lx_header_t hdrs[FZ_MAXH];
    lx_http1_req_t req;
    uint64_t h = fz_hash(data, size);

    req.headers = hdrs;
    for (int li = 0; li < 2; li++) {
        const lx_http1_limits_t *lim = &fz_limits[li];
        size_t cap = (h & 7) == 0 ? 3 : FZ_MAXH;
        memset(&req, 0xa5, sizeof req);
        req.headers = hdrs;
        fz_out_t whole = fz_parse(data, size, &req, lim, cap);

        /* Two parts: a prefix in an exact-size copy (so an over-read of the
         * prefix is caught), then the whole buffer with the same struct. */
        size_t cuts[3] = {size / 2, size ? (size_t)(h % size) : 0,
                          size ? (size_t)((h >> 32) % size) : 0};
        for (int c = 0; c < 3; c++) {
            size_t k = cuts[c];
            uint8_t *pre = malloc(k ? k : 1);
            memcpy(pre, data, k);
            fz_out_t p = fz_parse(pre, k, &req, lim, cap);
            free(pre);
            if (p.ret != LX_AGAIN) {
                /* decided early: must be what the whole input gives */
                if (!fz_same(&p, &whole))
                    abort();
            } else if (whole.ret >= 0 && (size_t)whole.ret <= k) {
                abort(); /* the head was all there */
            }
            fz_out_t again = fz_parse(data, size, &req, lim, cap);
            if (!fz_same(&again, &whole))
                abort();
        }
    }
    return 0;
}
