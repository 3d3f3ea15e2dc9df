/* A connection's byte stream: the socket itself, or TLS over it (tls.c).
 * The one seam through which a connection's bytes go in and out, so that
 * everything above it (heads, bodies, responses, files, websockets) works
 * the same over both. Pure C. */
#ifndef LX_XPORT_H
#define LX_XPORT_H

#include "sock.h"
#include "tls.h"

/* Bytes read (> 0), 0 at the end of the stream, LX_AGAIN or LX_ERR.
 *
 * A read that would have to write first (over TLS, which only a client's
 * key update can ask for, the write buffer full) waits to be readable
 * again. */
static inline ssize_t lx_xp_recv(int fd, lx_tls_t *tls, void *buf, size_t n)
{
    if (tls == NULL)
        return lx_sock_recv(fd, buf, n);
    ssize_t r = lx_tls_recv(tls, buf, n);
    return r == LX_TLS_WANT_WRITE ? LX_AGAIN : r;
}

/* Whether a read of n bytes into room drained the socket, so that the
 * next edge of the loop says when more comes (no read for LX_AGAIN). On a
 * plain socket a short read says so; over TLS (a record at a time, read
 * ahead) the socket's own last read, and nothing left in OpenSSL. */
static inline int lx_xp_drained(lx_tls_t *tls, size_t n, size_t room)
{
    return tls == NULL ? n < room : lx_tls_drained(tls);
}

/* Bytes of iov written (> 0), LX_AGAIN (wait writable) or LX_ERR. After
 * LX_AGAIN, the next call must begin with the same bytes (TLS holds the
 * record it began): every caller retries what it has not seen written. */
static inline ssize_t lx_xp_writev(int fd, lx_tls_t *tls,
                                   const struct iovec *iov, int iovcnt)
{
    if (tls == NULL)
        return lx_sock_writev(fd, iov, iovcnt);
    return lx_tls_writev(tls, iov, iovcnt);
}

static inline ssize_t lx_xp_send(int fd, lx_tls_t *tls, const void *buf,
                                 size_t n)
{
    if (tls == NULL)
        return lx_sock_send(fd, buf, n);
    struct iovec iov = {(void *)buf, n};
    return lx_tls_writev(tls, &iov, 1);
}

/* Up to n bytes of in_fd from *off (advanced): the kernel's sendfile on a
 * plain socket; over TLS, a block read and encrypted at a time. Bytes, 0
 * when the file ended early, LX_AGAIN or LX_ERR. */
ssize_t lx_xp_sendfile(int fd, lx_tls_t *tls, int in_fd, off_t *off, size_t n);

#endif
