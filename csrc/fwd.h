/* Proxy headers: the peers trusted to send them (addresses and CIDR
 * ranges, '*', unix socket peers), and what RFC 7239 Forwarded or
 * X-Forwarded-For/-Proto/-Host/-Port say of the client.
 *
 * Pure functions, no Python. The trusted list is parsed once into a table;
 * a request's fields are read only when its peer is in it. Every value is
 * checked strictly: a malformed Forwarded changes nothing, a malformed
 * X-Forwarded-* field changes nothing of what that field says. */
#ifndef LX_FWD_H
#define LX_FWD_H

#include <stddef.h>
#include <stdint.h>

#include "http1.h"
#include "lx.h"

/* One network of the table: an address family (AF_INET or AF_INET6), a
 * prefix length and the address with the bits past it cleared. */
typedef struct {
    uint8_t family;
    uint8_t bits;
    uint8_t addr[16];
} lx_fwd_net_t;

typedef struct {
    lx_fwd_net_t *nets; /* malloc'd, NULL when none */
    size_t n;
    uint8_t any;        /* '*': every peer */
    uint8_t unix_peers; /* unix socket peers */
} lx_fwd_allow_t;

/* Parse s[0..n), entries separated by commas (spaces around them
 * ignored): an IPv4 or IPv6 address, an address/prefix with no bit set
 * past the prefix, '*', or 'unix'. Replaces what t held. 0, or -1 with
 * *bad and *bad_len set to the entry that is not one (t is then empty);
 * -2 when out of memory. */
int lx_fwd_allow_parse(lx_fwd_allow_t *t, const char *s, size_t n,
                       const char **bad, size_t *bad_len);
void lx_fwd_allow_free(lx_fwd_allow_t *t);
/* Is a peer of this family (AF_INET, AF_INET6, AF_UNIX) and address (4 or
 * 16 bytes) trusted? An IPv4-mapped IPv6 address is matched as IPv4. */
int lx_fwd_trusted(const lx_fwd_allow_t *t, int family, const uint8_t *addr);

/* Is this header name (any case) one of the proxy headers? */
int lx_fwd_header(const char *name, size_t n);

/* What the proxy headers of a trusted peer's request say. */
#define LX_FWD_HOST_MAX 255
enum { LX_FWD_SCHEME_NONE = 0, LX_FWD_SCHEME_HTTP, LX_FWD_SCHEME_HTTPS };
typedef struct {
    uint8_t has_addr; /* the client's address: */
    uint8_t family;   /* AF_INET or AF_INET6 */
    uint8_t addr[16]; /* 4 or 16 bytes */
    int32_t port;     /* the client's port, -1 if not given */
    uint8_t scheme;   /* LX_FWD_SCHEME_* */
    size_t host_len;  /* the host the client asked for, 0 if not given */
    char host[LX_FWD_HOST_MAX + 1];
    int32_t server_port; /* the port the client connected to: 0 for the
                            scheme's default, -1 if not told */
} lx_fwd_t;

/* Read the proxy headers among hs[0..n): Forwarded when there is one (the
 * X-Forwarded-* fields are then ignored), else the X-Forwarded-* fields.
 * The client is the nearest node of the chain, walked from the right, that
 * is not in t (the leftmost when all are); an "unknown" or obfuscated node
 * gives no address. Forwarded's proto and host are the client's node's;
 * of X-Forwarded-Proto, -Host and -Port the last item counts. The server
 * port is X-Forwarded-Port's, else the host's, else the scheme's default
 * when a host or a scheme was given. Returns 1 when out says anything,
 * else 0. */
int lx_fwd_read(const lx_fwd_allow_t *t, const lx_header_t *hs, size_t n,
                lx_fwd_t *out);

#endif
