/* Fuzz target: the chunked transfer-coding decoder.
 *
 * libFuzzer (from the repository root):
 *   mkdir -p fuzz/bin /tmp/lx-fuzz/chunked /tmp/lx-fuzz/artifacts
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -Icsrc \
 *       fuzz/fuzz_chunked.c -o fuzz/bin/fuzz_chunked
 *   fuzz/bin/fuzz_chunked -dict=fuzz/http1.dict -max_total_time=180 \
 *       -artifact_prefix=/tmp/lx-fuzz/artifacts/ -print_final_stats=1 \
 *       /tmp/lx-fuzz/chunked fuzz/corpus/chunked
 * Replay of the corpus without libFuzzer:
 *   gcc -std=c11 -Wall -Wextra -Werror -g -O1 -fsanitize=address,undefined \
 *       -fno-sanitize-recover=all -Icsrc fuzz/replay.c fuzz/fuzz_chunked.c \
 *       -o fuzz/bin/replay_chunked
 *   fuzz/bin/replay_chunked fuzz/corpus/chunked
 *
 * The body is decoded whole, then in pieces (splits derived from the input,
 * byte by byte, and taking data one byte at a time): the outcome, the offset
 * where it happened and the data must not depend on how the bytes arrived. */
#include "../csrc/http1.c"

#include <stdlib.h>
#include <string.h>

typedef struct {
    int rc;       /* LX_CHUNKED_END, LX_ERR, or LX_AGAIN when input ran out */
    size_t where; /* offset just after the body, or of the offending byte */
    uint8_t *data;
    size_t dlen;
} fz_ch_t;

static fz_ch_t fz_decode(const uint8_t *in, size_t len, const size_t *cuts,
                         size_t ncuts, int take_one)
{
    fz_ch_t o = {LX_AGAIN, 0, malloc(len ? len : 1), 0};
    lx_chunked_t d;
    size_t base = 0;

    lx_chunked_init(&d);
    for (size_t i = 0; i < ncuts; i++) {
        size_t plen = cuts[i] - base, off = 0;
        uint8_t *piece = malloc(plen ? plen : 1); /* exact size: over-reads */
        memcpy(piece, in + base, plen);
        for (;;) {
            size_t c = (size_t)-1;
            int rc = lx_chunked_parse(&d, (const char *)piece + off,
                                      plen - off, &c);
            if (c > plen - off)
                abort();
            off += c;
            if (rc == LX_CHUNKED_DATA) {
                if (d.remaining == 0)
                    abort();
                uint64_t k = plen - off;
                if (k > d.remaining)
                    k = d.remaining;
                if (take_one && k > 1)
                    k = 1;
                memcpy(o.data + o.dlen, piece + off, (size_t)k);
                o.dlen += (size_t)k;
                off += (size_t)k;
                lx_chunked_take(&d, k);
                if (k == 0)
                    break;
                continue;
            }
            if (rc == LX_AGAIN) {
                if (off != plen)
                    abort();
                break;
            }
            if (rc != LX_CHUNKED_END && rc != LX_ERR)
                abort();
            o.rc = rc;
            o.where = base + off;
            /* both outcomes are final */
            if (lx_chunked_parse(&d, (const char *)piece, plen, &c) != rc ||
                (rc == LX_CHUNKED_END && c != 0))
                abort();
            free(piece);
            return o;
        }
        free(piece);
        base = cuts[i];
    }
    return o;
}

static void fz_same(const fz_ch_t *a, const fz_ch_t *b)
{
    if (a->rc != b->rc || a->where != b->where || a->dlen != b->dlen ||
        memcmp(a->data, b->data, a->dlen) != 0)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uint64_t h = 0xcbf29ce484222325ull;
    size_t one = size, cuts[8], n = 0;

    for (size_t i = 0; i < size; i++)
        h = (h ^ data[i]) * 0x100000001b3ull;

    fz_ch_t whole = fz_decode(data, size, &one, 1, 0), o;
    if (whole.dlen > size)
        abort();
    if (whole.rc == LX_CHUNKED_END &&
        (whole.where < 5 || memcmp(data + whole.where - 2, "\r\n", 2) != 0))
        abort();

    /* splits derived from the input itself, so a crash replays */
    for (int i = 0; i < 4 && size > 1; i++) {
        cuts[n++] = (size_t)(h % size);
        h = h * 6364136223846793005ull + 1442695040888963407ull;
    }
    cuts[n++] = size;
    for (size_t i = 1; i < n; i++)
        for (size_t j = i; j > 0 && cuts[j - 1] > cuts[j]; j--) {
            size_t t = cuts[j];
            cuts[j] = cuts[j - 1];
            cuts[j - 1] = t;
        }
    o = fz_decode(data, size, cuts, n, 0);
    fz_same(&o, &whole);
    free(o.data);
    o = fz_decode(data, size, &one, 1, 1);
    fz_same(&o, &whole);
    free(o.data);
    if (size <= 4096) {
        size_t *bytes = malloc((size ? size : 1) * sizeof *bytes);
        for (size_t i = 0; i < size; i++)
            bytes[i] = i + 1;
        o = fz_decode(data, size, bytes, size, (int)(h & 1));
        fz_same(&o, &whole);
        free(o.data);
        free(bytes);
    }
    free(whole.data);
    return 0;
}
