/*
 * ref_server: the floor the benchmark compares against.
 *
 *     ref_server HOST PORT
 *
 * Answers every request with the same canned "Hello, World!" response, with
 * no HTTP parsing beyond counting request ends ("\r\n\r\n") and no Python:
 * what is left is the syscall cost of serving HTTP/1.1 over TCP.
 *
 *  - one epoll instance, edge-triggered; the listener is drained with
 *    accept4(SOCK_NONBLOCK | SOCK_CLOEXEC) until EAGAIN;
 *  - TCP_NODELAY on every connection, set once on the listener (Linux
 *    hands it down to accepted sockets: no setsockopt per connection);
 *  - TCP_DEFER_ACCEPT (1 s) on the listener: the kernel hands a
 *    connection over with its first bytes, so accepting and reading it
 *    take one wakeup, not one for the handshake and one for the request;
 *  - a new connection is read at once (the request usually came with it)
 *    and joins epoll only when it has to wait: a connection served in one
 *    go (ab's HTTP/1.0) costs no epoll_ctl; it is registered for input
 *    only, and write interest is added the first time a write comes up
 *    short, so a connection whose responses always fit costs no EPOLLOUT
 *    wakeup per ACK;
 *  - per readable event: one read into a shared buffer (a second one only
 *    when the first filled it), the complete requests in it are counted,
 *    and all their responses go out in one writev;
 *  - a connection holds 12 bytes of state and no buffer: where it is in the
 *    "\r\n\r\n" pattern, responses still owed after a short write,
 *    whether to close when they are sent (an HTTP/1.0 request, as ab sends)
 *    and whether write interest was added.
 *
 * Requests with a body are not supported: it answers hello requests only.
 * C11 + POSIX/Linux.  Built by bench/run.py with gcc -O2.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

static const char RESP_KA[] =
    "HTTP/1.1 200 OK\r\n"
    "Content-Type: text/plain\r\n"
    "Content-Length: 13\r\n"
    "\r\n"
    "Hello, World!";
static const char RESP_CLOSE[] =
    "HTTP/1.1 200 OK\r\n"
    "Content-Type: text/plain\r\n"
    "Content-Length: 13\r\n"
    "Connection: close\r\n"
    "\r\n"
    "Hello, World!";

#define RESP_KA_LEN (sizeof(RESP_KA) - 1)
#define RESP_CLOSE_LEN (sizeof(RESP_CLOSE) - 1)
#define READ_BUF 65536
#define MAX_IOV 1024
#define MAX_EVENTS 512

struct conn {
    uint32_t owed;    /* responses not yet (fully) written */
    uint32_t offset;  /* bytes of the first owed response already written */
    uint8_t match;    /* bytes of "\r\n\r\n" matched at the end of input */
    uint8_t close;    /* close once nothing is owed */
    uint8_t watched;  /* registered with epoll */
    uint8_t wantout;  /* registered for EPOLLOUT too */
};

static struct conn *conns;
static int max_fds;
static int epfd;
static char rbuf[READ_BUF];
static struct iovec iov[MAX_IOV];

static void conn_close(int fd)
{
    memset(&conns[fd], 0, sizeof(conns[fd]));
    close(fd);
}

#define EV_IN (EPOLLIN | EPOLLRDHUP | EPOLLET)

/* Register fd with epoll (again) for input, and output if out. */
static int watch(int fd, int out)
{
    struct conn *c = &conns[fd];
    struct epoll_event ev = {.events = EV_IN | (out ? EPOLLOUT : 0),
                             .data.fd = fd};
    if (epoll_ctl(epfd, c->watched ? EPOLL_CTL_MOD : EPOLL_CTL_ADD, fd,
                  &ev) < 0) {
        conn_close(fd);
        return -1;
    }
    c->watched = 1;
    c->wantout = (uint8_t)out;
    return 0;
}

/* The socket is full: hear when it is writable again. */
static int want_out(int fd)
{
    return conns[fd].wantout ? 0 : watch(fd, 1);
}

/* Write what is owed.  Returns -1 if the connection was closed. */
static int flush(int fd)
{
    struct conn *c = &conns[fd];
    while (c->owed) {
        const char *resp = c->close ? RESP_CLOSE : RESP_KA;
        size_t len = c->close ? RESP_CLOSE_LEN : RESP_KA_LEN;
        int n = c->owed < MAX_IOV ? (int)c->owed : MAX_IOV;
        for (int i = 0; i < n; i++) {
            iov[i].iov_base = (void *)resp;
            iov[i].iov_len = len;
        }
        iov[0].iov_base = (char *)resp + c->offset;
        iov[0].iov_len = len - c->offset;
        ssize_t w = writev(fd, iov, n);
        if (w < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                return want_out(fd); /* EPOLLOUT (edge) resumes */
            if (errno == EINTR)
                continue;
            conn_close(fd);
            return -1;
        }
        size_t done = (size_t)w + c->offset;
        c->owed -= (uint32_t)(done / len);
        c->offset = (uint32_t)(done % len);
        if (w < (ssize_t)(n * len - (len - iov[0].iov_len)))
            return want_out(fd); /* short write: the socket is full */
    }
    if (c->close) {
        conn_close(fd);
        return -1;
    }
    return 0;
}

static void on_readable(int fd)
{
    struct conn *c = &conns[fd];
    for (;;) {
        ssize_t n = read(fd, rbuf, READ_BUF);
        if (n == 0) {
            conn_close(fd);
            return;
        }
        if (n < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                break;
            if (errno == EINTR)
                continue;
            conn_close(fd);
            return;
        }
        uint8_t m = c->match;
        uint32_t count = 0;
        for (ssize_t i = 0; i < n; i++) {
            char ch = rbuf[i];
            if (ch == '\r')
                m = (m == 2) ? 3 : 1;
            else if (ch == '\n' && (m == 1 || m == 3)) {
                if (++m == 4) {
                    count++;
                    m = 0;
                }
            } else
                m = 0;
        }
        c->match = m;
        /* ab speaks HTTP/1.0 without keep-alive: answer and close */
        if (count && memmem(rbuf, (size_t)n, " HTTP/1.0\r\n", 11))
            c->close = 1;
        c->owed += count;
        if (n < READ_BUF)
            break; /* drained: no second read that would say EAGAIN */
    }
    if (flush(fd) == 0 && !conns[fd].watched)
        watch(fd, 0); /* open and not served in one go: it has to wait */
}

static void on_accept(int lfd)
{
    for (;;) {
        int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED)
                continue;
            return; /* EAGAIN, or EMFILE and friends: try at next event */
        }
        if (fd >= max_fds) {
            close(fd);
            continue;
        }
        on_readable(fd); /* registers it when it has to wait */
    }
}

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: %s HOST PORT\n", argv[0]);
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
        max_fds = rl.rlim_cur > 1048576 ? 1048576 : (int)rl.rlim_cur;
    } else
        max_fds = 1024;
    conns = calloc((size_t)max_fds, sizeof(*conns)); /* pages on first use */
    if (!conns)
        return 1;

    struct sockaddr_in addr = {.sin_family = AF_INET,
                               .sin_port = htons((uint16_t)atoi(argv[2]))};
    if (inet_pton(AF_INET, argv[1], &addr.sin_addr) != 1) {
        fprintf(stderr, "bad IPv4 address %s\n", argv[1]);
        return 2;
    }
    int lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    setsockopt(lfd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    setsockopt(lfd, IPPROTO_TCP, TCP_DEFER_ACCEPT, &one, sizeof(one));
    if (lfd < 0 || bind(lfd, (struct sockaddr *)&addr, sizeof(addr)) < 0 ||
        listen(lfd, 4096) < 0) {
        perror("listen");
        return 1;
    }
    epfd = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event lev = {.events = EPOLLIN | EPOLLET, .data.fd = lfd};
    epoll_ctl(epfd, EPOLL_CTL_ADD, lfd, &lev);
    fprintf(stderr, "ref_server listening on http://%s:%s\n", argv[1],
            argv[2]);

    struct epoll_event events[MAX_EVENTS];
    for (;;) {
        int n = epoll_wait(epfd, events, MAX_EVENTS, -1);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            perror("epoll_wait");
            return 1;
        }
        for (int i = 0; i < n; i++) {
            int fd = events[i].data.fd;
            uint32_t e = events[i].events;
            if (fd == lfd) {
                on_accept(lfd);
                continue;
            }
            if (e & EPOLLIN)
                on_readable(fd); /* also sees EOF and errors */
            else if (e & (EPOLLERR | EPOLLHUP))
                conn_close(fd);
            else if ((e & EPOLLOUT) && conns[fd].owed)
                flush(fd);
        }
    }
}
