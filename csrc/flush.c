/* Held output of streamed responses: see flush.h. Pure C. */
#define _GNU_SOURCE
#include "flush.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <time.h>

#include "sock.h"

/* Ticks without any held entry before the thread goes to sleep. */
#define IDLE_TICKS 1000

static struct {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    lx_flush_entry_t list; /* sentinel of the held entries */
    uint64_t tick;
    int running;  /* the thread exists in this process */
    int sleeping; /* it waits on cv until an entry is held */
    int atfork;   /* fork handlers registered */
    long held;
    atomic_long sends;
} F = {
    .mu = PTHREAD_MUTEX_INITIALIZER,
    .cv = PTHREAD_COND_INITIALIZER,
    .list = {.prev = &F.list, .next = &F.list},
};

/* One tick's work, under the lock: send what has been held for two
 * ticks, i.e. at least one whole tick. */
static void flush_due(void)
{
    lx_flush_entry_t *e;
    for (e = F.list.next; e != &F.list; e = e->next) {
        size_t n = lx_buf_avail(e->buf);
        if (e->error || n == 0 || F.tick - e->tick < 2)
            continue;
        struct iovec iov = {lx_buf_head(e->buf), n};
        ssize_t w = lx_sock_writev(e->fd, &iov, 1);
        if (w > 0) {
            lx_buf_consume(e->buf, (size_t)w);
            atomic_fetch_add(&F.sends, 1);
        } else if (w == LX_ERR) {
            e->error = errno ? errno : EPIPE;
        }
        /* LX_AGAIN: the peer is not reading; try again next tick. */
    }
}

static void *flusher_main(void *arg)
{
    (void)arg;
    unsigned idle = 0;
    pthread_mutex_lock(&F.mu);
    for (;;) {
        if (F.list.next != &F.list) {
            idle = 0;
        } else if (++idle > IDLE_TICKS) {
            F.sleeping = 1;
            while (F.sleeping)
                pthread_cond_wait(&F.cv, &F.mu);
            idle = 0;
        }
        pthread_mutex_unlock(&F.mu);
        struct timespec ts = {0, LX_FLUSH_TICK_US * 1000L};
        while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
            ;
        pthread_mutex_lock(&F.mu);
        F.tick++;
        flush_due();
    }
    return NULL;
}

static void fork_prepare(void)
{
    pthread_mutex_lock(&F.mu);
}

static void fork_parent(void)
{
    pthread_mutex_unlock(&F.mu);
}

/* The child has no flusher thread: forget it and what it held (each
 * worker still has its bytes and sends them itself). */
static void fork_child(void)
{
    lx_flush_entry_t *e = F.list.next;
    while (e != &F.list) {
        lx_flush_entry_t *next = e->next;
        e->linked = 0;
        e = next;
    }
    F.list.prev = F.list.next = &F.list;
    F.held = 0;
    F.running = 0;
    F.sleeping = 0;
    pthread_mutex_init(&F.mu, NULL);
    pthread_cond_init(&F.cv, NULL);
}

/* Under the lock. */
static int start_thread(void)
{
    if (!F.atfork) {
        if (pthread_atfork(fork_prepare, fork_parent, fork_child) != 0)
            return LX_ERR;
        F.atfork = 1;
    }
    pthread_attr_t attr;
    if (pthread_attr_init(&attr) != 0)
        return LX_ERR;
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    pthread_attr_setstacksize(&attr, 64 * 1024);
    /* Signals stay with the threads that handle them (Python's main). */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    pthread_t th;
    int rc = pthread_create(&th, &attr, flusher_main, NULL);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    pthread_attr_destroy(&attr);
    if (rc != 0) {
        errno = rc;
        return LX_ERR;
    }
    F.running = 1;
    return LX_OK;
}

int lx_flush_hold(lx_flush_entry_t *e, int fd, lx_buf_t *buf)
{
    pthread_mutex_lock(&F.mu);
    if (!F.running && start_thread() < 0) {
        pthread_mutex_unlock(&F.mu);
        return LX_ERR;
    }
    e->fd = fd;
    e->buf = buf;
    e->error = 0;
    e->tick = F.tick;
    e->prev = F.list.prev;
    e->next = &F.list;
    F.list.prev->next = e;
    F.list.prev = e;
    e->linked = 1;
    F.held++;
    if (F.sleeping) {
        F.sleeping = 0;
        pthread_cond_signal(&F.cv);
    }
    pthread_mutex_unlock(&F.mu);
    return LX_OK;
}

int lx_flush_release(lx_flush_entry_t *e)
{
    /* linked is written only by the holding thread (and a fork child). */
    if (!e->linked)
        return 0;
    pthread_mutex_lock(&F.mu);
    e->prev->next = e->next;
    e->next->prev = e->prev;
    e->prev = e->next = NULL;
    e->linked = 0;
    F.held--;
    int err = e->error;
    pthread_mutex_unlock(&F.mu);
    return err;
}

long lx_flush_held(void)
{
    pthread_mutex_lock(&F.mu);
    long n = F.held;
    pthread_mutex_unlock(&F.mu);
    return n;
}

long lx_flush_sends(void)
{
    return atomic_load(&F.sends);
}
