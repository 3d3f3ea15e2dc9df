/* Unit tests of the TLS transport (tls.c): certificates made here with
 * OpenSSL, a client of OpenSSL's over a socketpair, both sides
 * non-blocking and driven in turn. */
#include "../../csrc/tls.c"

#include <fcntl.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/x509v3.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include "check.h"

static char dir[64];

/* ------------------------------------------------------------------ */
/* certificates */

static EVP_PKEY *key_new(void)
{
    return EVP_EC_gen("P-256");
}

/* A certificate for cn with key, signed by ca_key as ca (self-signed when
 * ca is NULL). */
static X509 *cert_new(const char *cn, EVP_PKEY *key, X509 *ca,
                      EVP_PKEY *ca_key)
{
    static long serial = 1;
    X509 *c = X509_new();
    X509_set_version(c, 2);
    ASN1_INTEGER_set(X509_get_serialNumber(c), serial++);
    X509_gmtime_adj(X509_getm_notBefore(c), -3600);
    X509_gmtime_adj(X509_getm_notAfter(c), 86400);
    X509_set_pubkey(c, key);
    X509_NAME *n = X509_get_subject_name(c);
    X509_NAME_add_entry_by_txt(n, "O", MBSTRING_ASC,
                               (const unsigned char *)"Test", -1, -1, 0);
    X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_ASC,
                               (const unsigned char *)cn, -1, -1, 0);
    X509_set_issuer_name(c, ca ? X509_get_subject_name(ca) : n);
    X509V3_CTX v3;
    X509V3_set_ctx(&v3, ca ? ca : c, c, NULL, NULL, 0);
    X509_EXTENSION *ext = X509V3_EXT_conf_nid(NULL, &v3, NID_basic_constraints,
                                              ca ? "CA:FALSE" : "CA:TRUE");
    X509_add_ext(c, ext, -1);
    X509_EXTENSION_free(ext);
    X509_sign(c, ca_key ? ca_key : key, EVP_sha256());
    return c;
}

static void write_pem(const char *name, X509 *cert, EVP_PKEY *key,
                      const char *password)
{
    char path[128];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    if (cert != NULL)
        PEM_write_X509(f, cert);
    if (key != NULL)
        PEM_write_PrivateKey(f, key, password ? EVP_aes_128_cbc() : NULL, NULL,
                             0, NULL, (void *)password);
    fclose(f);
}

static const char *path_of(const char *name)
{
    static char paths[32][128];
    static int k;
    char *p = paths[k++ % 32];
    snprintf(p, 128, "%s/%s", dir, name);
    return p;
}

static EVP_PKEY *ca_key, *client_key;
static X509 *ca, *client_cert;

static void make_files(void)
{
    strcpy(dir, "/tmp/lx_tls_XXXXXX");
    if (mkdtemp(dir) == NULL)
        abort();
    ca_key = key_new();
    ca = cert_new("Test CA", ca_key, NULL, NULL);
    EVP_PKEY *sk = key_new(), *sk2 = key_new(), *other = key_new();
    X509 *server = cert_new("server", sk, ca, ca_key);
    X509 *server2 = cert_new("server two", sk2, ca, ca_key);
    client_key = key_new();
    client_cert = cert_new("client", client_key, ca, ca_key);
    EVP_PKEY *stray_key = key_new();
    X509 *stray = cert_new("stray", stray_key, NULL, NULL);
    write_pem("ca.pem", ca, NULL, NULL);
    write_pem("server.pem", server, NULL, NULL);
    write_pem("server.key", NULL, sk, NULL);
    write_pem("server2.pem", server2, sk2, NULL);
    write_pem("both.pem", server, sk, NULL);
    write_pem("locked.key", NULL, sk, "sesame");
    write_pem("other.key", NULL, other, NULL);
    write_pem("stray.pem", stray, stray_key, NULL);
    write_pem("client.pem", client_cert, client_key, NULL);
    X509_free(server);
    X509_free(server2);
    X509_free(stray);
    EVP_PKEY_free(sk);
    EVP_PKEY_free(sk2);
    EVP_PKEY_free(other);
    EVP_PKEY_free(stray_key);
}

/* ------------------------------------------------------------------ */
/* a client of OpenSSL's against an lx_tls server */

typedef struct {
    int fds[2];
    lx_tls_t *srv;
    SSL_CTX *cctx;
    SSL *cli;
    int srv_rc, cli_rc;
} pair_t;

static void nonblock(int fd)
{
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
}

/* A client: max_version 0 for any; ciphers NULL for OpenSSL's; alpn in
 * wire format or NULL; cert (PEM with key) or NULL. */
static SSL_CTX *client_ctx(int max_version, const char *ciphers,
                           const char *cert)
{
    SSL_CTX *c = SSL_CTX_new(TLS_client_method());
    if (max_version)
        SSL_CTX_set_max_proto_version(c, max_version);
    if (ciphers)
        SSL_CTX_set_cipher_list(c, ciphers);
    if (cert) {
        SSL_CTX_use_certificate_file(c, cert, SSL_FILETYPE_PEM);
        SSL_CTX_use_PrivateKey_file(c, cert, SSL_FILETYPE_PEM);
    }
    SSL_CTX_set_session_cache_mode(c, SSL_SESS_CACHE_CLIENT);
    return c;
}

static void pair_open(pair_t *p, lx_tls_ctx_t *x, SSL_CTX *cctx,
                      const char *alpn, SSL_SESSION *sess)
{
    memset(p, 0, sizeof(*p));
    socketpair(AF_UNIX, SOCK_STREAM, 0, p->fds);
    nonblock(p->fds[0]);
    nonblock(p->fds[1]);
    p->srv = lx_tls_new(x, p->fds[0]);
    p->cctx = cctx;
    p->cli = SSL_new(cctx);
    SSL_set_fd(p->cli, p->fds[1]);
    SSL_set_connect_state(p->cli);
    if (alpn)
        SSL_set_alpn_protos(p->cli, (const unsigned char *)alpn,
                            (unsigned)strlen(alpn));
    if (sess)
        SSL_set_session(p->cli, sess);
}

/* Both sides' handshakes in turn: 1 when both finished, 0 when one
 * failed. */
static int pair_handshake(pair_t *p)
{
    int s = LX_AGAIN, c = -1;
    for (int i = 0; i < 100; i++) {
        if (s != LX_OK) {
            s = lx_tls_handshake(p->srv);
            if (s == LX_ERR)
                break;
        }
        if (c != 1) {
            c = SSL_do_handshake(p->cli);
            if (c <= 0) {
                int e = SSL_get_error(p->cli, c);
                if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE)
                    break;
            }
        }
        if (s == LX_OK && c == 1)
            return 1;
    }
    /* let the side that finished read the other's alert */
    if (s == LX_OK) {
        char b[16];
        (void)lx_tls_recv(p->srv, b, sizeof(b));
    }
    return 0;
}

static void pair_close(pair_t *p)
{
    lx_tls_free(p->srv);
    /* as if closed properly: OpenSSL would make the session unresumable */
    SSL_set_shutdown(p->cli, SSL_SENT_SHUTDOWN | SSL_RECEIVED_SHUTDOWN);
    SSL_free(p->cli);
    SSL_CTX_free(p->cctx);
    close(p->fds[0]);
    close(p->fds[1]);
}

/* Read what the client has: its length. */
static int cli_read(pair_t *p, char *buf, int cap)
{
    int got = 0;
    for (int i = 0; i < 50 && got < cap; i++) {
        int n = SSL_read(p->cli, buf + got, cap - got);
        if (n > 0)
            got += n;
        else if (got > 0)
            break;
    }
    return got;
}

static lx_tls_ctx_t *server_ctx(int cert_reqs, int min_version)
{
    char err[256];
    lx_tls_opts_t o = {.certfile = path_of("server.pem"),
                       .keyfile = path_of("server.key"),
                       .ca_certs = cert_reqs ? path_of("ca.pem") : NULL,
                       .cert_reqs = cert_reqs,
                       .min_version = min_version};
    lx_tls_ctx_t *x = lx_tls_ctx_new(&o, err, sizeof(err));
    CHECK(x != NULL, "server context: %s", err);
    return x;
}

/* ------------------------------------------------------------------ */

static void test_bad_options(void)
{
    char err[256];
    struct {
        lx_tls_opts_t o;
        const char *want;
    } cases[] = {
        {{.certfile = path_of("missing.pem")}, "cannot load the certificate"},
        {{.certfile = path_of("server.pem"), .keyfile = path_of("other.key")},
         "does not match"},
        {{.certfile = path_of("server.pem"),
          .keyfile = path_of("locked.key"),
          .password = "wrong"},
         "wrong password"},
        {{.certfile = path_of("server.pem"), .keyfile = path_of("locked.key")},
         "its password is needed"},
        {{.certfile = path_of("both.pem"), .ciphers = "NOPE"},
         "no usable cipher"},
        {{.certfile = path_of("both.pem"), .cert_reqs = LX_TLS_CERT_REQUIRED},
         "need --ca-certs"},
        {{.certfile = path_of("both.pem"), .min_version = 11}, "1.2 or 1.3"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        err[0] = 0;
        lx_tls_ctx_t *x = lx_tls_ctx_new(&cases[i].o, err, sizeof(err));
        CHECK(x == NULL && strstr(err, cases[i].want) != NULL, "case %zu: %s",
              i, err);
        lx_tls_ctx_free(x);
    }
    lx_tls_opts_t ok = {.certfile = path_of("server.pem"),
                        .keyfile = path_of("locked.key"),
                        .password = "sesame"};
    lx_tls_ctx_t *x = lx_tls_ctx_new(&ok, err, sizeof(err));
    CHECK(x != NULL, "the right password: %s", err);
    lx_tls_ctx_free(x);
}

static void test_hello(void)
{
    CHECK(lx_tls_hello((const uint8_t *)"\x16\x03\x01", 3) == 1, "TLS");
    CHECK(lx_tls_hello((const uint8_t *)"GET / HTTP/1.1", 14) == 0, "HTTP");
    CHECK(lx_tls_hello((const uint8_t *)"", 0) == LX_AGAIN, "nothing yet");
}

static void test_echo_alpn_pending(void)
{
    lx_tls_ctx_t *x = server_ctx(0, 12);
    pair_t p;
    pair_open(&p, x, client_ctx(0, NULL, NULL), "\x02h2\x08http/1.1", NULL);
    CHECK(pair_handshake(&p), "handshake: %s", lx_tls_error(p.srv));
    CHECK(strcmp(lx_tls_version(p.srv), "TLSv1.3") == 0, "version %s",
          lx_tls_version(p.srv));
    size_t n;
    const char *alpn = lx_tls_alpn(p.srv, &n);
    CHECK(n == 8 && memcmp(alpn, "http/1.1", 8) == 0, "ALPN http/1.1");
    CHECK(!lx_tls_resumed(p.srv), "a full handshake");
    char buf[256];
    CHECK(lx_tls_recv(p.srv, buf, sizeof(buf)) == LX_AGAIN, "nothing yet");
    SSL_write(p.cli, "0123456789", 10);
    CHECK(lx_tls_recv(p.srv, buf, 4) == 4 && memcmp(buf, "0123", 4) == 0,
          "a part of a record");
    CHECK(lx_tls_pending(&*p.srv) == 6, "the rest pending: %zu",
          lx_tls_pending(p.srv));
    CHECK(lx_tls_recv(p.srv, buf, sizeof(buf)) == 6, "the rest");
    struct iovec iov[2] = {{"HTTP/1.1 200 OK\r\n\r\n", 19}, {"body", 4}};
    CHECK(lx_tls_writev(p.srv, iov, 2) == 23, "gathered");
    int got = cli_read(&p, buf, sizeof(buf));
    CHECK(got == 23 && memcmp(buf + 19, "body", 4) == 0, "client got %d", got);
    /* a write larger than a record goes out a record at a time */
    char *big = malloc(100000);
    memset(big, 'x', 100000);
    struct iovec one = {big, 100000};
    ssize_t w = lx_tls_writev(p.srv, &one, 1);
    CHECK(w > 0 && w <= 100000, "a large write: %zd", w);
    free(big);
    SSL_shutdown(p.cli);
    (void)SSL_read(p.cli, buf, sizeof(buf)); /* drain */
    ssize_t r;
    int k = 0;
    while ((r = lx_tls_recv(p.srv, buf, sizeof(buf))) > 0 && k++ < 100)
        ;
    CHECK(r == 0, "close_notify is the end: %zd", r);
    lx_tls_close(p.srv);
    pair_close(&p);

    pair_open(&p, x, client_ctx(0, NULL, NULL), "\x02h2", NULL);
    CHECK(pair_handshake(&p), "h2 only: a handshake all the same");
    lx_tls_alpn(p.srv, &n);
    CHECK(n == 0, "no ALPN when http/1.1 is not offered");
    pair_close(&p);
    lx_tls_ctx_free(x);
}

static void test_refused(void)
{
    lx_tls_ctx_t *x = server_ctx(0, 12);
    pair_t p;
    pair_open(&p, x, client_ctx(TLS1_1_VERSION, NULL, NULL), NULL, NULL);
    CHECK(!pair_handshake(&p), "TLS 1.1 refused");
    pair_close(&p);
    pair_open(&p, x,
              client_ctx(TLS1_2_VERSION,
                         "ECDHE-RSA-AES128-SHA:"
                         "ECDHE-ECDSA-AES128-SHA",
                         NULL),
              NULL, NULL);
    CHECK(!pair_handshake(&p), "a CBC suite refused");
    pair_close(&p);
    pair_open(&p, x, client_ctx(TLS1_2_VERSION, NULL, NULL), NULL, NULL);
    CHECK(pair_handshake(&p) && strcmp(lx_tls_version(p.srv), "TLSv1.2") == 0,
          "TLS 1.2 taken");
    CHECK(strstr(lx_tls_cipher(p.srv), "GCM") != NULL ||
              strstr(lx_tls_cipher(p.srv), "CHACHA20") != NULL,
          "an AEAD: %s", lx_tls_cipher(p.srv));
    /* the client asks to renegotiate: refused, the connection goes on
     * or ends, but no second handshake completes */
    /* the client asks to renegotiate: the server refuses, and the
     * client's second handshake never completes */
    CHECK(SSL_renegotiate(p.cli) == 1, "the client asks");
    int done = 0;
    char buf[64];
    for (int i = 0; i < 20 && !done; i++) {
        int rc = SSL_do_handshake(p.cli);
        (void)lx_tls_recv(p.srv, buf, sizeof(buf));
        done = rc == 1 && !SSL_renegotiate_pending(p.cli);
        if (rc <= 0 && SSL_get_error(p.cli, rc) == SSL_ERROR_SSL)
            break;
    }
    CHECK(!done, "no renegotiation");
    pair_close(&p);
    lx_tls_ctx_free(x);

    x = server_ctx(0, 13);
    pair_open(&p, x, client_ctx(TLS1_2_VERSION, NULL, NULL), NULL, NULL);
    CHECK(!pair_handshake(&p), "TLS 1.2 refused with a 1.3 minimum");
    pair_close(&p);
    lx_tls_ctx_free(x);
}

static void test_client_certificates(void)
{
    char v[256], dn[256], pem[4096];
    lx_tls_ctx_t *req = server_ctx(LX_TLS_CERT_REQUIRED, 12);
    pair_t p;
    pair_open(&p, req, client_ctx(0, NULL, NULL), NULL, NULL);
    CHECK(!pair_handshake(&p), "required: none sent, refused");
    pair_close(&p);
    pair_open(&p, req, client_ctx(0, NULL, path_of("stray.pem")), NULL, NULL);
    CHECK(!pair_handshake(&p), "required: one of another CA, refused");
    pair_close(&p);
    pair_open(&p, req, client_ctx(0, NULL, path_of("client.pem")), NULL, NULL);
    CHECK(pair_handshake(&p), "required: ours, taken: %s",
          lx_tls_error(p.srv));
    lx_tls_client_verify(p.srv, v, sizeof(v));
    CHECK(strcmp(v, "SUCCESS") == 0, "verify %s", v);
    lx_tls_client_dn(p.srv, 0, dn, sizeof(dn));
    CHECK(strcmp(dn, "CN=client,O=Test") == 0, "subject %s", dn);
    lx_tls_client_dn(p.srv, 1, dn, sizeof(dn));
    CHECK(strcmp(dn, "CN=Test CA,O=Test") == 0, "issuer %s", dn);
    size_t n = lx_tls_client_pem(p.srv, pem, sizeof(pem));
    CHECK(n > 100 && strncmp(pem, "-----BEGIN CERTIFICATE-----", 27) == 0,
          "the PEM");
    CHECK(lx_tls_client_pem(p.srv, pem, 10) == 0 && pem[0] == 0,
          "no room: nothing");
    pair_close(&p);
    lx_tls_ctx_free(req);

    lx_tls_ctx_t *opt = server_ctx(LX_TLS_CERT_OPTIONAL, 12);
    pair_open(&p, opt, client_ctx(0, NULL, NULL), NULL, NULL);
    CHECK(pair_handshake(&p), "optional: none sent, taken");
    lx_tls_client_verify(p.srv, v, sizeof(v));
    CHECK(strcmp(v, "NONE") == 0, "verify %s", v);
    CHECK(lx_tls_client_dn(p.srv, 0, dn, sizeof(dn)) == 0, "no subject");
    pair_close(&p);
    pair_open(&p, opt, client_ctx(0, NULL, path_of("stray.pem")), NULL, NULL);
    CHECK(pair_handshake(&p), "optional: one of another CA, taken");
    lx_tls_client_verify(p.srv, v, sizeof(v));
    CHECK(strncmp(v, "FAILED:", 7) == 0, "verify %s", v);
    pair_close(&p);
    lx_tls_ctx_free(opt);
}

static void test_resumption(void)
{
    lx_tls_ctx_t *x = server_ctx(0, 12);
    for (int version = TLS1_2_VERSION; version <= TLS1_3_VERSION; version++) {
        pair_t p;
        pair_open(&p, x, client_ctx(version, NULL, NULL), NULL, NULL);
        CHECK(pair_handshake(&p), "first");
        /* TLS 1.3's tickets come after the handshake: the client reads */
        char buf[16];
        (void)lx_tls_recv(p.srv, buf, sizeof(buf));
        (void)SSL_read(p.cli, buf, sizeof(buf));
        SSL_SESSION *s = SSL_get1_session(p.cli);
        SSL_CTX *keep = p.cctx;
        SSL_CTX_up_ref(keep);
        pair_close(&p);
        pair_open(&p, x, keep, NULL, s);
        CHECK(pair_handshake(&p) && lx_tls_resumed(p.srv),
              "resumed (version %x)", version);
        SSL_SESSION_free(s);
        pair_close(&p);
    }
    lx_tls_ctx_free(x);
}

/* A TLS 1.2 session of a fresh client, by ticket: the client's session,
 * and whether the handshake resumed the one given. */
static SSL_SESSION *ticket_round(lx_tls_ctx_t *x, SSL_CTX *cctx,
                                 SSL_SESSION *in, int *resumed)
{
    pair_t p;
    SSL_CTX_up_ref(cctx); /* pair_close frees it */
    pair_open(&p, x, cctx, NULL, in);
    CHECK(pair_handshake(&p), "ticket handshake");
    *resumed = lx_tls_resumed(p.srv);
    SSL_SESSION *s = SSL_get1_session(p.cli);
    pair_close(&p);
    return s;
}

static void test_ticket_rotation(void)
{
    lx_tls_ctx_t *x = server_ctx(0, 12);
    /* no session cache: only a ticket can resume */
    SSL_CTX_set_session_cache_mode(x->ctx, SSL_SESS_CACHE_OFF);
    SSL_CTX *cctx = client_ctx(TLS1_2_VERSION, NULL, NULL);
    int resumed;
    SSL_SESSION *s = ticket_round(x, cctx, NULL, &resumed);
    CHECK(!resumed && SSL_SESSION_has_ticket(s), "a ticket was sent");
    SSL_SESSION *again = ticket_round(x, cctx, s, &resumed);
    CHECK(resumed, "resumed with the current key");
    SSL_SESSION_free(again);
    /* an hour on: the next ticket sealed rotates the key; the old one
     * still opens the ticket sealed with it */
    x->keys[0].born -= TICKET_ROTATE;
    unsigned char old_name[16];
    memcpy(old_name, x->keys[0].name, 16);
    SSL_SESSION *fresh = ticket_round(x, cctx, NULL, &resumed);
    CHECK(memcmp(x->keys[1].name, old_name, 16) == 0 &&
              memcmp(x->keys[0].name, old_name, 16) != 0,
          "the key rotated");
    again = ticket_round(x, cctx, s, &resumed);
    CHECK(resumed, "resumed with the previous key");
    SSL_SESSION_free(again);
    /* two periods old: refused, a full handshake */
    x->keys[1].born -= 2 * TICKET_ROTATE;
    again = ticket_round(x, cctx, s, &resumed);
    CHECK(!resumed, "a ticket past two periods is not taken");
    SSL_SESSION_free(again);
    again = ticket_round(x, cctx, fresh, &resumed);
    CHECK(resumed, "the new key's ticket resumes");
    SSL_SESSION_free(again);
    SSL_SESSION_free(fresh);
    SSL_SESSION_free(s);
    SSL_CTX_free(cctx);
    lx_tls_ctx_free(x);
}

static void test_reload(void)
{
    char err[256];
    lx_tls_ctx_t *x = server_ctx(0, 12);
    lx_tls_opts_t bad = {.certfile = path_of("missing.pem")};
    CHECK(lx_tls_ctx_reload(x, &bad, err, sizeof(err)) == LX_ERR &&
              strstr(err, "cannot load") != NULL,
          "a bad reload: %s", err);
    pair_t p;
    pair_open(&p, x, client_ctx(0, NULL, NULL), NULL, NULL);
    CHECK(pair_handshake(&p), "the old certificate still serves");
    X509 *c = SSL_get1_peer_certificate(p.cli);
    X509_NAME_get_text_by_NID(X509_get_subject_name(c), NID_commonName, err,
                              sizeof(err));
    CHECK(strcmp(err, "server") == 0, "old CN %s", err);
    X509_free(c);
    pair_close(&p);
    lx_tls_opts_t fresh = {.certfile = path_of("server2.pem")};
    CHECK(lx_tls_ctx_reload(x, &fresh, err, sizeof(err)) == LX_OK,
          "a good reload: %s", err);
    pair_open(&p, x, client_ctx(0, NULL, NULL), NULL, NULL);
    CHECK(pair_handshake(&p), "the new certificate serves: %s",
          lx_tls_error(p.srv));
    c = SSL_get1_peer_certificate(p.cli);
    err[0] = 0;
    if (c != NULL)
        X509_NAME_get_text_by_NID(X509_get_subject_name(c), NID_commonName,
                                  err, sizeof(err));
    CHECK(strcmp(err, "server two") == 0, "new CN %s", err);
    X509_free(c);
    pair_close(&p);
    lx_tls_ctx_free(x);
}

static void test_garbage(void)
{
    lx_tls_ctx_t *x = server_ctx(0, 12);
    int fds[2];
    socketpair(AF_UNIX, SOCK_STREAM, 0, fds);
    nonblock(fds[0]);
    lx_tls_t *t = lx_tls_new(x, fds[0]);
    CHECK(write(fds[1], "GET / HTTP/1.1\r\n\r\n", 18) == 18, "sent");
    CHECK(lx_tls_handshake(t) == LX_ERR && lx_tls_error(t)[0] != 0,
          "plain HTTP is no handshake: %s", lx_tls_error(t));
    lx_tls_free(t);
    close(fds[0]);
    close(fds[1]);
    socketpair(AF_UNIX, SOCK_STREAM, 0, fds);
    nonblock(fds[0]);
    t = lx_tls_new(x, fds[0]);
    CHECK(write(fds[1], "\x16\x03\x01\x00\x05hello", 10) == 10, "sent");
    close(fds[1]);
    CHECK(lx_tls_handshake(t) == LX_ERR, "a truncated hello: %s",
          lx_tls_error(t));
    lx_tls_free(t);
    close(fds[0]);
    lx_tls_ctx_free(x);
}

int main(void)
{
    setvbuf(stdout, NULL, _IONBF, 0);
    signal(SIGPIPE, SIG_IGN); /* as the engine does: OpenSSL writes */
    make_files();
    test_bad_options();
    test_hello();
    test_echo_alpn_pending();
    test_refused();
    test_client_certificates();
    test_resumption();
    test_ticket_rotation();
    test_reload();
    test_garbage();
    EVP_PKEY_free(ca_key);
    EVP_PKEY_free(client_key);
    X509_free(ca);
    X509_free(client_cert);
    char cmd[96];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    if (system(cmd) != 0)
        printf("could not remove %s\n", dir);
    return check_done();
}
