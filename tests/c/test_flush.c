/* Unit tests of csrc/flush.c: held output and the flusher thread.
 *
 * Build and run from the repository root (always under the sanitizers):
 *   mkdir -p tests/c/bin
 *   gcc -std=c11 -Wall -Wextra -Werror -g -O1 -pthread \
 *       -fsanitize=address,undefined -fno-sanitize-recover=all -Icsrc \
 *       tests/c/test_flush.c -o tests/c/bin/test_flush
 *   ./tests/c/bin/test_flush
 *
 * Over a socketpair: held bytes arrive after about two ticks while the
 * holder does nothing; bytes taken back at once were not sent; a peer that
 * does not read gets the rest once it reads; a peer that is gone makes
 * release report the error; the thread falls asleep after a second idle
 * and wakes for the next hold; a forked child starts its own thread. */
#define _GNU_SOURCE

#include "../../csrc/buf.c"
#include "../../csrc/flush.c"
#include "../../csrc/sock.c"

#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "check.h"

static lx_bufpool_t pool;

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static void pair(int sv[2])
{
    if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) < 0) {
        perror("socketpair");
        exit(2);
    }
    fcntl(sv[0], F_SETFL, fcntl(sv[0], F_GETFL) | O_NONBLOCK);
}

static lx_buf_t *buf_with(const char *s)
{
    lx_buf_t *b = lx_buf_get(&pool);
    size_t n = strlen(s);
    memcpy(b->data, s, n);
    b->len = n;
    return b;
}

/* A test's end: the buffer back to the pool, both ends of its pair shut. */
static void done_with(int sv[2], lx_buf_t *b)
{
    lx_buf_put(&pool, b);
    close(sv[0]);
    close(sv[1]);
}

/* Bytes readable on fd within ms milliseconds (0 if none). */
static ssize_t read_within(int fd, char *dst, size_t cap, int ms)
{
    struct pollfd p = {fd, POLLIN, 0};
    if (poll(&p, 1, ms) <= 0)
        return 0;
    return read(fd, dst, cap);
}

static void test_held_bytes_are_sent(void)
{
    int sv[2];
    pair(sv);
    lx_buf_t *b = buf_with("held bytes");
    lx_flush_entry_t e = {0};
    double t0 = now_ms();
    CHECK(lx_flush_hold(&e, sv[0], b) == LX_OK, "hold");
    CHECK(e.linked && lx_flush_held() == 1, "held: %ld", lx_flush_held());
    char got[64] = {0};
    ssize_t n = read_within(sv[1], got, sizeof(got), 2000);
    double waited = now_ms() - t0;
    CHECK(n == 10 && memcmp(got, "held bytes", 10) == 0, "got %zd", n);
    /* at least one whole tick (a little slack for the clock), at most a
     * few even on a loaded machine */
    CHECK(waited >= LX_FLUSH_TICK_US / 1000.0 * 0.9 && waited < 500,
          "waited %.3f ms", waited);
    CHECK(lx_flush_release(&e) == 0, "release");
    CHECK(!e.linked && lx_buf_avail(b) == 0 && lx_flush_held() == 0,
          "taken back, all sent: avail %zu", lx_buf_avail(b));
    CHECK(lx_flush_sends() >= 1, "sends %ld", lx_flush_sends());
    CHECK(lx_flush_release(&e) == 0, "a second release is a no-op");
    done_with(sv, b);
}

static void test_release_at_once_sends_nothing(void)
{
    int sv[2], i, checked = 0;
    pair(sv);
    for (i = 0; i < 200; i++) {
        lx_buf_t *b = buf_with("abc");
        lx_flush_entry_t e = {0};
        double t0 = now_ms();
        lx_flush_hold(&e, sv[0], b);
        lx_flush_release(&e);
        /* Only meaningful when this thread was not descheduled for a
         * whole tick in between. */
        if (now_ms() - t0 < LX_FLUSH_TICK_US / 1000.0 / 2) {
            checked++;
            CHECK(lx_buf_avail(b) == 3, "sent although released at once");
        }
        lx_buf_put(&pool, b);
    }
    CHECK(checked > 100, "only %d quick rounds", checked);
    char got[16];
    CHECK(read_within(sv[1], got, sizeof(got), 20) <= 0 || checked < 200,
          "nothing arrived");
    close(sv[0]);
    close(sv[1]);
}

static void test_peer_not_reading(void)
{
    int sv[2];
    pair(sv);
    int small = 4096;
    setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &small, sizeof(small));
    /* fill the socket */
    char junk[4096];
    memset(junk, 'j', sizeof(junk));
    size_t filled = 0;
    for (;;) {
        ssize_t w = write(sv[0], junk, sizeof(junk));
        if (w <= 0)
            break;
        filled += (size_t)w;
    }
    lx_buf_t *b = lx_buf_get(&pool);
    memset(b->data, 'h', 8000);
    b->len = 8000;
    lx_flush_entry_t e = {0};
    lx_flush_hold(&e, sv[0], b);
    usleep(20000); /* many ticks: the thread finds no room */
    pthread_mutex_lock(&F.mu);
    size_t left = lx_buf_avail(b);
    pthread_mutex_unlock(&F.mu);
    CHECK(left > 0, "all of it fit in a full socket?");
    /* the peer reads: the rest follows while still held */
    size_t want = filled + 8000, got = 0;
    char sink[65536];
    double t0 = now_ms();
    while (got < want && now_ms() - t0 < 3000) {
        ssize_t n = read_within(sv[1], sink, sizeof(sink), 100);
        if (n > 0)
            got += (size_t)n;
    }
    CHECK(got == want, "read %zu of %zu", got, want);
    CHECK(lx_flush_release(&e) == 0, "no error");
    CHECK(lx_buf_avail(b) == 0, "left %zu", lx_buf_avail(b));
    done_with(sv, b);
}

static void test_peer_gone(void)
{
    int sv[2];
    pair(sv);
    close(sv[1]);
    lx_buf_t *b = buf_with("nobody reads this");
    lx_flush_entry_t e = {0};
    lx_flush_hold(&e, sv[0], b);
    usleep(20000);
    int err = lx_flush_release(&e);
    CHECK(err == EPIPE || err == ECONNRESET, "error %d", err);
    CHECK(lx_buf_avail(b) == 17, "kept: %zu", lx_buf_avail(b));
    lx_buf_put(&pool, b);
    close(sv[0]);
}

static void test_many_held_at_once(void)
{
    enum { N = 16 };
    int sv[N][2], i;
    lx_buf_t *b[N];
    lx_flush_entry_t e[N];
    memset(e, 0, sizeof(e));
    for (i = 0; i < N; i++) {
        pair(sv[i]);
        b[i] = buf_with("0123456789");
        b[i]->data[0] = (char)('a' + i);
        lx_flush_hold(&e[i], sv[i][0], b[i]);
    }
    CHECK(lx_flush_held() == N, "held %ld", lx_flush_held());
    /* release every other one at once: they are not sent */
    for (i = 0; i < N; i += 2)
        lx_flush_release(&e[i]);
    for (i = 1; i < N; i += 2) {
        char got[16] = {0};
        ssize_t n = read_within(sv[i][1], got, sizeof(got), 2000);
        CHECK(n == 10 && got[0] == 'a' + i, "entry %d: %zd", i, n);
        lx_flush_release(&e[i]);
    }
    CHECK(lx_flush_held() == 0, "held %ld", lx_flush_held());
    for (i = 0; i < N; i++) {
        lx_buf_put(&pool, b[i]);
        close(sv[i][0]);
        close(sv[i][1]);
    }
}

static void test_sleeps_and_wakes(void)
{
    /* a second and a bit without work: the thread waits on its cv */
    usleep((IDLE_TICKS + 300) * LX_FLUSH_TICK_US);
    pthread_mutex_lock(&F.mu);
    int sleeping = F.sleeping;
    pthread_mutex_unlock(&F.mu);
    CHECK(sleeping, "the thread should be asleep");
    int sv[2];
    pair(sv);
    lx_buf_t *b = buf_with("wake up");
    lx_flush_entry_t e = {0};
    lx_flush_hold(&e, sv[0], b);
    char got[16];
    CHECK(read_within(sv[1], got, sizeof(got), 2000) == 7, "woke and sent");
    lx_flush_release(&e);
    done_with(sv, b);
}

static void test_fork_child(void)
{
    int sv[2];
    pair(sv);
    lx_buf_t *b = buf_with("parent");
    lx_flush_entry_t e = {0};
    lx_flush_hold(&e, sv[0], b); /* held across the fork */
    pid_t pid = fork();
    if (pid == 0) {
        /* the child: nothing held, no thread; a hold starts one */
        int ok = !e.linked && lx_flush_held() == 0 && !F.running;
        ok = ok && lx_flush_release(&e) == 0;
        int cv[2];
        pair(cv);
        lx_buf_t *cb = buf_with("child");
        lx_flush_entry_t ce = {0};
        ok = ok && lx_flush_hold(&ce, cv[0], cb) == LX_OK && F.running;
        char got[16];
        ok = ok && read_within(cv[1], got, sizeof(got), 2000) == 5;
        lx_flush_release(&ce);
        _exit(ok ? 0 : 1);
    }
    int status = 0;
    waitpid(pid, &status, 0);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0, "child status %d",
          status);
    char got[16];
    CHECK(read_within(sv[1], got, sizeof(got), 2000) == 6,
          "the parent's thread still sends");
    CHECK(lx_flush_release(&e) == 0 && lx_flush_held() == 0, "released");
    done_with(sv, b);
}

int main(void)
{
    lx_bufpool_init(&pool, 16384, 8);
    test_held_bytes_are_sent();
    test_release_at_once_sends_nothing();
    test_peer_not_reading();
    test_peer_gone();
    test_many_held_at_once();
    test_fork_child();
    test_sleeps_and_wakes();
    lx_bufpool_clear(&pool);
    CHECK(lx_buf_live() == 0, "buffers left: %ld", lx_buf_live());
    return check_done();
}
