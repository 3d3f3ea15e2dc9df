/* tls_load: the TLS handshake load client of bench/tls.py (OpenSSL, no
 * other third-party code).
 *
 *   tls_load HOST PORT SECONDS new|resume
 *
 * For SECONDS it opens one connection after the other, each: a TCP
 * connect, a TLS 1.3 handshake, one "GET / HTTP/1.1" with "Connection:
 * close", the response read (its head and Content-Length bytes of body) and
 * checked (status 200, body "Hello, World!"), then a close_notify sent, the
 * socket shut for writing and read until the server has closed it (so that
 * nothing is left unread: no reset), and closed.
 *
 * new: every handshake a full one (no session offered).
 * resume: every connection offers the newest session the server gave (the
 * last ticket received, from OpenSSL's new-session callback), as a client
 * that keeps its sessions does; a first connection, before the SECONDS and
 * not counted, gets the first one.
 *
 * The client ignores a close without close_notify (SSL_OP_IGNORE_UNEXPECTED
 * _EOF): by default OpenSSL 3 takes it for an error and marks the session
 * not resumable, so servers that close without close_notify (Python's ssl
 * module) would never be resumed, whatever their session support.
 *
 * Prints one line at the end:
 *     done connections=N resumed=R full=F errors=E bytes=B seconds=S
 *          tickets_on_resumed=T
 * connections: the checked responses; resumed/full: of those, the
 * handshakes resumed (SSL_session_reused) and not; errors: connections
 * that failed (connect, handshake, a wrong or short response); bytes: of
 * the last response, head included; tickets_on_resumed: the session
 * tickets the resumed connections brought (OpenSSL's client, as browsers,
 * uses a TLS 1.3 ticket once: a server that gives none on a resumed
 * connection gets a full handshake the time after).  Exit status 1 when
 * every connection failed.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#define BUF 65536
#define MAX_ERRORS 1000

static SSL_SESSION *newest;
static long tickets; /* sessions (tickets) received */

static int on_new_session(SSL *ssl, SSL_SESSION *sess)
{
    (void)ssl;
    tickets++;
    if (newest)
        SSL_SESSION_free(newest);
    newest = sess;
    return 1; /* the reference is ours */
}

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* The response in buf[0..len): complete?  1 when the head and
 * Content-Length bytes of body are there, and then *ok says whether it is
 * a 200 with the hello body. */
static int complete(const char *buf, int len, int *ok)
{
    const char *end = memmem(buf, len, "\r\n\r\n", 4);
    if (!end)
        return 0;
    int head = end + 4 - buf;
    long clen = -1;
    for (const char *p = buf; p && p < end;
         p = memmem(p, end - p, "\r\n", 2)) {
        p += 2;
        if (p < end && strncasecmp(p, "content-length:", 15) == 0)
            clen = strtol(p + 15, NULL, 10);
    }
    if (clen < 0)
        return 0; /* read until the server closes */
    if (len < head + clen)
        return 0;
    *ok = (strncmp(buf, "HTTP/1.1 200", 12) == 0 ||
           strncmp(buf, "HTTP/1.0 200", 12) == 0) &&
          clen == 13 && memcmp(buf + head, "Hello, World!", 13) == 0;
    return 1;
}

static char req[256];
static char buf[BUF];

/* One connection: -1 when it failed, else 1 when the server resumed the
 * session offered, 0 when it made a full handshake; *bytes: the size of
 * the response. */
static int one(const struct sockaddr_in *sa, SSL_CTX *ctx, SSL_SESSION *sess,
               long *bytes)
{
    struct timeval tmo = {.tv_sec = 5};
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    int on = 1, ok = 0, len = 0, done = 0, ret = -1;
    int reqlen = strlen(req);
    SSL *ssl;
    if (fd < 0) {
        perror("socket");
        exit(2);
    }
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &on, sizeof on);
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tmo, sizeof tmo);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tmo, sizeof tmo);
    if (connect(fd, (const struct sockaddr *)sa, sizeof *sa) < 0) {
        close(fd);
        usleep(1000);
        return -1;
    }
    ssl = SSL_new(ctx);
    SSL_set_fd(ssl, fd);
    if (sess)
        SSL_set_session(ssl, sess);
    if (SSL_connect(ssl) == 1 && SSL_write(ssl, req, reqlen) == reqlen) {
        while (!done && len < BUF) {
            int n = SSL_read(ssl, buf + len, BUF - len);
            if (n <= 0)
                break;
            len += n;
            done = complete(buf, len, &ok);
        }
        if (done && ok) {
            ret = SSL_session_reused(ssl) ? 1 : 0;
            *bytes = len;
            SSL_shutdown(ssl);
        }
    }
    shutdown(fd, SHUT_WR);
    while (recv(fd, buf, BUF, 0) > 0)
        ;
    SSL_free(ssl);
    close(fd);
    ERR_clear_error();
    return ret;
}

int main(int argc, char **argv)
{
    if (argc != 5 || (strcmp(argv[4], "new") && strcmp(argv[4], "resume"))) {
        fprintf(stderr, "usage: tls_load HOST PORT SECONDS new|resume\n");
        return 2;
    }
    const char *host = argv[1];
    int port = atoi(argv[2]);
    double seconds = atof(argv[3]);
    int resume = strcmp(argv[4], "resume") == 0;
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(port)};
    if (inet_pton(AF_INET, host, &sa.sin_addr) != 1) {
        fprintf(stderr, "tls_load: bad address %s\n", host);
        return 2;
    }
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    if (!ctx || !SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION) ||
        !SSL_CTX_set_max_proto_version(ctx, TLS1_3_VERSION)) {
        ERR_print_errors_fp(stderr);
        return 2;
    }
    SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
    SSL_CTX_set_options(ctx, SSL_OP_IGNORE_UNEXPECTED_EOF);
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_CLIENT |
                                            SSL_SESS_CACHE_NO_INTERNAL_STORE);
    SSL_CTX_sess_set_new_cb(ctx, on_new_session);

    snprintf(req, sizeof req,
             "GET / HTTP/1.1\r\nHost: %s:%d\r\n"
             "Connection: close\r\n\r\n",
             host, port);
    long conns = 0, resumed = 0, full = 0, errors = 0, bytes = 0;
    long resumed_tickets = 0;
    if (resume) {
        /* a first connection, not counted, for the first session */
        for (int i = 0; i < 10 && one(&sa, ctx, NULL, &bytes) < 0; i++)
            usleep(100000);
        if (!newest)
            fprintf(stderr, "tls_load: the server gave no session\n");
    }
    double t0 = now(), deadline = t0 + seconds;
    while (now() < deadline && errors < MAX_ERRORS) {
        long before = tickets;
        int r = one(&sa, ctx, resume ? newest : NULL, &bytes);
        if (r < 0)
            errors++;
        else if (r == 1) {
            conns++;
            resumed++;
            resumed_tickets += tickets - before;
        } else {
            conns++;
            full++;
        }
    }
    printf("done connections=%ld resumed=%ld full=%ld errors=%ld bytes=%ld "
           "seconds=%.3f tickets_on_resumed=%ld\n",
           conns, resumed, full, errors, bytes, now() - t0, resumed_tickets);
    return conns ? 0 : 1;
}
