/* A request's output (output.c): the buffer that gathers its head and
 * small blocks, the loan of that buffer to the flusher thread while the
 * application runs, chunked framing, and the writes, sendfile included. */
#ifndef LX_OUTPUT_H
#define LX_OUTPUT_H

#include "engine.h"

#include <sys/types.h>
#include <sys/uio.h>

/* Before the application runs: lend what r->out holds to the flusher
 * thread, which sends it if the application takes a while (when no thread
 * can start, it is sent now). 0, or -1 with an exception. */
int lx_out_lend(lx_req_t *r);
/* After: take it back. Every path that writes or touches r->out calls
 * this first; a send the flusher found failing breaks the connection. */
static inline void lx_out_reclaim(lx_req_t *r)
{
    if (LX_UNLIKELY(r->held.linked) && lx_flush_release(&r->held) != 0)
        r->conn->flags |= LX_CONN_F_BROKEN;
}
/* Room for n more bytes in r->out: 0, or -1 with an exception. */
int lx_out_reserve(lx_req_t *r, size_t n);
static inline void lx_out_put(lx_req_t *r, const void *p, size_t n)
{
    memcpy(r->out->data + r->out->len, p, n);
    r->out->len += n;
}
#define LX_OUT_LIT(r, s) lx_out_put(r, s, sizeof(s) - 1)
/* Send what r->out holds: 0, or -1 with an exception. */
int lx_out_flush(lx_req_t *r);
/* One block of the body, its head already in r->out: framed (chunked,
 * or cut to the Content-Length) and sent, or gathered with the batch's
 * output. last: the body ends with it (data may then be NULL, len 0).
 * 0, or -1 with an exception. */
int lx_out_body(lx_req_t *r, const char *data, size_t len, int last);
/* A whole body known at once: iov[1..n) after r->out's bytes in iov[0],
 * len bytes in all, already cut to the Content-Length. */
int lx_out_whole(lx_req_t *r, struct iovec *iov, int n, size_t len);
/* The body ended: its framing completed (unless the last block had
 * framed the end), sent unless it can wait for the next response of the
 * batch. */
int lx_out_end(lx_req_t *r, int framed);
/* size bytes of the file fd from *pos (advanced) by sendfile, after what
 * r->out holds: 0, or -1 with an exception. */
int lx_out_sendfile(lx_req_t *r, int fd, off_t *pos, uint64_t size);
/* The worker leaves the connection: the buffer goes back to the pool. */
void lx_out_release(lx_req_t *r);

#endif
