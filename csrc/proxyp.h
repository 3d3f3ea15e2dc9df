/* The PROXY protocol (versions 1 and 2): the header a load balancer sends
 * before anything else on a connection, saying whose connection it
 * forwards.
 *
 * Pure functions, no Python. lx_pp_parse reads a header from the start of
 * a buffer, strictly: version 1's text line (at most 107 bytes, exact
 * spacing, addresses and ports as the family writes them) or version 2's
 * binary block (the 12-byte signature, LOCAL or PROXY, stream over IPv4 or
 * IPv6, or an address to ignore, TLVs checked to tile the rest and bounded
 * in length). */
#ifndef LX_PROXYP_H
#define LX_PROXYP_H

#include <stddef.h>
#include <stdint.h>

/* Version 1's longest line, CRLF included. */
#define LX_PP_V1_MAX 107
/* Version 2: the fixed part, the longest address block (AF_UNIX's), and
 * the most bytes of TLVs taken after it. */
#define LX_PP_V2_HEAD 16
#define LX_PP_V2_ADDR_MAX 216
#define LX_PP_V2_TLV_MAX 1024
/* The longest header of either version: reading this many bytes is
 * enough to tell any header whole or malformed. */
#define LX_PP_MAX (LX_PP_V2_HEAD + LX_PP_V2_ADDR_MAX + LX_PP_V2_TLV_MAX)

/* What a header says of the client. */
typedef struct {
    uint8_t has_addr; /* 1: the source below; 0: keep the socket's own
                         (v1 UNKNOWN, v2 LOCAL, v2 UNSPEC or UNIX) */
    uint8_t family;   /* AF_INET or AF_INET6 */
    uint8_t addr[16]; /* 4 or 16 bytes */
    uint16_t port;
} lx_pp_t;

/* Outcomes of lx_pp_parse besides a header's length. */
enum { LX_PP_MORE = 0, LX_PP_BAD = -1 };

/* Read a header from p[0..n). Its length (> 0, at most LX_PP_MAX) with
 * *out filled, LX_PP_MORE when the bytes so far may still begin one, or
 * LX_PP_BAD when they cannot (*out is then zeroed). */
int lx_pp_parse(const uint8_t *p, size_t n, lx_pp_t *out);

#endif
