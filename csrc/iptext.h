/* IP addresses as text, read strictly (fwd.c's proxy headers and
 * proxyp.c's PROXY lines share them). Pure C. */
#ifndef LX_IPTEXT_H
#define LX_IPTEXT_H

#include <arpa/inet.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>

/* Dotted decimal, four parts of 0-255 without leading zeros. */
static inline int lx_ipv4_parse(const char *s, size_t n, uint8_t out[4])
{
    size_t i = 0;
    for (int part = 0; part < 4; part++) {
        if (part > 0) {
            if (i >= n || s[i] != '.')
                return -1;
            i++;
        }
        size_t start = i;
        unsigned v = 0;
        while (i < n && (s[i] >= '0' && s[i] <= '9') && i - start < 3)
            v = v * 10 + (unsigned)(s[i++] - '0');
        if (i == start || v > 255 || (s[start] == '0' && i - start > 1))
            return -1;
        out[part] = (uint8_t)v;
    }
    return i == n ? 0 : -1;
}

/* RFC 4291 text (no zone), by inet_pton. */
static inline int lx_ipv6_parse(const char *s, size_t n, uint8_t out[16])
{
    char text[INET6_ADDRSTRLEN];
    if (n == 0 || n >= sizeof(text))
        return -1;
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (!((ch >= '0' && ch <= '9') ||
              (((ch | 0x20) >= 'a') && (ch | 0x20) <= 'f') || ch == ':' ||
              ch == '.'))
            return -1;
    }
    memcpy(text, s, n);
    text[n] = '\0';
    return inet_pton(AF_INET6, text, out) == 1 ? 0 : -1;
}

#endif
