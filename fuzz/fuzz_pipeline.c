/* Fuzz target: a connection's byte stream, framed the way the server does.
 *
 * Requests are parsed one after the other from one buffer: the head, then
 * the body by Content-Length or by the chunked decoder, then the next
 * pipelined request while the connection may persist. The same stream is
 * framed as it would be received whole, one byte at a time and in pieces
 * derived from the input: where each request starts, where its head and its
 * body end, and the status of a rejection must not depend on how the bytes
 * arrived (a framing that does is how requests get smuggled).
 *
 * libFuzzer (from the repository root):
 *   mkdir -p fuzz/bin /tmp/lx-fuzz/pipeline /tmp/lx-fuzz/artifacts
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -Icsrc \
 *       fuzz/fuzz_pipeline.c -o fuzz/bin/fuzz_pipeline
 *   fuzz/bin/fuzz_pipeline -dict=fuzz/http1.dict -max_total_time=180 \
 *       -artifact_prefix=/tmp/lx-fuzz/artifacts/ -print_final_stats=1 \
 *       /tmp/lx-fuzz/pipeline fuzz/corpus/pipeline
 * Replay of the corpus without libFuzzer:
 *   gcc -std=c11 -Wall -Wextra -Werror -g -O1 -fsanitize=address,undefined \
 *       -fno-sanitize-recover=all -Icsrc fuzz/replay.c fuzz/fuzz_pipeline.c \
 *       -o fuzz/bin/replay_pipeline
 *   fuzz/bin/replay_pipeline fuzz/corpus/pipeline */
#include "../csrc/http1.c"

#include <stdlib.h>
#include <string.h>

#define FP_MAXH 100
#define FP_MAXEV 64

typedef struct {
    size_t start; /* offset of the request (or of the rejected bytes) */
    size_t head;  /* bytes of the head, 0 when rejected */
    size_t end;   /* offset after the body; 0 while incomplete */
    int status;   /* 0, or the rejection status */
    unsigned flags;
    int64_t cl;
} fp_ev_t;

enum { FP_MORE, FP_CLOSE, FP_ERROR, FP_FULL };

typedef struct {
    fp_ev_t ev[FP_MAXEV];
    size_t n;
    int final;
    size_t pos;
} fp_run_t;

static const lx_http1_limits_t fp_limits[2] = {
    {8190, 8190, 100}, {64, 48, 6}, /* the second reaches 414 and 431 */
};

/* An exact-size copy of in[0..n), so a read past what arrived is caught. */
static uint8_t *fp_copy(const uint8_t *in, size_t n)
{
    uint8_t *c = malloc(n ? n : 1);
    memcpy(c, in, n);
    return c;
}

static void fp_inside(lx_str_t s, const uint8_t *b, size_t n)
{
    const char *base = (const char *)b;
    if (s.len > n || s.base < base || (size_t)(s.base - base) > n - s.len)
        abort();
}

/* Frames data[0..size) received in pieces: mode 0 whole, 1 byte by byte,
 * 2 pieces of 1..64 bytes drawn from seed. */
static void fp_run(const uint8_t *data, size_t size, uint64_t seed, int mode,
                   const lx_http1_limits_t *lim, fp_run_t *r)
{
    enum { HEAD, BODY_CL, BODY_CH } st = HEAD;
    size_t arrived = 0, pos = 0;
    uint64_t left = 0;
    lx_chunked_t d;
    lx_header_t hdrs[FP_MAXH];
    lx_http1_req_t req;
    fp_ev_t *ev = NULL;

    memset(r, 0, sizeof *r);
    r->final = FP_MORE;
    lx_chunked_init(&d);
    do {
        size_t step = mode == 0 ? size : mode == 1 ? 1 : 1 + (seed >> 33) % 64;
        seed = seed * 6364136223846793005ull + 1442695040888963407ull;
        arrived = size - arrived < step ? size : arrived + step;
        for (;;) {
            size_t avail = arrived - pos;
            if (st == HEAD) {
                uint8_t *c = fp_copy(data + pos, avail);
                int status = -7;
                memset(&req, 0x5a, sizeof req);
                req.headers = hdrs;
                req.num_headers = FP_MAXH;
                int rc = lx_http1_parse_request((const char *)c, avail, &req,
                                                lim, &status);
                if (rc > 0) {
                    if ((size_t)rc > avail)
                        abort();
                    fp_inside(req.method, c, (size_t)rc);
                    fp_inside(req.target, c, (size_t)rc);
                    for (size_t i = 0; i < req.num_headers; i++) {
                        fp_inside(req.headers[i].name, c, (size_t)rc);
                        fp_inside(req.headers[i].value, c, (size_t)rc);
                    }
                }
                free(c);
                if (rc == LX_AGAIN)
                    break;
                if (r->n == FP_MAXEV) {
                    r->final = FP_FULL;
                    goto out;
                }
                ev = &r->ev[r->n++];
                ev->start = pos;
                if (rc == LX_ERR) {
                    ev->status = status;
                    r->final = FP_ERROR;
                    goto out;
                }
                if (rc <= 0)
                    abort();
                ev->head = (size_t)rc;
                ev->flags = req.flags;
                ev->cl = req.content_length;
                pos += (size_t)rc;
                if (req.flags & LX_REQ_CHUNKED) {
                    if (req.content_length != -1)
                        abort();
                    lx_chunked_init(&d);
                    st = BODY_CH;
                    continue;
                }
                if (req.content_length > 0) {
                    left = (uint64_t)req.content_length;
                    st = BODY_CL;
                    continue;
                }
                if (req.flags & LX_REQ_HAS_BODY)
                    abort();
            } else if (st == BODY_CL) {
                size_t take = avail < left ? avail : (size_t)left;
                pos += take;
                left -= take;
                if (left)
                    break;
            } else {
                uint8_t *c = fp_copy(data + pos, avail);
                size_t used = (size_t)-1;
                int rc = lx_chunked_parse(&d, (const char *)c, avail, &used);
                free(c);
                if (used > avail)
                    abort();
                if (rc == LX_CHUNKED_DATA) {
                    uint64_t take = avail - used;
                    if (d.remaining == 0)
                        abort();
                    if (take > d.remaining)
                        take = d.remaining;
                    lx_chunked_take(&d, take);
                    pos += used + (size_t)take;
                    if (take == 0)
                        break;
                    continue;
                }
                if (rc == LX_AGAIN) {
                    if (used != avail)
                        abort();
                    pos += used;
                    break;
                }
                if (rc == LX_ERR) {
                    /* the request's body is bad: the connection ends here */
                    pos += used;
                    ev->status = 400;
                    ev->end = pos;
                    r->final = FP_ERROR;
                    goto out;
                }
                if (rc != LX_CHUNKED_END)
                    abort();
                pos += used;
            }
            /* the request is complete */
            ev->end = pos;
            st = HEAD;
            if (!(ev->flags & LX_REQ_KEEPALIVE)) {
                r->final = FP_CLOSE;
                goto out;
            }
        }
    } while (arrived < size);
out:
    r->pos = pos;
    if (pos > size)
        abort();
}

static void fp_same(const fp_run_t *a, const fp_run_t *b)
{
    if (a->n != b->n || a->final != b->final || a->pos != b->pos)
        abort();
    for (size_t i = 0; i < a->n; i++) {
        const fp_ev_t *x = &a->ev[i], *y = &b->ev[i];
        if (x->start != y->start || x->head != y->head || x->end != y->end ||
            x->status != y->status || x->flags != y->flags || x->cl != y->cl)
            abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static fp_run_t whole, other;
    uint64_t h = 0xcbf29ce484222325ull;

    for (size_t i = 0; i < size; i++)
        h = (h ^ data[i]) * 0x100000001b3ull;
    for (int li = 0; li < 2; li++) {
        const lx_http1_limits_t *lim = &fp_limits[li];
        fp_run(data, size, h, 0, lim, &whole);

        /* what the whole run says must hang together */
        size_t at = 0;
        for (size_t i = 0; i < whole.n; i++) {
            const fp_ev_t *e = &whole.ev[i];
            if (e->start < at || e->start > size)
                abort();
            if (e->status == 0) {
                if (e->start + e->head > size)
                    abort();
                if (i + 1 < whole.n && e->end == 0)
                    abort(); /* a later request began before this one ended */
                if (e->end && !(e->flags & LX_REQ_CHUNKED) &&
                    e->end !=
                        e->start + e->head + (size_t)(e->cl > 0 ? e->cl : 0))
                    abort();
            } else if (e->status != 400 && e->status != 414 &&
                       e->status != 431 && e->status != 501 &&
                       e->status != 505) {
                abort();
            }
            at = e->end ? e->end : e->start;
        }

        fp_run(data, size, h, 2, lim, &other);
        fp_same(&whole, &other);
        if (size <= 2048) {
            fp_run(data, size, h, 1, lim, &other);
            fp_same(&whole, &other);
        }
    }
    return 0;
}
