#define _GNU_SOURCE
#include "sock.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <string.h>
#include <unistd.h>
#if defined(__linux__)
#include <sys/sendfile.h>
#endif

const char lx_err_closed[] = "connection closed";
const char lx_err_timeout[] = "timed out";
const char lx_err_io[] = "I/O error";

int lx_sock_accept(int lfd, struct sockaddr *sa, socklen_t *salen)
{
#if defined(__linux__)
    int fd = accept4(lfd, sa, salen, SOCK_NONBLOCK | SOCK_CLOEXEC);
#else
    int fd = accept(lfd, sa, salen);
    if (fd >= 0) {
        if (fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK) < 0 ||
            fcntl(fd, F_SETFD, FD_CLOEXEC) < 0) {
            int e = errno;
            close(fd);
            errno = e;
            return LX_ERR;
        }
#ifdef SO_NOSIGPIPE
        int one = 1;
        setsockopt(fd, SOL_SOCKET, SO_NOSIGPIPE, &one, sizeof(one));
#endif
    }
#endif
    if (fd >= 0)
        return fd;
    if (errno == EAGAIN || errno == EWOULDBLOCK)
        return LX_AGAIN;
    return LX_ERR;
}

/* Socket calls report EINTR as RETRY (to be made again), and EAGAIN as
 * LX_AGAIN. */
#define RETRY (-3)
static ssize_t outcome(ssize_t r)
{
    if (r >= 0)
        return r;
    if (errno == EINTR)
        return RETRY;
    if (errno == EAGAIN || errno == EWOULDBLOCK)
        return LX_AGAIN;
    return LX_ERR;
}

#ifdef MSG_NOSIGNAL
#define SEND_FLAGS MSG_NOSIGNAL
#else
#define SEND_FLAGS 0 /* SO_NOSIGPIPE, set at accept */
#endif

ssize_t lx_sock_recv(int fd, void *buf, size_t n)
{
    ssize_t r;
    do
        r = outcome(recv(fd, buf, n, 0));
    while (r == RETRY);
    return r;
}

ssize_t lx_sock_peek(int fd, void *buf, size_t n)
{
    ssize_t r;
    do
        r = outcome(recv(fd, buf, n, MSG_PEEK));
    while (r == RETRY);
    return r;
}

ssize_t lx_sock_send(int fd, const void *buf, size_t n)
{
    ssize_t r;
    do
        r = outcome(send(fd, buf, n, SEND_FLAGS));
    while (r == RETRY);
    return r;
}

ssize_t lx_sock_writev(int fd, const struct iovec *iov, int iovcnt)
{
    if (iovcnt == 1) /* send() spares the kernel the msghdr and iovec */
        return lx_sock_send(fd, iov[0].iov_base, iov[0].iov_len);
    struct msghdr msg;
    memset(&msg, 0, sizeof(msg));
    msg.msg_iov = (struct iovec *)iov;
    msg.msg_iovlen = iovcnt;
    ssize_t r;
    do
        r = outcome(sendmsg(fd, &msg, SEND_FLAGS));
    while (r == RETRY);
    return r;
}

ssize_t lx_sock_sendfile(int out_fd, int in_fd, off_t *off, size_t n)
{
    ssize_t r;
    do {
#if defined(__linux__)
        r = sendfile(out_fd, in_fd, off, n);
#else
        off_t len = (off_t)n;
        r = -1;
        if (sendfile(in_fd, out_fd, *off, &len, NULL, 0) == 0 ||
            ((errno == EAGAIN || errno == EINTR) && len > 0)) {
            *off += len;
            r = (ssize_t)len;
        }
#endif
        r = outcome(r);
    } while (r == RETRY);
    return r;
}

void lx_sock_ignore_sigpipe(void)
{
    struct sigaction sa;
    if (sigaction(SIGPIPE, NULL, &sa) == 0 && sa.sa_handler == SIG_DFL) {
        sa.sa_handler = SIG_IGN;
        (void)sigaction(SIGPIPE, &sa, NULL);
    }
}

int lx_sock_listener_nodelay(int fd)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);
    int one = 1;
    if (getsockname(fd, (struct sockaddr *)&ss, &len) < 0 ||
        (ss.ss_family != AF_INET && ss.ss_family != AF_INET6))
        return 0;
    if (setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)) < 0)
        return 0;
#if defined(__linux__)
    return 1; /* accepted sockets copy the listener's TCP flags */
#else
    return 0;
#endif
}

void lx_sock_nodelay(int fd)
{
    int one = 1;
    /* Fails on unix sockets; that is fine. */
    (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

int lx_iov_advance(struct iovec *iov, int iovcnt, size_t n)
{
    int i = 0;
    while (i < iovcnt && n >= iov[i].iov_len) {
        n -= iov[i].iov_len;
        iov[i].iov_len = 0;
        i++;
    }
    if (i < iovcnt && n > 0) {
        iov[i].iov_base = (char *)iov[i].iov_base + n;
        iov[i].iov_len -= n;
    }
    return i;
}
