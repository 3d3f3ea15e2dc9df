/* TLS over a connection's socket, with OpenSSL: the server's context
 * (certificate, key, client verification, safe defaults) and, per
 * connection, the handshake, reads and writes, all non-blocking. Pure C:
 * no Python, no loop; the caller waits for what a call says it needs.
 *
 * Defaults are Mozilla's "intermediate" profile: TLS 1.2 and 1.3; for 1.2
 * only ECDHE with AES-GCM or ChaCha20-Poly1305; no renegotiation; session
 * resumption by tickets and a server-side cache; ALPN answers http/1.1
 * when the client offers it. */
#ifndef LX_TLS_H
#define LX_TLS_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/uio.h>

#include "lx.h"

/* A call that must wait for the socket to be writable (LX_AGAIN waits for
 * it to be readable). */
#define LX_TLS_WANT_WRITE (-3)

/* Client certificates (gunicorn's cert_reqs: 0, 1, 2). */
enum { LX_TLS_CERT_NONE = 0, LX_TLS_CERT_OPTIONAL, LX_TLS_CERT_REQUIRED };

typedef struct {
    const char *certfile; /* PEM: the certificate, then its chain */
    const char *keyfile;  /* PEM; NULL: in certfile */
    const char *password; /* of an encrypted key, or NULL */
    const char *ca_certs; /* PEM: the CAs client certificates must chain
                             to, or NULL */
    int cert_reqs;        /* LX_TLS_CERT_* */
    const char *ciphers;  /* OpenSSL's list for TLS 1.2, NULL: ours */
    int min_version;      /* 12 or 13 */
} lx_tls_opts_t;

typedef struct lx_tls_ctx lx_tls_ctx_t;
typedef struct lx_tls lx_tls_t;

/* A server context from o: NULL with a one-line reason in err (a missing
 * file, a wrong password, a key that does not match the certificate, an
 * unknown cipher list). */
lx_tls_ctx_t *lx_tls_ctx_new(const lx_tls_opts_t *o, char *err, size_t cap);
/* A context around a caller's OpenSSL SSL_CTX (a reference is taken):
 * used as it is configured. NULL when out of memory. */
lx_tls_ctx_t *lx_tls_ctx_adopt(void *ssl_ctx);
void lx_tls_ctx_free(lx_tls_ctx_t *x);
/* Load o's certificate and key anew (a reload): LX_OK, or LX_ERR with the
 * reason in err and the context as it was (an adopted context cannot be
 * reloaded). Connections already made keep what they have. */
int lx_tls_ctx_reload(lx_tls_ctx_t *x, const lx_tls_opts_t *o, char *err,
                      size_t cap);

/* The OpenSSL release linked (OpenSSL_version_num()). */
unsigned long lx_tls_library_version(void);

/* Whether the first bytes a client sent begin a TLS handshake (a record
 * of type 22): 1; 0 when they cannot (plain HTTP on a TLS port, say);
 * LX_AGAIN when none were given. */
int lx_tls_hello(const uint8_t *buf, size_t n);

/* TLS on the connected, non-blocking socket fd; NULL when out of memory.
 * OpenSSL writes with write(): SIGPIPE must be ignored
 * (lx_sock_ignore_sigpipe). */
lx_tls_t *lx_tls_new(lx_tls_ctx_t *x, int fd);
void lx_tls_free(lx_tls_t *t);
/* Go on with the handshake: LX_OK once done, LX_AGAIN (wait readable),
 * LX_TLS_WANT_WRITE, or LX_ERR (the reason in lx_tls_error). */
int lx_tls_handshake(lx_tls_t *t);
/* Decrypted bytes (> 0), 0 once the client closed (close_notify or the
 * end of the stream), LX_AGAIN, LX_TLS_WANT_WRITE, or LX_ERR. */
ssize_t lx_tls_recv(lx_tls_t *t, void *buf, size_t n);
/* After a read: whether it left nothing behind, neither in the socket
 * (its last read was short) nor in OpenSSL's buffers; an edge-triggered
 * loop says when more comes. */
int lx_tls_drained(const lx_tls_t *t);
/* Bytes decrypted and not yet read: an edge-triggered loop would not say
 * they are there. */
size_t lx_tls_pending(const lx_tls_t *t);
/* Bytes of iov written (> 0), LX_AGAIN (wait writable), LX_TLS_WANT_WRITE
 * is not used here, or LX_ERR. After LX_AGAIN, call again with the same
 * bytes first (OpenSSL holds the record it began). Small iovecs are
 * gathered into one record. */
ssize_t lx_tls_writev(lx_tls_t *t, const struct iovec *iov, int iovcnt);
/* Send close_notify, without waiting. */
void lx_tls_close(lx_tls_t *t);

/* What the handshake gave: "TLSv1.3", the cipher's OpenSSL name, the ALPN
 * protocol chosen ("" when none), a reused session. */
const char *lx_tls_version(const lx_tls_t *t);
const char *lx_tls_cipher(const lx_tls_t *t);
const char *lx_tls_alpn(const lx_tls_t *t, size_t *len);
int lx_tls_resumed(const lx_tls_t *t);
/* The client's certificate: mod_ssl's SSL_CLIENT_VERIFY ("NONE",
 * "SUCCESS", "FAILED:reason") into out; its subject and issuer as RFC
 * 4514 strings and the certificate in PEM, each into out (NUL-terminated):
 * their lengths, or 0 without a certificate (or room). */
void lx_tls_client_verify(const lx_tls_t *t, char *out, size_t cap);
size_t lx_tls_client_dn(const lx_tls_t *t, int issuer, char *out, size_t cap);
size_t lx_tls_client_pem(const lx_tls_t *t, char *out, size_t cap);
/* The reason of the last LX_ERR, one line. */
const char *lx_tls_error(const lx_tls_t *t);

#endif
