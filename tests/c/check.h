/* The harness of the C unit tests: CHECK counts passes and prints the
 * first 300 failures; check_done prints the tally and gives main's exit
 * status. A test file may define CHECK_CONTEXT() before including this, to
 * print more of where a failure happened. */
#ifndef LX_TEST_CHECK_H
#define LX_TEST_CHECK_H

#include <stdio.h>

static int n_pass, n_fail;

#ifndef CHECK_CONTEXT
#define CHECK_CONTEXT() printf("FAIL %s (line %d): ", __func__, __LINE__)
#endif

#define CHECK(cond, ...)              \
    do {                              \
        if (cond) {                   \
            n_pass++;                 \
        } else if (++n_fail <= 300) { \
            CHECK_CONTEXT();          \
            printf(__VA_ARGS__);      \
            printf("\n");             \
        }                             \
    } while (0)

static int check_done(void)
{
    printf("%d passed, %d failed\n", n_pass, n_fail);
    return n_fail ? 1 : 0;
}

#endif
