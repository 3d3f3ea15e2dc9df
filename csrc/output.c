/* A request's output: the buffer that gathers its head and small blocks,
 * the loan of that buffer to the flusher thread while the application
 * runs, chunked framing, and the writes, sendfile included. */
#include "output.h"

#include "wait.h"

/* Pipelined responses gather up to this much before they are sent. */
#define DEFER_MAX 65536
/* The most r->out holds: a head of up to 1 MiB and the batch around it. */
#define OUT_CAP ((1u << 20) + DEFER_MAX * 2)
/* A last block up to this size is copied behind the head, which then
 * leaves with one send() rather than a sendmsg of two iovecs. */
#define SMALL_BODY 2048

static int closed(lx_req_t *r)
{
    PyErr_SetString(r->srv->st->ClientDisconnected,
                    "the connection is closed");
    return -1;
}

int lx_out_lend(lx_req_t *r)
{
    if (r->out == NULL || lx_buf_avail(r->out) == 0 ||
        (r->conn->flags & LX_CONN_F_BROKEN))
        return 0;
    /* The flusher thread writes to the socket itself: not over TLS,
     * whose state is the worker's (its bytes go now instead). */
    if (r->conn->tls == NULL &&
        lx_flush_hold(&r->held, r->conn->io.fd, r->out) == LX_OK)
        return 0;
    return lx_out_flush(r);
}

int lx_out_reserve(lx_req_t *r, size_t n)
{
    lx_out_reclaim(r);
    if (r->out == NULL) {
        r->out = lx_buf_get(&r->srv->bufs);
        if (r->out == NULL) {
            PyErr_NoMemory();
            return -1;
        }
    }
    if (lx_buf_reserve(&r->srv->bufs, &r->out, n, OUT_CAP) < 0) {
        PyErr_SetString(PyExc_ValueError, "response head too large");
        return -1;
    }
    return 0;
}

/* Write iov after whatever r->out holds, which goes first (iov[0] is it,
 * or empty), and empty r->out. */
static int send_all(lx_req_t *r, struct iovec *iov, int n)
{
    int rc = lx_conn_writev(r->conn, iov, n, "the response");
    if (r->out != NULL)
        r->out->len = r->out->off = 0;
    return rc;
}

int lx_out_flush(lx_req_t *r)
{
    lx_out_reclaim(r);
    if (r->out == NULL || lx_buf_avail(r->out) == 0)
        return 0;
    if (r->conn->flags & LX_CONN_F_BROKEN) {
        r->out->len = r->out->off = 0;
        return closed(r);
    }
    struct iovec iov = {lx_buf_head(r->out), lx_buf_avail(r->out)};
    return send_all(r, &iov, 1);
}

/* Whether the rest of the batch can wait: another request is already
 * buffered, so its response can share the next write. */
static int can_defer(lx_req_t *r, size_t more)
{
    lx_buf_t *b = r->conn->rbuf;
    return r->body_done && !r->resp_close && b != NULL &&
           lx_buf_avail(b) > 0 &&
           (r->out ? lx_buf_avail(r->out) : 0) + more < DEFER_MAX;
}

/* Copy iov[1..n) (len bytes) behind what r->out holds. */
static int gather(lx_req_t *r, const struct iovec *iov, int n, size_t len)
{
    if (lx_out_reserve(r, len) < 0)
        return -1;
    for (int i = 1; i < n; i++)
        lx_out_put(r, iov[i].iov_base, iov[i].iov_len);
    return 0;
}

/* "<hex>\r\n" into buf (at least 20 bytes); returns its length. */
static size_t chunk_size_line(char *buf, size_t len)
{
    static const char hex[] = "0123456789abcdef";
    char tmp[16];
    size_t k = 0, i;
    do {
        tmp[k++] = hex[len & 15];
        len >>= 4;
    } while (len);
    for (i = 0; i < k; i++)
        buf[i] = tmp[k - 1 - i];
    buf[k] = '\r';
    buf[k + 1] = '\n';
    return k + 2;
}

int lx_out_body(lx_req_t *r, const char *data, size_t len, int last)
{
    lx_out_reclaim(r);
    if (r->conn->flags & LX_CONN_F_BROKEN)
        return closed(r);
    if (r->resp_nobody)
        len = 0;
    if (r->resp_length >= 0 && r->resp_sent + len > (uint64_t)r->resp_length) {
        /* Longer than announced: send what was announced, then close. */
        len = (size_t)((uint64_t)r->resp_length - r->resp_sent);
        r->resp_close = 1;
    }
    if (last && !r->resp_chunked && len > 0 && len <= SMALL_BODY &&
        r->out != NULL && lx_buf_avail(r->out) > 0) {
        if (lx_out_reserve(r, len) < 0)
            return -1;
        lx_out_put(r, data, len);
        r->resp_sent += len;
        len = 0;
    }
    char chunk_head[24];
    struct iovec iov[5];
    int n = 0;
    size_t have = r->out != NULL ? lx_buf_avail(r->out) : 0;
    iov[n].iov_base = have ? lx_buf_head(r->out) : NULL;
    iov[n++].iov_len = have;
    if (len > 0 && r->resp_chunked) {
        iov[n].iov_base = chunk_head;
        iov[n++].iov_len = chunk_size_line(chunk_head, len);
    }
    if (len > 0) {
        iov[n].iov_base = (void *)data;
        iov[n++].iov_len = len;
    }
    if (len > 0 && r->resp_chunked) {
        iov[n].iov_base = "\r\n";
        iov[n++].iov_len = 2;
    }
    if (last && r->resp_chunked) {
        iov[n].iov_base = "0\r\n\r\n";
        iov[n++].iov_len = 5;
    }
    r->resp_sent += len;
    size_t more = 0;
    for (int i = 1; i < n; i++)
        more += iov[i].iov_len;
    /* Small blocks of an iterable gather up to one pooled buffer; the body
     * loop lends them to the flusher meanwhile. */
    if ((last && can_defer(r, more)) ||
        (r->coalesce && !last && have + more <= r->srv->bufs.size))
        return gather(r, iov, n, more);
    return send_all(r, iov, n);
}

int lx_out_whole(lx_req_t *r, struct iovec *iov, int n, size_t len)
{
    lx_out_reclaim(r);
    if (r->conn->flags & LX_CONN_F_BROKEN)
        return closed(r);
    int defer = can_defer(r, len);
    if (defer || len <= SMALL_BODY) {
        if (gather(r, iov, n, len) < 0)
            return -1;
        return defer ? 0 : lx_out_flush(r);
    }
    return send_all(r, iov, n);
}

int lx_out_end(lx_req_t *r, int framed)
{
    if (!framed && r->resp_chunked && !r->resp_nobody) {
        if (lx_out_reserve(r, 5) < 0)
            return -1;
        LX_OUT_LIT(r, "0\r\n\r\n");
    }
    if (r->resp_length >= 0 && !r->resp_nobody &&
        r->resp_sent < (uint64_t)r->resp_length)
        r->resp_close = 1; /* shorter than announced: only a close tells */
    if (!can_defer(r, 0))
        return lx_out_flush(r);
    return 0;
}

int lx_out_sendfile(lx_req_t *r, int fd, off_t *pos, uint64_t size)
{
    if (lx_out_flush(r) < 0)
        return -1;
    int64_t n = lx_conn_sendfile(r->conn, fd, pos, size);
    if (n < 0)
        return -1;
    r->resp_sent += (uint64_t)n;
    return 0;
}

void lx_out_release(lx_req_t *r)
{
    (void)lx_flush_release(&r->held);
    if (r->out != NULL) {
        lx_buf_put(&r->srv->bufs, r->out);
        r->out = NULL;
    }
}
