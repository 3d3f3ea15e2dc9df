/* TLS connections in the hub (tlsconn.c): the server's TLS options, each
 * connection's handshake, plain HTTP sent to a TLS port, failures logged
 * at a bounded rate. conn.c drives it; the bytes themselves go through
 * xport.h, the environ's SSL_* keys are environ.c's. */
#ifndef LX_TLSCONN_H
#define LX_TLSCONN_H

#include "engine.h"

/* The "tls" option: None, a dict of lx_tls_opts_t's fields (certfile,
 * keyfile, password, ca_certs, cert_reqs, ciphers, min_version) and
 * handshake_timeout, or {"ssl_context": an ssl.SSLContext}. 0, or -1 with
 * ValueError("lichen: tls: reason"). */
int lx_tlsconn_configure(lx_server_t *srv, PyObject *opts);
/* Server.reload_tls(options): the certificate and key anew. */
PyObject *lx_tlsconn_reload(lx_server_t *srv, PyObject *opts);
/* Connections with TLS alive (a debug counter). */
long lx_tlsconn_live(void);

/* What became of a handshake that went on (lx_tlsconn_handshake). */
enum {
    LX_HS_DONE,   /* done: requests come next */
    LX_HS_WAIT,   /* the loop watches for what it needs */
    LX_HS_PLAIN,  /* plain HTTP came: answer LX_STATUS_PLAIN_ON_TLS */
    LX_HS_FAILED, /* failed (logged at a bounded rate): close */
    LX_HS_GONE,   /* the client left before a byte: close */
};
/* Go on with a connection's handshake (LX_CS_HANDSHAKE): first the first
 * byte, which tells TLS from plain HTTP, then OpenSSL's. */
int lx_tlsconn_handshake(lx_conn_t *c);
/* Its TLS ends (before its fd closes). */
void lx_tlsconn_end(lx_conn_t *c);

#endif
