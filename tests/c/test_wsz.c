/* Unit tests of permessage-deflate's compression (wsz.c). */
#include "../../csrc/buf.c"
#include "../../csrc/wsz.c"

#include <stdio.h>
#include <stdlib.h>

#include "check.h"

static lx_bufpool_t pool;

/* A message through a compressor and back through a decompressor. */
static int round_trip(lx_wsz_t *d, lx_wsz_t *i, const char *msg, size_t n)
{
    lx_buf_t *z = NULL, *plain = NULL;
    if (lx_wsz_deflate(d, &pool, msg, n, &z) != LX_OK)
        return 0;
    int rc = lx_wsz_inflate(i, &pool, &z, 0, &plain);
    int ok = rc == 0 && lx_buf_avail(plain) == n &&
             memcmp(lx_buf_head(plain), msg, n) == 0;
    lx_buf_put(&pool, z);
    if (rc == 0)
        lx_buf_put(&pool, plain);
    return ok;
}

static void test_round_trips(void)
{
    static const char *const msgs[] = {"hello", "", "hello again", "",
                                       "hello hello hello hello"};
    for (int fresh = 0; fresh < 2; fresh++) {
        lx_wsz_t d, i;
        lx_wsz_init(&d, 0, 12, fresh);
        lx_wsz_init(&i, 1, 15, fresh);
        for (size_t k = 0; k < sizeof(msgs) / sizeof(msgs[0]); k++)
            CHECK(round_trip(&d, &i, msgs[k], strlen(msgs[k])),
                  "message %zu (fresh %d)", k, fresh);
        /* a large one, compressible and not */
        size_t n = 3 << 20;
        char *big = malloc(n);
        for (size_t k = 0; k < n; k++)
            big[k] = k % 251 == 0 ? (char)rand() : (char)('a' + k % 7);
        CHECK(round_trip(&d, &i, big, n), "3 MiB (fresh %d)", fresh);
        for (size_t k = 0; k < n; k++)
            big[k] = (char)rand();
        CHECK(round_trip(&d, &i, big, n), "3 MiB of noise (fresh %d)", fresh);
        free(big);
        CHECK(round_trip(&d, &i, "after", 5), "after the large ones");
        lx_wsz_free(&d);
        lx_wsz_free(&i);
    }
}

static void test_empty_message(void)
{
    /* right after another message's flush: one byte, an empty stored
     * block's header */
    lx_wsz_t d;
    lx_wsz_init(&d, 0, 15, 0);
    lx_buf_t *z;
    CHECK(lx_wsz_deflate(&d, &pool, "x", 1, &z) == LX_OK, "x");
    lx_buf_put(&pool, z);
    CHECK(lx_wsz_deflate(&d, &pool, "", 0, &z) == LX_OK &&
              lx_buf_avail(z) == 1 && z->data[0] == 0,
          "empty: %zu bytes", lx_buf_avail(z));
    lx_buf_put(&pool, z);
    lx_wsz_free(&d);
}

static void test_limits_and_garbage(void)
{
    lx_wsz_t d, i;
    lx_wsz_init(&d, 0, 15, 0);
    lx_wsz_init(&i, 1, 15, 0);
    size_t n = 1 << 20;
    char *zeros = calloc(1, n);
    lx_buf_t *z, *plain = NULL;
    CHECK(lx_wsz_deflate(&d, &pool, zeros, n, &z) == LX_OK &&
              lx_buf_avail(z) < 4096,
          "a MiB of zeros is small: %zu", lx_buf_avail(z));
    CHECK(lx_wsz_inflate(&i, &pool, &z, 65536, &plain) == LX_WS_TOO_BIG,
          "inflated past the bound: 1009");
    CHECK(i.z == NULL, "the decompressor is dropped after a failure");
    lx_buf_put(&pool, z);
    free(zeros);
    z = lx_buf_get(&pool);
    memcpy(z->data, "\xff\xff\xff\xff\xff\xff", 6); /* reserved block type */
    z->len = 6;
    CHECK(lx_wsz_inflate(&i, &pool, &z, 0, &plain) == LX_WS_INVALID_DATA,
          "not deflate data: 1007");
    lx_buf_put(&pool, z);
    lx_wsz_free(&d);
    lx_wsz_free(&i);
}

int main(void)
{
    lx_bufpool_init(&pool, LX_BUF_DEFAULT_SIZE, 8);
    test_round_trips();
    test_empty_message();
    test_limits_and_garbage();
    lx_bufpool_clear(&pool);
    CHECK(lx_buf_live() == 0, "buffers left: %ld", lx_buf_live());
    return check_done();
}
