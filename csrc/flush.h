/* Held output of streamed responses, and the thread that keeps it moving.
 * Pure C.
 *
 * A streamed response (an iterable of unknown length) yields blocks that
 * are often small. Sending each at once costs a syscall and a TCP segment
 * per block; gathering them costs latency when the application is slow to
 * produce the next one. PEP 3333 allows a server to hold a block only if it
 * "will continue transmission even while the application is producing its
 * next block". So a worker that holds bytes hands them to this module
 * before it asks the application for the next block, and takes them back
 * afterwards; if the application is still busy two ticks later (a tick is
 * LX_FLUSH_TICK_US), a small thread of its own sends the held bytes.
 *
 * The thread only ever touches the fd and buffer of entries that are held,
 * and only under the module's lock: once lx_flush_release returns, it no
 * longer touches them. It is started on first use, sleeps on a condition
 * variable after a second without work, and is restarted in a forked
 * child. */
#ifndef LX_FLUSH_H
#define LX_FLUSH_H

#include <stdint.h>

#include "buf.h"

#define LX_FLUSH_TICK_US 1000

typedef struct lx_flush_entry {
    struct lx_flush_entry *prev, *next;
    int fd;
    int error;      /* errno of a send that failed: no more tries */
    lx_buf_t *buf;  /* the held bytes: [off, len) */
    uint64_t tick;  /* the module's tick count when it was held */
    uint8_t linked; /* held right now */
} lx_flush_entry_t;

/* Hold buf's readable bytes for fd until lx_flush_release. 0, or LX_ERR
 * when no thread could be started (send the bytes now instead). */
int lx_flush_hold(lx_flush_entry_t *e, int fd, lx_buf_t *buf);
/* Take the bytes back: buf's off/len say what is still unsent. Returns
 * the errno of a send that failed (the connection is broken), else 0.
 * Safe on an entry that is not held. */
int lx_flush_release(lx_flush_entry_t *e);
/* Debug counters: entries held now, sends the thread made. */
long lx_flush_held(void);
long lx_flush_sends(void);

#endif
