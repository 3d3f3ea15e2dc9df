/* Fuzz target: proxy headers (fwd.c): the trusted peers' list, Forwarded
 * and X-Forwarded-* fields.
 *
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -Icsrc \
 *       fuzz/fuzz_fwd.c -o fuzz/bin/fuzz_fwd
 *   fuzz/bin/fuzz_fwd -max_total_time=180 fuzz/corpus/fwd
 *
 * The input is header lines ("Name: value", split at '\n'), read as a
 * request's fields by a trusted peer; it is also parsed whole as a list of
 * trusted peers. Besides memory errors it aborts when what is read breaks
 * the contract: an address of another family, a port out of range, a host
 * that is not one or too long, anything set when nothing is said. */
#define _DEFAULT_SOURCE
#include "../csrc/fwd.c"

#include <stdlib.h>
#include <string.h>

#define MAX_FIELDS 16

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *s = (const char *)data;
    lx_fwd_allow_t t = {0};
    const char *bad = NULL;
    size_t bad_len = 0;
    int rc = lx_fwd_allow_parse(&t, s, size, &bad, &bad_len);
    if (rc == -1 && (bad < s || bad + bad_len > s + size))
        abort();
    if (rc == 0 && t.n > size / 2 + 1)
        abort();
    for (size_t i = 0; rc == 0 && i < t.n; i++)
        if ((t.nets[i].family != AF_INET && t.nets[i].family != AF_INET6) ||
            t.nets[i].bits > (t.nets[i].family == AF_INET ? 32 : 128) ||
            !lx_fwd_trusted(&t, t.nets[i].family, t.nets[i].addr))
            abort();
    lx_fwd_allow_free(&t);

    lx_header_t hs[MAX_FIELDS];
    size_t n = 0, i = 0;
    while (i < size && n < MAX_FIELDS) {
        const char *line = s + i;
        const char *nl = memchr(line, '\n', size - i);
        size_t len = nl ? (size_t)(nl - line) : size - i;
        i += len + 1;
        const char *colon = memchr(line, ':', len);
        if (colon == NULL)
            continue;
        const char *v = colon + 1, *end = line + len;
        while (v < end && (*v == ' ' || *v == '\t'))
            v++;
        hs[n].name = (lx_str_t){line, (size_t)(colon - line)};
        hs[n].value = (lx_str_t){v, (size_t)(end - v)};
        n++;
    }
    static const char *const lists[] = {"127.0.0.1,10.0.0.0/8,::1", "*", ""};
    for (size_t k = 0; k < 3; k++) {
        if (lx_fwd_allow_parse(&t, lists[k], strlen(lists[k]), &bad,
                               &bad_len) != 0)
            abort();
        lx_fwd_t o;
        int said = lx_fwd_read(&t, hs, n, &o);
        if (o.has_addr && o.family != AF_INET && o.family != AF_INET6)
            abort();
        if (o.port < -1 || o.port == 0 || o.port > 65535 ||
            (!o.has_addr && o.port != -1))
            abort();
        if (o.server_port < -1 || o.server_port > 65535 || o.scheme > 2)
            abort();
        if (o.host_len > LX_FWD_HOST_MAX || strlen(o.host) != o.host_len ||
            (o.host_len > 0 && parse_host(o.host, o.host_len) < 0))
            abort();
        if (!said &&
            (o.has_addr || o.scheme || o.host_len || o.server_port != -1))
            abort();
        lx_fwd_allow_free(&t);
    }
    return 0;
}
