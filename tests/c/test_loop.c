/* Unit tests of csrc/loop.c (the epoll or kqueue backend) and csrc/sock.c.
 *
 * Build and run from the repository root (always under the sanitizers):
 *   mkdir -p tests/c/bin
 *   gcc -std=c11 -Wall -Wextra -Werror -g -O1 -fsanitize=address,undefined \
 *       -fno-sanitize-recover=all -Icsrc tests/c/test_loop.c \
 *       -o tests/c/bin/test_loop
 *   ./tests/c/bin/test_loop
 *
 * Real sockets only: unix socket pairs and TCP on 127.0.0.1 (an ephemeral
 * port). SIGPIPE keeps its default action, so a call that raises it kills
 * the test; the one call that may (sendfile) is tried in a child. */
#define _GNU_SOURCE

#include "../../csrc/loop.c"
#include "../../csrc/sock.c"
#include "../../csrc/timer.c"

#include <arpa/inet.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>

static const char *cur_kind = "";

#define CHECK_CONTEXT() \
    printf("FAIL %s%s (line %d): ", __func__, cur_kind, __LINE__)
#include "check.h"

static void die(const char *what)
{
    perror(what);
    exit(2);
}

static void set_nonblock(int fd)
{
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0)
        die("fcntl");
}

/* ---- socket pairs: [0] and [1] both non-blocking ---- */

static void unix_pair(int sv[2])
{
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0,
                   sv) < 0)
        die("socketpair");
}

static int tcp_listener(struct sockaddr_in *addr)
{
    int lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (lfd < 0)
        die("socket");
    memset(addr, 0, sizeof(*addr));
    addr->sin_family = AF_INET;
    addr->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr->sin_port = 0;
    socklen_t len = sizeof(*addr);
    if (bind(lfd, (struct sockaddr *)addr, len) < 0 || listen(lfd, 16) < 0 ||
        getsockname(lfd, (struct sockaddr *)addr, &len) < 0)
        die("bind/listen");
    return lfd;
}

static int tcp_connect(const struct sockaddr_in *addr)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        die("socket");
    if (connect(fd, (const struct sockaddr *)addr, sizeof(*addr)) < 0)
        die("connect");
    set_nonblock(fd);
    return fd;
}

/* sv[0] the client, sv[1] the accepted side. */
static void tcp_pair(int sv[2])
{
    struct sockaddr_in addr;
    int lfd = tcp_listener(&addr);
    sv[0] = tcp_connect(&addr);
    int fd = LX_AGAIN;
    for (int i = 0; i < 1000 && fd == LX_AGAIN; i++) {
        fd = lx_sock_accept(lfd, NULL, NULL);
        if (fd == LX_AGAIN)
            poll(&(struct pollfd){.fd = lfd, .events = POLLIN}, 1, 10);
    }
    if (fd < 0)
        die("accept");
    sv[1] = fd;
    close(lfd);
}

typedef void (*pair_fn)(int sv[2]);

static uint64_t now_ms(void)
{
    return lx_now_ms();
}

/* Read everything currently queued. Returns bytes read, or -1 at EOF. */
static long drain(int fd)
{
    char buf[65536];
    long total = 0;
    for (;;) {
        ssize_t r = lx_sock_recv(fd, buf, sizeof(buf));
        if (r > 0)
            total += r;
        else if (r == 0)
            return total ? total : -1;
        else
            return total;
    }
}

/* Write until the socket would block. Returns bytes written. */
static long fill(int fd)
{
    static char junk[65536];
    long total = 0;
    for (int i = 0; i < 100000; i++) {
        struct iovec iov = {junk, sizeof(junk)};
        ssize_t r = lx_sock_writev(fd, &iov, 1);
        if (r == LX_AGAIN)
            return total;
        if (r <= 0)
            die("fill");
        total += r;
    }
    return total;
}

/* One wait; stores the first event. */
static int wait1(lx_loop_t *loop, int timeout, lx_io_t **io, unsigned *ev)
{
    int n = lx_loop_wait(loop, timeout);
    *io = NULL;
    *ev = 0;
    if (n > 0)
        *io = lx_loop_event(loop, 0, ev);
    return n;
}

/* ---- loop ---- */

static void test_edge_read(pair_fn mk, const char *kind)
{
    cur_kind = kind;
    int sv[2];
    mk(sv);
    lx_loop_t *loop = lx_loop_new(8);
    CHECK(loop != NULL && lx_loop_fd(loop) >= 0, "loop_new");
    lx_io_t io = {.fd = sv[1], .kind = 7};
    CHECK(lx_loop_add(loop, &io, LX_EV_READ) == LX_OK, "add");
    CHECK(io.events == LX_EV_READ && io.kind == 7, "io fields");
    lx_io_t *got;
    unsigned ev;
    CHECK(wait1(loop, 50, &got, &ev) == 0, "no event before data");

    CHECK(send(sv[0], "a", 1, 0) == 1, "send");
    CHECK(wait1(loop, 1000, &got, &ev) == 1, "one event for new data");
    CHECK(got == &io && (ev & LX_EV_READ), "event is our io, readable");
    /* edge-triggered: the unread byte does not report again */
    CHECK(wait1(loop, 50, &got, &ev) == 0, "no second event without new data");
    CHECK(send(sv[0], "bc", 2, 0) == 2, "send");
    CHECK(wait1(loop, 1000, &got, &ev) == 1 && got == &io && (ev & LX_EV_READ),
          "new data: new event");
    char buf[16];
    ssize_t r = lx_sock_recv(sv[1], buf, sizeof(buf));
    CHECK(r == 3 && memcmp(buf, "abc", 3) == 0, "recv 3, got %zd", r);
    CHECK(lx_sock_recv(sv[1], buf, sizeof(buf)) == LX_AGAIN,
          "drained: LX_AGAIN");
    CHECK(wait1(loop, 50, &got, &ev) == 0, "no event after draining");
    for (int round = 0; round < 3; round++) {
        CHECK(send(sv[0], "x", 1, 0) == 1, "send");
        CHECK(wait1(loop, 1000, &got, &ev) == 1 && got == &io,
              "round %d: event", round);
        CHECK(wait1(loop, 30, &got, &ev) == 0, "round %d: only one", round);
        CHECK(lx_sock_recv(sv[1], buf, sizeof(buf)) == 1, "round %d: recv",
              round);
    }

    /* the loop fd itself polls readable when events are pending */
    struct pollfd pfd = {.fd = lx_loop_fd(loop), .events = POLLIN};
    CHECK(poll(&pfd, 1, 0) == 0, "loop fd idle");
    CHECK(send(sv[0], "y", 1, 0) == 1, "send");
    CHECK(poll(&pfd, 1, 1000) == 1 && (pfd.revents & POLLIN),
          "loop fd readable with an event pending");
    CHECK(wait1(loop, 0, &got, &ev) == 1, "and wait returns it");
    drain(sv[1]);

    /* del stops events */
    CHECK(lx_loop_del(loop, &io) == LX_OK && io.events == 0, "del");
    CHECK(send(sv[0], "z", 1, 0) == 1, "send");
    CHECK(wait1(loop, 50, &got, &ev) == 0, "no event after del");
    CHECK(lx_loop_del(loop, &io) == LX_ERR, "second del fails");
    /* re-add: pending data is reported at once */
    CHECK(lx_loop_add(loop, &io, LX_EV_READ) == LX_OK, "re-add");
    CHECK(wait1(loop, 1000, &got, &ev) == 1 && got == &io && (ev & LX_EV_READ),
          "re-add reports pending data");
    CHECK(lx_loop_add(loop, &io, LX_EV_READ) == LX_ERR && errno == EEXIST,
          "double add fails with EEXIST");
    drain(sv[1]);

    lx_loop_free(loop);
    close(sv[0]);
    close(sv[1]);
    cur_kind = "";
}

/* Write interest added later (lx_loop_mod), as the server does the first
 * time a write has to wait: no event from a read-only registration of a
 * writable socket; after the mod, one event once the peer drains it. */
static void test_mod_write_interest(pair_fn mk, const char *kind)
{
    cur_kind = kind;
    int sv[2];
    mk(sv);
    lx_loop_t *loop = lx_loop_new(16);
    lx_io_t io = {.fd = sv[1], .events = 0, .kind = 1};
    lx_io_t *got;
    unsigned ev;
    CHECK(lx_loop_add(loop, &io, LX_EV_READ) == LX_OK, "add read only");
    CHECK(wait1(loop, 50, &got, &ev) == 0,
          "a writable socket brings no event without write interest");
    CHECK(fill(sv[1]) > 0, "fill the socket");
    CHECK(lx_loop_mod(loop, &io, LX_EV_READ | LX_EV_WRITE) == LX_OK &&
              io.events == (LX_EV_READ | LX_EV_WRITE),
          "mod adds write interest");
    CHECK(wait1(loop, 50, &got, &ev) == 0, "still full: no event");
    drain(sv[0]);
    CHECK(wait1(loop, 1000, &got, &ev) == 1 && got == &io &&
              (ev & LX_EV_WRITE),
          "writable again after the peer read: one event");
    CHECK(wait1(loop, 50, &got, &ev) == 0, "and only one");
    lx_loop_free(loop);
    close(sv[0]);
    close(sv[1]);
    cur_kind = "";
}

static void test_edge_write(pair_fn mk, const char *kind)
{
    cur_kind = kind;
    int sv[2];
    mk(sv);
    lx_loop_t *loop = lx_loop_new(8);
    lx_io_t io = {.fd = sv[1]};
    lx_io_t *got;
    unsigned ev;
    CHECK(lx_loop_add(loop, &io, LX_EV_READ | LX_EV_WRITE) == LX_OK, "add");
    CHECK(wait1(loop, 1000, &got, &ev) == 1 && got == &io &&
              (ev & LX_EV_WRITE) && !(ev & LX_EV_READ),
          "writable at once, not readable (ev %u)", ev);
    CHECK(wait1(loop, 50, &got, &ev) == 0, "writable reported once");
    long w = fill(sv[1]);
    CHECK(w > 0, "filled %ld bytes", w);
    CHECK(wait1(loop, 50, &got, &ev) == 0, "no event while full");
    /* drain the peer until the writer is told it may write again */
    int writable = 0;
    long drained = 0;
    uint64_t t0 = now_ms();
    while (!writable && now_ms() - t0 < 3000) {
        long d = drain(sv[0]);
        if (d > 0)
            drained += d;
        int n = lx_loop_wait(loop, 20);
        for (int i = 0; i < n; i++) {
            got = lx_loop_event(loop, i, &ev);
            if (got == &io && (ev & LX_EV_WRITE))
                writable = 1;
        }
    }
    CHECK(writable, "write readiness after the peer drained (%ld of %ld)",
          drained, w);
    struct iovec iov = {"q", 1};
    CHECK(lx_sock_writev(sv[1], &iov, 1) == 1, "write succeeds again");
    lx_loop_free(loop);
    close(sv[0]);
    close(sv[1]);
    cur_kind = "";
}

static void test_hangup(pair_fn mk, const char *kind)
{
    cur_kind = kind;
    lx_io_t *got;
    unsigned ev;
    char buf[8];

    /* peer closes */
    int sv[2];
    mk(sv);
    lx_loop_t *loop = lx_loop_new(8);
    lx_io_t io = {.fd = sv[1]};
    CHECK(lx_loop_add(loop, &io, LX_EV_READ) == LX_OK, "add");
    close(sv[0]);
    CHECK(wait1(loop, 1000, &got, &ev) == 1 && got == &io && (ev & LX_EV_READ),
          "close reported as readable (ev %u)", ev);
    CHECK(lx_sock_recv(sv[1], buf, sizeof(buf)) == 0, "recv returns 0");
    CHECK(lx_sock_recv(sv[1], buf, sizeof(buf)) == 0, "and again 0");
    lx_loop_free(loop);
    close(sv[1]);

    /* peer shuts down writing, with data before the EOF */
    mk(sv);
    loop = lx_loop_new(8);
    io.fd = sv[1];
    CHECK(lx_loop_add(loop, &io, LX_EV_READ) == LX_OK, "add");
    CHECK(send(sv[0], "hi", 2, 0) == 2 && shutdown(sv[0], SHUT_WR) == 0,
          "send+shutdown");
    CHECK(wait1(loop, 1000, &got, &ev) >= 1 && got == &io && (ev & LX_EV_READ),
          "half-close readable");
    CHECK(lx_sock_recv(sv[1], buf, sizeof(buf)) == 2, "data first");
    CHECK(lx_sock_recv(sv[1], buf, sizeof(buf)) == 0, "then EOF");
    lx_loop_free(loop);
    close(sv[0]);
    close(sv[1]);

    /* registered for writing only: the hang-up still wakes the owner */
    mk(sv);
    loop = lx_loop_new(8);
    io.fd = sv[1];
    CHECK(lx_loop_add(loop, &io, LX_EV_WRITE) == LX_OK, "add");
    CHECK(wait1(loop, 1000, &got, &ev) == 1 && (ev & LX_EV_WRITE),
          "initially writable");
    close(sv[0]);
    CHECK(wait1(loop, 1000, &got, &ev) == 1 && got == &io && ev != 0,
          "hang-up reported to a writer (ev %u)", ev);
    lx_loop_free(loop);
    close(sv[1]);
    cur_kind = "";
}

static void test_wait_misc(void)
{
    lx_loop_t *loop = lx_loop_new(4);
    lx_io_t *got;
    unsigned ev;
    uint64_t t0 = now_ms();
    CHECK(wait1(loop, 100, &got, &ev) == 0, "timeout returns 0");
    uint64_t dt = now_ms() - t0;
    CHECK(dt >= 95 && dt < 1000, "100 ms timeout took %" PRIu64 " ms", dt);
    t0 = now_ms();
    CHECK(wait1(loop, 0, &got, &ev) == 0 && now_ms() - t0 < 50,
          "timeout 0 returns at once");

    /* several ios ready in one wait, more than max_events */
    enum { NP = 6 };
    int sv[NP][2];
    lx_io_t io[NP];
    for (int i = 0; i < NP; i++) {
        unix_pair(sv[i]);
        io[i].fd = sv[i][1];
        io[i].kind = (unsigned short)i;
        CHECK(lx_loop_add(loop, &io[i], LX_EV_READ) == LX_OK, "add %d", i);
        CHECK(send(sv[i][0], "k", 1, 0) == 1, "send");
    }
    int seen[NP] = {0}, total = 0, rounds = 0;
    while (total < NP && rounds++ < 10) {
        int n = lx_loop_wait(loop, 1000);
        CHECK(n >= 1 && n <= 4, "at most max_events per wait: %d", n);
        for (int i = 0; i < n; i++) {
            lx_io_t *x = lx_loop_event(loop, i, &ev);
            if (x >= io && x < io + NP && (ev & LX_EV_READ)) {
                seen[x - io]++;
                total++;
            }
        }
    }
    int once = 1;
    for (int i = 0; i < NP; i++)
        once &= seen[i] == 1 && io[i].kind == i;
    CHECK(total == NP && once, "every io reported exactly once (%d)", total);
    CHECK(wait1(loop, 30, &got, &ev) == 0, "nothing left");
    for (int i = 0; i < NP; i++) {
        close(sv[i][0]);
        close(sv[i][1]);
    }

    /* bad fds */
    lx_io_t bad = {.fd = -1};
    errno = 0;
    CHECK(lx_loop_add(loop, &bad, LX_EV_READ) == LX_ERR && errno == EBADF,
          "add of a bad fd: LX_ERR/EBADF (errno %d)", errno);
    int tmp[2];
    if (pipe(tmp) < 0)
        die("pipe");
    lx_io_t pio = {.fd = tmp[0]};
    CHECK(lx_loop_del(loop, &pio) == LX_ERR, "del of an unregistered fd");
    close(tmp[0]);
    close(tmp[1]);
    lx_loop_free(loop);
    lx_loop_free(NULL); /* harmless */
}

/* Whether the loop's own fd is readable within timeout ms (what a program
 * that drives the loop from outside sees). */
static int fd_readable(lx_loop_t *loop, int timeout)
{
    struct pollfd p = {lx_loop_fd(loop), POLLIN, 0};
    return poll(&p, 1, timeout) == 1 && (p.revents & POLLIN);
}

static void test_deadline(void)
{
    lx_loop_t *loop = lx_loop_new(4);
    lx_io_t *got;
    unsigned ev;
    CHECK(lx_loop_armed(loop) == LX_TIMER_NEVER, "nothing armed at first");
    CHECK(!fd_readable(loop, 30), "no deadline: the fd stays quiet");

    /* a deadline makes the fd readable then, not before; the wait that
     * follows consumes it and reports no event */
    uint64_t t0 = now_ms();
    CHECK(lx_loop_deadline(loop, t0 + 100) == LX_OK, "arm");
    CHECK(lx_loop_armed(loop) == t0 + 100, "armed");
    CHECK(!fd_readable(loop, 50), "not readable before the deadline");
    CHECK(fd_readable(loop, 1000), "readable at the deadline");
    uint64_t dt = now_ms() - t0;
    CHECK(dt >= 99 && dt < 600, "deadline of 100 ms took %" PRIu64 " ms", dt);
    CHECK(wait1(loop, 0, &got, &ev) == 0, "the deadline is not an event");
    CHECK(lx_loop_armed(loop) == LX_TIMER_NEVER, "disarmed once passed");
    CHECK(!fd_readable(loop, 30), "quiet again after the wait");

    /* a later deadline leaves an earlier one armed; an earlier one
     * replaces it */
    t0 = now_ms();
    CHECK(lx_loop_deadline(loop, t0 + 60) == LX_OK, "arm 60");
    CHECK(lx_loop_deadline(loop, t0 + 5000) == LX_OK &&
              lx_loop_armed(loop) == t0 + 60,
          "a later deadline keeps the armed one");
    CHECK(lx_loop_deadline(loop, t0 + 20) == LX_OK &&
              lx_loop_armed(loop) == t0 + 20,
          "an earlier deadline replaces it");
    CHECK(fd_readable(loop, 1000) && now_ms() - t0 < 55,
          "readable at the earlier deadline");
    CHECK(wait1(loop, 0, &got, &ev) == 0, "consumed");

    /* 0 and past deadlines: at once; a wait with a timeout returns when
     * the deadline passes */
    CHECK(lx_loop_deadline(loop, 0) == LX_OK, "arm now");
    CHECK(fd_readable(loop, 0) || fd_readable(loop, 50), "now is at once");
    CHECK(wait1(loop, 1000, &got, &ev) == 0, "consumed (0)");
    CHECK(lx_loop_deadline(loop, 1) == LX_OK && fd_readable(loop, 50),
          "a past deadline is at once");
    CHECK(wait1(loop, 1000, &got, &ev) == 0, "consumed (past)");
    t0 = now_ms();
    CHECK(lx_loop_deadline(loop, t0 + 80) == LX_OK, "arm 80");
    CHECK(wait1(loop, -1, &got, &ev) == 0, "a wait without timeout ends");
    dt = now_ms() - t0;
    CHECK(dt >= 79 && dt < 600, "at the deadline: %" PRIu64 " ms", dt);
    CHECK(lx_loop_deadline(loop, LX_TIMER_NEVER) == LX_OK &&
              lx_loop_armed(loop) == LX_TIMER_NEVER,
          "never arms nothing");

    /* a deadline and an io ready in the same wait: only the io is
     * reported */
    int sv[2];
    unix_pair(sv);
    lx_io_t io = {.fd = sv[1], .kind = 7};
    CHECK(lx_loop_add(loop, &io, LX_EV_READ) == LX_OK, "add");
    CHECK(lx_loop_deadline(loop, 0) == LX_OK, "arm now");
    CHECK(send(sv[0], "x", 1, 0) == 1, "send");
    usleep(10000);
    int n = lx_loop_wait(loop, 1000);
    CHECK(n == 1 && lx_loop_event(loop, 0, &ev) == &io, "only the io: %d", n);
    CHECK(lx_loop_armed(loop) == LX_TIMER_NEVER, "and the deadline passed");
    close(sv[0]);
    close(sv[1]);
    lx_loop_free(loop);
}

/* ---- sock ---- */

static void test_accept(void)
{
    struct sockaddr_in addr;
    int lfd = tcp_listener(&addr);
    struct sockaddr_storage ss;
    socklen_t sl = sizeof(ss);
    CHECK(lx_sock_accept(lfd, (struct sockaddr *)&ss, &sl) == LX_AGAIN,
          "nothing pending: LX_AGAIN");

    lx_loop_t *loop = lx_loop_new(4);
    lx_io_t lio = {.fd = lfd};
    lx_io_t *got;
    unsigned ev;
    CHECK(lx_loop_add(loop, &lio, LX_EV_READ) == LX_OK, "add listener");
    int c1 = tcp_connect(&addr);
    CHECK(wait1(loop, 1000, &got, &ev) == 1 && got == &lio &&
              (ev & LX_EV_READ),
          "listener readable on connect");
    sl = sizeof(ss);
    int fd = lx_sock_accept(lfd, (struct sockaddr *)&ss, &sl);
    CHECK(fd >= 0, "accept: %d", fd);
    if (fd >= 0) {
        int fl = fcntl(fd, F_GETFL), fdf = fcntl(fd, F_GETFD);
        CHECK(fl >= 0 && (fl & O_NONBLOCK), "accepted fd non-blocking");
        CHECK(fdf >= 0 && (fdf & FD_CLOEXEC), "accepted fd close-on-exec");
        struct sockaddr_in *peer = (struct sockaddr_in *)&ss;
        CHECK(sl == sizeof(struct sockaddr_in) &&
                  peer->sin_family == AF_INET &&
                  peer->sin_addr.s_addr == htonl(INADDR_LOOPBACK),
              "peer address filled");
        char buf[4];
        CHECK(lx_sock_recv(fd, buf, sizeof(buf)) == LX_AGAIN,
              "accepted fd does not block");
        lx_sock_nodelay(fd);
        int one = 0;
        socklen_t ol = sizeof(one);
        CHECK(getsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, &ol) == 0 &&
                  one != 0,
              "nodelay set");
        close(fd);
    }
    CHECK(lx_sock_accept(lfd, NULL, NULL) == LX_AGAIN, "queue empty again");

    /* two pending connections, NULL address */
    int c2 = tcp_connect(&addr), c3 = tcp_connect(&addr);
    CHECK(wait1(loop, 1000, &got, &ev) == 1 && got == &lio, "new edge");
    int a = LX_AGAIN, b = LX_AGAIN;
    for (int i = 0; i < 100 && (a < 0 || b < 0); i++) {
        if (a < 0)
            a = lx_sock_accept(lfd, NULL, NULL);
        else
            b = lx_sock_accept(lfd, NULL, NULL);
        if (a < 0 || b < 0)
            poll(NULL, 0, 5);
    }
    CHECK(a >= 0 && b >= 0 && a != b, "both accepted");
    CHECK(lx_sock_accept(lfd, NULL, NULL) == LX_AGAIN, "then LX_AGAIN");
    if (a >= 0)
        close(a);
    if (b >= 0)
        close(b);

    /* errors */
    errno = 0;
    CHECK(lx_sock_accept(-1, NULL, NULL) == LX_ERR && errno == EBADF,
          "bad fd: LX_ERR/EBADF");
    int sv[2];
    unix_pair(sv);
    errno = 0;
    CHECK(lx_sock_accept(sv[0], NULL, NULL) == LX_ERR && errno == EINVAL,
          "not listening: LX_ERR/EINVAL (errno %d)", errno);
    lx_sock_nodelay(sv[0]); /* harmless on a unix socket */
    close(sv[0]);
    close(sv[1]);
    close(c1);
    close(c2);
    close(c3);
    lx_loop_free(loop);
    close(lfd);
}

static void test_recv_writev(pair_fn mk, const char *kind)
{
    cur_kind = kind;
    int sv[2];
    mk(sv);
    char buf[64];
    CHECK(lx_sock_recv(sv[1], buf, sizeof(buf)) == LX_AGAIN,
          "recv on empty: LX_AGAIN");

    struct iovec iov[4] = {{"hel", 3}, {"", 0}, {"lo ", 3}, {"world", 5}};
    CHECK(lx_sock_writev(sv[0], iov, 4) == 11, "writev gathers 11 bytes");
    size_t got = 0;
    uint64_t t0 = now_ms();
    while (got < 11 && now_ms() - t0 < 1000) {
        ssize_t r = lx_sock_recv(sv[1], buf + got, sizeof(buf) - got);
        if (r > 0)
            got += (size_t)r;
        else
            poll(NULL, 0, 2);
    }
    CHECK(got == 11 && memcmp(buf, "hello world", 11) == 0, "in order");
    /* short read */
    CHECK(send(sv[0], "abcdef", 6, 0) == 6, "send");
    poll(&(struct pollfd){.fd = sv[1], .events = POLLIN}, 1, 1000);
    CHECK(lx_sock_recv(sv[1], buf, 4) == 4 && memcmp(buf, "abcd", 4) == 0,
          "recv bounded by n");
    CHECK(lx_sock_recv(sv[1], buf, 64) == 2, "rest");

    /* would-block on a full socket */
    long w = fill(sv[0]);
    struct iovec one = {"x", 1};
    CHECK(w > 0 && lx_sock_writev(sv[0], &one, 1) == LX_AGAIN,
          "full: LX_AGAIN");

    /* peer gone: LX_ERR with EPIPE (or a reset), and no SIGPIPE */
    close(sv[1]);
    ssize_t r = 0;
    for (int i = 0; i < 100; i++) {
        errno = 0;
        r = lx_sock_writev(sv[0], &one, 1);
        if (r == LX_ERR)
            break;
        poll(NULL, 0, 5);
    }
    CHECK(r == LX_ERR && (errno == EPIPE || errno == ECONNRESET),
          "write after peer closed: LX_ERR (r %zd errno %d)", r, errno);
    errno = 0;
    r = lx_sock_writev(sv[0], &one, 1);
    CHECK(r == LX_ERR && errno == EPIPE, "then EPIPE (r %zd errno %d)", r,
          errno);
    close(sv[0]);

    errno = 0;
    CHECK(lx_sock_recv(-1, buf, 1) == LX_ERR && errno == EBADF,
          "recv bad fd: LX_ERR/EBADF");
    errno = 0;
    CHECK(lx_sock_writev(-1, &one, 1) == LX_ERR && errno == EBADF,
          "writev bad fd: LX_ERR/EBADF");
    cur_kind = "";
}

static int temp_file(size_t n, char **content)
{
    const char *dir = getenv("TMPDIR");
    char path[512];
    snprintf(path, sizeof(path), "%s/lxsendfileXXXXXX", dir ? dir : "/tmp");
    int fd = mkstemp(path);
    if (fd < 0)
        die("mkstemp");
    unlink(path);
    char *c = malloc(n);
    for (size_t i = 0; i < n; i++)
        c[i] = (char)((i * 131u) ^ (i >> 8));
    if (write(fd, c, n) != (ssize_t)n)
        die("write");
    *content = c;
    return fd;
}

static void test_sendfile(pair_fn mk, const char *kind)
{
    cur_kind = kind;
    enum { FSZ = 300000 };
    char *content;
    int ffd = temp_file(FSZ, &content);
    int sv[2];
    mk(sv);
    char *rx = malloc(FSZ);

    off_t off = 1234;
    ssize_t r = lx_sock_sendfile(sv[0], ffd, &off, 5000);
    CHECK(r == 5000 && off == 6234, "sendfile 5000 at 1234: r %zd off %lld", r,
          (long long)off);
    size_t got = 0;
    uint64_t t0 = now_ms();
    while (got < 5000 && now_ms() - t0 < 1000) {
        ssize_t k = lx_sock_recv(sv[1], rx + got, 5000 - got);
        if (k > 0)
            got += (size_t)k;
        else
            poll(NULL, 0, 2);
    }
    CHECK(got == 5000 && memcmp(rx, content + 1234, 5000) == 0,
          "bytes from the offset");
    CHECK(lseek(ffd, 0, SEEK_CUR) == FSZ, "file position untouched");

    /* near and at the end of the file */
    off = FSZ - 100;
    r = lx_sock_sendfile(sv[0], ffd, &off, 5000);
    CHECK(r == 100 && off == FSZ, "short at end: r %zd", r);
    drain(sv[1]);
    r = lx_sock_sendfile(sv[0], ffd, &off, 5000);
    CHECK(r == 0 && off == FSZ, "at EOF: 0 (r %zd)", r);

    /* the whole file through a small socket, resuming on LX_AGAIN */
    int small = 8192;
    if (setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &small, sizeof(small)) < 0)
        die("setsockopt");
    off = 0;
    got = 0;
    int agains = 0, bad = 0;
    t0 = now_ms();
    while ((got < FSZ || off < FSZ) && !bad && now_ms() - t0 < 5000) {
        if (off < FSZ) {
            off_t before = off;
            r = lx_sock_sendfile(sv[0], ffd, &off, FSZ - (size_t)off);
            if (r == LX_AGAIN)
                agains++;
            else if (r <= 0 || off != before + r)
                bad = 1;
            if (r > 0 && off < FSZ)
                continue; /* keep sending until the socket is full */
        }
        ssize_t k;
        while ((k = lx_sock_recv(sv[1], rx + got, FSZ - got)) > 0)
            got += (size_t)k;
    }
    CHECK(!bad && off == FSZ && got == FSZ && memcmp(rx, content, FSZ) == 0,
          "whole file intact (off %lld got %zu)", (long long)off, got);
    CHECK(agains > 0, "LX_AGAIN seen on the way (%d)", agains);

    /* full socket */
    fill(sv[0]);
    off = 0;
    CHECK(lx_sock_sendfile(sv[0], ffd, &off, 1000) == LX_AGAIN && off == 0,
          "full socket: LX_AGAIN, offset kept");
    errno = 0;
    CHECK(lx_sock_sendfile(sv[0], -1, &off, 10) == LX_ERR && errno == EBADF,
          "bad file fd: LX_ERR/EBADF");
    close(sv[0]);
    close(sv[1]);
    close(ffd);
    free(rx);
    free(content);
    cur_kind = "";
}

/* In a child with SIGPIPE at its default action: does a socket call to a
 * closed peer return LX_ERR/EPIPE (exit 0) or kill the child? */
static int child_status(int use_sendfile)
{
    pid_t pid = fork();
    if (pid < 0)
        die("fork");
    if (pid == 0) {
        signal(SIGPIPE, SIG_DFL);
        if (use_sendfile)
            lx_sock_ignore_sigpipe(); /* its documented precondition */
        char *content;
        int ffd = temp_file(4096, &content);
        int sv[2];
        unix_pair(sv);
        close(sv[1]);
        off_t off = 0;
        struct iovec iov = {"x", 1};
        errno = 0;
        ssize_t r = use_sendfile ? lx_sock_sendfile(sv[0], ffd, &off, 4096)
                                 : lx_sock_writev(sv[0], &iov, 1);
        _exit(r == LX_ERR && errno == EPIPE ? 0 : 1);
    }
    int st = 0;
    if (waitpid(pid, &st, 0) != pid)
        die("waitpid");
    return st;
}

static void test_no_sigpipe(void)
{
    int st = child_status(0);
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0,
          "writev to a closed peer: %s %d",
          WIFSIGNALED(st) ? "killed by signal" : "exit",
          WIFSIGNALED(st) ? WTERMSIG(st) : WEXITSTATUS(st));
    st = child_status(1);
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0,
          "sendfile to a closed peer, after lx_sock_ignore_sigpipe, must "
          "return LX_ERR/EPIPE like writev: %s %d",
          WIFSIGNALED(st) ? "killed by signal" : "exit",
          WIFSIGNALED(st) ? WTERMSIG(st) : WEXITSTATUS(st));
}

static void test_iov_advance(void)
{
    char a[3] = "abc", c[5] = "cdefg", d[2] = "hi";
    struct iovec base[4] = {{a, 3}, {NULL, 0}, {c, 5}, {d, 2}};
    struct iovec v[4];

#define RESET() memcpy(v, base, sizeof(v))
    RESET();
    CHECK(lx_iov_advance(v, 4, 0) == 0 && v[0].iov_base == a &&
              v[0].iov_len == 3,
          "advance 0");
    RESET();
    CHECK(lx_iov_advance(v, 4, 2) == 0 && v[0].iov_base == a + 2 &&
              v[0].iov_len == 1,
          "partial first");
    RESET();
    int i = lx_iov_advance(v, 4, 3);
    CHECK(i == 2 && v[0].iov_len == 0 && v[2].iov_base == c &&
              v[2].iov_len == 5,
          "exact first boundary skips the empty iovec: %d", i);
    RESET();
    i = lx_iov_advance(v, 4, 4);
    CHECK(i == 2 && v[2].iov_base == c + 1 && v[2].iov_len == 4 &&
              v[3].iov_base == d && v[3].iov_len == 2,
          "partial third: %d", i);
    RESET();
    i = lx_iov_advance(v, 4, 8);
    CHECK(i == 3 && v[2].iov_len == 0 && v[3].iov_base == d &&
              v[3].iov_len == 2,
          "exact boundary before the last: %d", i);
    RESET();
    i = lx_iov_advance(v, 4, 9);
    CHECK(i == 3 && v[3].iov_base == d + 1 && v[3].iov_len == 1,
          "partial last: %d", i);
    RESET();
    i = lx_iov_advance(v, 4, 10);
    CHECK(i == 4 && v[3].iov_len == 0, "everything: %d", i);
    RESET();
    CHECK(lx_iov_advance(v, 4, 1000) == 4, "more than everything");
    CHECK(lx_iov_advance(v, 0, 5) == 0, "no iovecs");

    /* repeated partial advances, as the writer does */
    RESET();
    int first = 0;
    first += lx_iov_advance(v + first, 4 - first, 1); /* 'a' */
    first += lx_iov_advance(v + first, 4 - first, 3); /* 'bc' 'c' */
    CHECK(first == 2 && v[2].iov_base == c + 1 && v[2].iov_len == 4,
          "cumulative: first %d", first);
    first += lx_iov_advance(v + first, 4 - first, 5); /* 'defg' 'h' */
    CHECK(first == 3 && v[3].iov_base == d + 1 && v[3].iov_len == 1,
          "cumulative 2: first %d", first);
    first += lx_iov_advance(v + first, 4 - first, 1);
    CHECK(first == 4, "cumulative done: %d", first);

    /* against a byte model: every split of the 10 bytes */
    int bad = 0;
    for (size_t n1 = 0; n1 <= 10 && !bad; n1++) {
        for (size_t n2 = 0; n1 + n2 <= 10 && !bad; n2++) {
            RESET();
            int f = lx_iov_advance(v, 4, n1);
            f += lx_iov_advance(v + f, 4 - f, n2);
            /* collect what remains */
            char rest[16];
            size_t k = 0;
            for (int j = f; j < 4; j++) {
                if (v[j].iov_len > 0)
                    memcpy(rest + k, v[j].iov_base, v[j].iov_len);
                k += v[j].iov_len;
            }
            const char want[] = "abccdefghi"; /* a[3] "abc" + "cdefg" + "hi" */
            if (k != 10 - n1 - n2 || memcmp(rest, want + n1 + n2, k) != 0)
                bad = 1;
            if (f < 4 && v[f].iov_len == 0)
                bad = 2;
        }
    }
    CHECK(!bad, "all two-step splits (%d)", bad);
#undef RESET
}

int main(void)
{
    /* default action: any stray SIGPIPE ends the run */
    signal(SIGPIPE, SIG_DFL);
    test_edge_read(unix_pair, " [unix]");
    test_edge_read(tcp_pair, " [tcp]");
    test_mod_write_interest(unix_pair, " [unix]");
    test_mod_write_interest(tcp_pair, " [tcp]");
    test_edge_write(unix_pair, " [unix]");
    test_edge_write(tcp_pair, " [tcp]");
    test_hangup(unix_pair, " [unix]");
    test_hangup(tcp_pair, " [tcp]");
    test_wait_misc();
    test_deadline();
    test_accept();
    test_recv_writev(unix_pair, " [unix]");
    test_recv_writev(tcp_pair, " [tcp]");
    test_sendfile(unix_pair, " [unix]");
    test_sendfile(tcp_pair, " [tcp]");
    test_iov_advance();
    test_no_sigpipe();
    return check_done();
}
