/* TLS over a connection's socket, with OpenSSL: the server's context and
 * each connection's handshake, reads and writes, non-blocking. */
#define _GNU_SOURCE
#include "tls.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

/* Mozilla's "intermediate" TLS 1.2 suites without the DHE ones: ECDHE
 * with AES-GCM or ChaCha20-Poly1305, ECDSA keys first. TLS 1.3's suites
 * are OpenSSL's (all three AEADs). */
#define DEFAULT_CIPHERS                                          \
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:" \
    "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:" \
    "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305"
#define DEFAULT_GROUPS "X25519:P-256:P-384"
/* Writes up to this many bytes are gathered into one record. */
#define GATHER 16384
/* Sessions kept for resumption by id (tickets need none). */
#define SESSION_CACHE 20480

/* Session tickets are sealed with a key made here, replaced every
 * TICKET_ROTATE seconds; tickets sealed with the one before are still
 * taken (and renewed) for as long again. */
#define TICKET_ROTATE 3600

typedef struct {
    unsigned char name[16], aes[32], hmac[32];
    time_t born;
} ticket_key_t;

struct lx_tls_ctx {
    SSL_CTX *ctx;
    int cert_reqs;
    int own;              /* ours, not a context adopted from a caller */
    ticket_key_t keys[2]; /* the current one, the one before */
};

struct lx_tls {
    SSL *ssl;
    int short_read; /* the socket's last read gave less than was asked */
    char error[160];
};

/* ------------------------------------------------------------------ */
/* the context */

/* The reason of OpenSSL's last error (the queue emptied), prefixed. */
static void reason(char *err, size_t cap, const char *what, const char *arg)
{
    unsigned long e = ERR_peek_last_error();
    char buf[256] = "";
    if (e != 0)
        ERR_error_string_n(e, buf, sizeof(buf));
    ERR_clear_error();
    if (err != NULL && cap > 0)
        snprintf(err, cap, "%s%s%s%s%s", what, arg ? " " : "", arg ? arg : "",
                 e ? ": " : "", buf);
}

/* What the password callback is given, and whether it was asked. */
typedef struct {
    const char *password;
    int asked;
} password_t;

static int password_cb(char *buf, int size, int rwflag, void *u)
{
    (void)rwflag;
    password_t *p = u;
    if (p == NULL)
        return 0;
    p->asked = 1;
    const char *pw = p->password;
    if (pw == NULL)
        return 0;
    size_t n = strlen(pw);
    if (n > (size_t)size)
        return 0;
    memcpy(buf, pw, n);
    return (int)n;
}

/* ALPN: http/1.1 when offered, else no protocol (the client may go on
 * without one). */
static int alpn_cb(SSL *ssl, const unsigned char **out, unsigned char *outlen,
                   const unsigned char *in, unsigned int inlen, void *arg)
{
    (void)ssl;
    (void)arg;
    unsigned int i = 0;
    while (i < inlen) {
        unsigned int n = in[i];
        if (i + 1 + n > inlen)
            break;
        if (n == 8 && memcmp(in + i + 1, "http/1.1", 8) == 0) {
            *out = in + i + 1;
            *outlen = (unsigned char)n;
            return SSL_TLSEXT_ERR_OK;
        }
        i += 1 + n;
    }
    return SSL_TLSEXT_ERR_NOACK;
}

/* --cert-reqs optional: a certificate that fails verification is taken,
 * and reported as FAILED (lx_tls_client_verify). */
static int verify_optional(int ok, X509_STORE_CTX *store)
{
    (void)ok;
    (void)store;
    return 1;
}

/* The certificate and key of o into ctx: LX_OK or LX_ERR with err. */
static int load_identity(SSL_CTX *ctx, const lx_tls_opts_t *o, char *err,
                         size_t cap)
{
    if (o->certfile == NULL) {
        snprintf(err, cap, "no certificate file");
        return LX_ERR;
    }
    password_t pw = {o->password, 0};
    SSL_CTX_set_default_passwd_cb(ctx, password_cb);
    SSL_CTX_set_default_passwd_cb_userdata(ctx, &pw);
    if (SSL_CTX_use_certificate_chain_file(ctx, o->certfile) != 1) {
        SSL_CTX_set_default_passwd_cb_userdata(ctx, NULL);
        reason(err, cap, "cannot load the certificate", o->certfile);
        return LX_ERR;
    }
    const char *key = o->keyfile ? o->keyfile : o->certfile;
    if (SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1) {
        int mismatch = ERR_GET_REASON(ERR_peek_last_error()) ==
                       X509_R_KEY_VALUES_MISMATCH;
        SSL_CTX_set_default_passwd_cb_userdata(ctx, NULL);
        if (pw.asked && o->password == NULL) {
            ERR_clear_error();
            snprintf(err, cap,
                     "the private key %s is encrypted: its password is "
                     "needed",
                     key);
        } else if (pw.asked) {
            ERR_clear_error();
            snprintf(err, cap,
                     "cannot decrypt the private key %s: wrong password", key);
        } else if (mismatch) {
            ERR_clear_error();
            snprintf(err, cap,
                     "the private key %s does not match the certificate %s",
                     key, o->certfile);
        } else {
            reason(err, cap, "cannot load the private key", key);
        }
        return LX_ERR;
    }
    /* the password is not needed any more (and o's strings may go) */
    SSL_CTX_set_default_passwd_cb_userdata(ctx, NULL);
    if (SSL_CTX_check_private_key(ctx) != 1) {
        ERR_clear_error();
        snprintf(err, cap,
                 "the private key %s does not match the certificate %s", key,
                 o->certfile);
        return LX_ERR;
    }
    return LX_OK;
}

static int ticket_key_make(ticket_key_t *k)
{
    k->born = time(NULL);
    return RAND_bytes(k->name, sizeof(k->name)) == 1 &&
           RAND_bytes(k->aes, sizeof(k->aes)) == 1 &&
           RAND_bytes(k->hmac, sizeof(k->hmac)) == 1;
}

static int ticket_mac(EVP_MAC_CTX *hctx, ticket_key_t *k)
{
    OSSL_PARAM params[] = {
        OSSL_PARAM_construct_octet_string(OSSL_MAC_PARAM_KEY, k->hmac,
                                          sizeof(k->hmac)),
        OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, "SHA256", 0),
        OSSL_PARAM_construct_end()};
    return EVP_MAC_CTX_set_params(hctx, params) == 1;
}

/* Seal a new ticket (enc) with the current key, rotated when due; open
 * one with whichever key sealed it: 1, 2 (renew it: an old key), 0 (not
 * ours: a full handshake), -1 (an error). */
static int ticket_cb(SSL *ssl, unsigned char name[16], unsigned char *iv,
                     EVP_CIPHER_CTX *cctx, EVP_MAC_CTX *hctx, int enc)
{
    lx_tls_ctx_t *x = SSL_CTX_get_app_data(SSL_get_SSL_CTX(ssl));
    if (x == NULL)
        return -1;
    if (enc) {
        if (time(NULL) - x->keys[0].born >= TICKET_ROTATE) {
            ticket_key_t fresh;
            if (!ticket_key_make(&fresh))
                return -1;
            x->keys[1] = x->keys[0];
            x->keys[0] = fresh;
        }
        ticket_key_t *k = &x->keys[0];
        if (RAND_bytes(iv, 16) != 1 ||
            EVP_EncryptInit_ex(cctx, EVP_aes_256_cbc(), NULL, k->aes, iv) !=
                1 ||
            !ticket_mac(hctx, k))
            return -1;
        memcpy(name, k->name, 16);
        return 1;
    }
    int i;
    for (i = 0; i < 2; i++) {
        ticket_key_t *k = &x->keys[i];
        if (k->born == 0 || memcmp(name, k->name, 16) != 0)
            continue;
        if (time(NULL) - k->born >= 2 * TICKET_ROTATE)
            return 0;
        if (!ticket_mac(hctx, k) ||
            EVP_DecryptInit_ex(cctx, EVP_aes_256_cbc(), NULL, k->aes, iv) != 1)
            return -1;
        /* A TLS 1.3 client uses a ticket once (RFC 8446 C.4): renewing
         * it gives the resumed connection a ticket for the next one. */
        return i == 0 && SSL_version(ssl) != TLS1_3_VERSION ? 1 : 2;
    }
    return 0;
}

static SSL_CTX *ctx_new(const lx_tls_opts_t *o, char *err, size_t cap)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    if (ctx == NULL) {
        reason(err, cap, "cannot make a TLS context", NULL);
        return NULL;
    }
    int min = o->min_version == 13 ? TLS1_3_VERSION : TLS1_2_VERSION;
    if (o->min_version != 12 && o->min_version != 13 && o->min_version != 0) {
        snprintf(err, cap, "the minimum TLS version is 1.2 or 1.3");
        goto fail;
    }
    SSL_CTX_set_min_proto_version(ctx, min);
    /* no renegotiation at all (OpenSSL 3 refuses the client's by default;
     * this refuses it on any version) */
    SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION);
    SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE |
                              SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER |
                              SSL_MODE_RELEASE_BUFFERS);
    /* Mozilla's intermediate groups: no finite-field groups, nothing
     * slower than P-384 */
    if (SSL_CTX_set1_groups_list(ctx, DEFAULT_GROUPS) != 1) {
        reason(err, cap, "cannot set the key exchange groups", NULL);
        goto fail;
    }
    if (SSL_CTX_set_cipher_list(ctx, o->ciphers ? o->ciphers
                                                : DEFAULT_CIPHERS) != 1) {
        reason(err, cap, "no usable cipher in", o->ciphers);
        goto fail;
    }
    static const unsigned char sid[] = "lichen";
    SSL_CTX_set_session_id_context(ctx, sid, sizeof(sid) - 1);
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_SERVER);
    SSL_CTX_sess_set_cache_size(ctx, SESSION_CACHE);
    SSL_CTX_set_alpn_select_cb(ctx, alpn_cb, NULL);
    if (load_identity(ctx, o, err, cap) < 0)
        goto fail;
    if (o->cert_reqs != LX_TLS_CERT_NONE) {
        if (o->ca_certs == NULL) {
            snprintf(err, cap, "client certificates need --ca-certs");
            goto fail;
        }
        if (SSL_CTX_load_verify_locations(ctx, o->ca_certs, NULL) != 1) {
            reason(err, cap, "cannot load the CA certificates", o->ca_certs);
            goto fail;
        }
        STACK_OF(X509_NAME) *names = SSL_load_client_CA_file(o->ca_certs);
        if (names != NULL)
            SSL_CTX_set_client_CA_list(ctx, names);
        if (o->cert_reqs == LX_TLS_CERT_REQUIRED)
            SSL_CTX_set_verify(
                ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
        else
            SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, verify_optional);
    } else if (o->ca_certs != NULL &&
               SSL_CTX_load_verify_locations(ctx, o->ca_certs, NULL) != 1) {
        reason(err, cap, "cannot load the CA certificates", o->ca_certs);
        goto fail;
    }
    return ctx;
fail:
    SSL_CTX_free(ctx);
    return NULL;
}

lx_tls_ctx_t *lx_tls_ctx_new(const lx_tls_opts_t *o, char *err, size_t cap)
{
    lx_tls_ctx_t *x = calloc(1, sizeof(*x));
    if (x == NULL) {
        snprintf(err, cap, "out of memory");
        return NULL;
    }
    x->ctx = ctx_new(o, err, cap);
    if (x->ctx == NULL) {
        free(x);
        return NULL;
    }
    x->cert_reqs = o->cert_reqs;
    x->own = 1;
    if (!ticket_key_make(&x->keys[0])) {
        reason(err, cap, "cannot make a session ticket key", NULL);
        lx_tls_ctx_free(x);
        return NULL;
    }
    SSL_CTX_set_app_data(x->ctx, x);
    SSL_CTX_set_tlsext_ticket_key_evp_cb(x->ctx, ticket_cb);
    return x;
}

lx_tls_ctx_t *lx_tls_ctx_adopt(void *ssl_ctx)
{
    lx_tls_ctx_t *x = calloc(1, sizeof(*x));
    if (x == NULL)
        return NULL;
    x->ctx = ssl_ctx;
    SSL_CTX_up_ref(x->ctx);
    return x;
}

void lx_tls_ctx_free(lx_tls_ctx_t *x)
{
    if (x == NULL)
        return;
    SSL_CTX_free(x->ctx);
    free(x);
}

int lx_tls_ctx_reload(lx_tls_ctx_t *x, const lx_tls_opts_t *o, char *err,
                      size_t cap)
{
    if (!x->own) {
        snprintf(err, cap,
                 "the certificate is the given SSL context's: load "
                 "it anew there");
        return LX_ERR;
    }
    /* A fresh context checks the new files whole; only then does the
     * live one take them (a connection keeps the context it began with). */
    SSL_CTX *fresh = ctx_new(o, err, cap);
    if (fresh == NULL)
        return LX_ERR;
    SSL_CTX_free(fresh);
    if (load_identity(x->ctx, o, err, cap) < 0)
        return LX_ERR;
    return LX_OK;
}

unsigned long lx_tls_library_version(void)
{
    return OpenSSL_version_num();
}

int lx_tls_hello(const uint8_t *buf, size_t n)
{
    if (n == 0)
        return LX_AGAIN;
    return buf[0] == 0x16; /* handshake record */
}

/* ------------------------------------------------------------------ */
/* a connection */

/* Notes whether the socket's last read was short: OpenSSL reads ahead
 * as much as its buffer takes, so a short read drained the socket. */
static long read_watch(BIO *b, int oper, const char *argp, size_t len,
                       int argi, long argl, int ret, size_t *processed)
{
    (void)argp;
    (void)argi;
    (void)argl;
    if (oper == (BIO_CB_READ | BIO_CB_RETURN)) {
        lx_tls_t *t = (lx_tls_t *)BIO_get_callback_arg(b);
        t->short_read = ret <= 0 || processed == NULL || *processed < len;
    }
    return ret;
}

lx_tls_t *lx_tls_new(lx_tls_ctx_t *x, int fd)
{
    lx_tls_t *t = calloc(1, sizeof(*t));
    if (t == NULL)
        return NULL;
    t->ssl = SSL_new(x->ctx);
    if (t->ssl != NULL) {
        SSL_set_accept_state(t->ssl);
        /* What the callers rely on, whatever the context (an adopted one
         * too): partial writes retried from a buffer that may move, no
         * renegotiation, buffers given back while idle; and whole
         * records read ahead, a syscall each. */
        SSL_set_mode(t->ssl, SSL_MODE_ENABLE_PARTIAL_WRITE |
                                 SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER |
                                 SSL_MODE_RELEASE_BUFFERS);
        SSL_set_options(t->ssl, SSL_OP_NO_RENEGOTIATION);
        SSL_set_read_ahead(t->ssl, 1);
    }
    if (t->ssl == NULL || SSL_set_fd(t->ssl, fd) != 1) {
        SSL_free(t->ssl);
        free(t);
        ERR_clear_error();
        return NULL;
    }
    BIO *rbio = SSL_get_rbio(t->ssl);
    BIO_set_callback_ex(rbio, read_watch);
    BIO_set_callback_arg(rbio, (char *)t);
    return t;
}

void lx_tls_free(lx_tls_t *t)
{
    if (t == NULL)
        return;
    /* OpenSSL drops the session of a connection freed without a close
     * from its cache: a client that simply went away may still resume
     * (nginx does the same); one that failed may not. */
    if (t->error[0] == 0)
        SSL_set_shutdown(t->ssl, SSL_SENT_SHUTDOWN | SSL_RECEIVED_SHUTDOWN);
    SSL_free(t->ssl);
    free(t);
}

/* The outcome of a call that returned rc <= 0, as our codes. */
static int outcome(lx_tls_t *t, int rc, const char *what)
{
    int e = SSL_get_error(t->ssl, rc);
    switch (e) {
    case SSL_ERROR_WANT_READ:
        return LX_AGAIN;
    case SSL_ERROR_WANT_WRITE:
        return LX_TLS_WANT_WRITE;
    case SSL_ERROR_ZERO_RETURN:
        return 0;
    case SSL_ERROR_SYSCALL:
        if (ERR_peek_error() == 0) {
            snprintf(t->error, sizeof(t->error), "%s: %s", what,
                     errno ? strerror(errno) : "the client closed");
            ERR_clear_error();
            return LX_ERR;
        }
        /* fall through */
    default:
        reason(t->error, sizeof(t->error), what, NULL);
        return LX_ERR;
    }
}

int lx_tls_handshake(lx_tls_t *t)
{
    ERR_clear_error();
    int rc = SSL_do_handshake(t->ssl);
    if (rc == 1)
        return LX_OK;
    rc = outcome(t, rc, "TLS handshake");
    return rc == 0 ? LX_ERR : rc;
}

ssize_t lx_tls_recv(lx_tls_t *t, void *buf, size_t n)
{
    size_t got = 0;
    ERR_clear_error();
    if (SSL_read_ex(t->ssl, buf, n, &got) == 1)
        return (ssize_t)got;
    int rc = outcome(t, 0, "TLS read");
    if (rc == LX_ERR && SSL_get_error(t->ssl, 0) == SSL_ERROR_SYSCALL &&
        errno == 0)
        return 0; /* the stream ended without close_notify */
    return rc;
}

int lx_tls_drained(const lx_tls_t *t)
{
    return t->short_read && !SSL_has_pending(t->ssl);
}

size_t lx_tls_pending(const lx_tls_t *t)
{
    return (size_t)SSL_pending(t->ssl);
}

ssize_t lx_tls_writev(lx_tls_t *t, const struct iovec *iov, int iovcnt)
{
    size_t total = 0;
    int i;
    for (i = 0; i < iovcnt; i++)
        total += iov[i].iov_len;
    if (total == 0)
        return 0;
    const void *data = NULL;
    size_t len = 0;
    char gather[GATHER];
    if (iovcnt > 1 && total <= GATHER) {
        /* one record for the head and a small body */
        for (i = 0; i < iovcnt; i++) {
            memcpy(gather + len, iov[i].iov_base, iov[i].iov_len);
            len += iov[i].iov_len;
        }
        data = gather;
    } else {
        for (i = 0; i < iovcnt && iov[i].iov_len == 0; i++)
            ;
        data = iov[i].iov_base;
        len = iov[i].iov_len;
    }
    size_t done = 0;
    ERR_clear_error();
    if (SSL_write_ex(t->ssl, data, len, &done) == 1)
        return (ssize_t)done;
    int rc = outcome(t, 0, "TLS write");
    if (rc == LX_TLS_WANT_WRITE)
        return LX_AGAIN;
    if (rc == 0 || rc == LX_AGAIN) {
        snprintf(t->error, sizeof(t->error), "TLS write: the client closed");
        return LX_ERR;
    }
    return rc;
}

void lx_tls_close(lx_tls_t *t)
{
    ERR_clear_error();
    if (SSL_is_init_finished(t->ssl))
        (void)SSL_shutdown(t->ssl);
    ERR_clear_error();
}

const char *lx_tls_version(const lx_tls_t *t)
{
    return SSL_get_version(t->ssl);
}

const char *lx_tls_cipher(const lx_tls_t *t)
{
    return SSL_get_cipher_name(t->ssl);
}

const char *lx_tls_alpn(const lx_tls_t *t, size_t *len)
{
    const unsigned char *p = NULL;
    unsigned int n = 0;
    SSL_get0_alpn_selected(t->ssl, &p, &n);
    *len = n;
    return p != NULL ? (const char *)p : "";
}

int lx_tls_resumed(const lx_tls_t *t)
{
    return SSL_session_reused(t->ssl);
}

void lx_tls_client_verify(const lx_tls_t *t, char *out, size_t cap)
{
    X509 *cert = SSL_get0_peer_certificate(t->ssl);
    if (cert == NULL) {
        snprintf(out, cap, "NONE");
        return;
    }
    long v = SSL_get_verify_result(t->ssl);
    if (v == X509_V_OK)
        snprintf(out, cap, "SUCCESS");
    else
        snprintf(out, cap, "FAILED:%s", X509_verify_cert_error_string(v));
}

/* What a memory BIO holds, NUL-terminated into out: its length, 0 when
 * it does not fit. */
static size_t bio_out(BIO *b, char *out, size_t cap)
{
    char *p;
    long n = BIO_get_mem_data(b, &p);
    size_t len = n > 0 ? (size_t)n : 0;
    if (len + 1 > cap)
        len = 0;
    else
        memcpy(out, p, len);
    if (cap > 0)
        out[len] = 0;
    BIO_free(b);
    return len;
}

/* The client's certificate and a memory BIO to write it to, or NULL
 * (none, or no memory: out then empty). */
static BIO *cert_bio(const lx_tls_t *t, X509 **cert, char *out, size_t cap)
{
    *cert = SSL_get0_peer_certificate(t->ssl);
    BIO *b = *cert ? BIO_new(BIO_s_mem()) : NULL;
    if (b == NULL && cap > 0)
        out[0] = 0;
    return b;
}

size_t lx_tls_client_dn(const lx_tls_t *t, int issuer, char *out, size_t cap)
{
    X509 *cert;
    BIO *b = cert_bio(t, &cert, out, cap);
    if (b == NULL)
        return 0;
    X509_NAME *name =
        issuer ? X509_get_issuer_name(cert) : X509_get_subject_name(cert);
    X509_NAME_print_ex(b, name, 0, XN_FLAG_RFC2253);
    return bio_out(b, out, cap);
}

size_t lx_tls_client_pem(const lx_tls_t *t, char *out, size_t cap)
{
    X509 *cert;
    BIO *b = cert_bio(t, &cert, out, cap);
    if (b == NULL)
        return 0;
    PEM_write_bio_X509(b, cert);
    return bio_out(b, out, cap);
}

const char *lx_tls_error(const lx_tls_t *t)
{
    return t->error;
}
