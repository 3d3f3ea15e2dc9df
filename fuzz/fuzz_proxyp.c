/* Fuzz target: PROXY protocol headers (proxyp.c), versions 1 and 2.
 *
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -Icsrc \
 *       fuzz/fuzz_proxyp.c -o fuzz/bin/fuzz_proxyp
 *   fuzz/bin/fuzz_proxyp -max_total_time=180 fuzz/corpus/proxyp
 *
 * The input is the first bytes of a connection. Besides memory errors it
 * aborts when what is read breaks the contract: a length past the input or
 * the bound, an address of another family, anything said of a header
 * that is not one; and when a header found whole is not found the same
 * in every longer prefix, or any shorter prefix of it is not asked to
 * wait for more. */
#define _DEFAULT_SOURCE
#include "../csrc/proxyp.c"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    lx_pp_t o, again;
    int rc = lx_pp_parse(data, size, &o);
    if (rc < LX_PP_BAD || rc > (int)size || rc > LX_PP_MAX)
        abort();
    if (rc <= 0 && (o.has_addr || o.family || o.port))
        abort();
    if (o.has_addr && o.family != AF_INET && o.family != AF_INET6)
        abort();
    if (!o.has_addr && (o.family || o.port))
        abort();
    if (rc == LX_PP_MORE && size >= LX_PP_MAX)
        abort(); /* this many bytes always tell */
    if (rc > 0) {
        /* the same header, whatever follows it */
        if (lx_pp_parse(data, (size_t)rc, &again) != rc ||
            memcmp(&o, &again, sizeof(o)) != 0)
            abort();
        /* and no shorter prefix is whole or malformed */
        for (size_t k = 0; k < (size_t)rc; k++)
            if (lx_pp_parse(data, k, &again) != LX_PP_MORE)
                abort();
    } else if (rc == LX_PP_BAD) {
        /* malformed stays malformed as more bytes come (checked on the
         * prefixes: a shorter one may wait, or be malformed already) */
        for (size_t k = 0; k < size; k++)
            if (lx_pp_parse(data, k, &again) > 0)
                abort();
    }
    return 0;
}
