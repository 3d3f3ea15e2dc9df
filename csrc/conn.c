/* Connections, from accept to close: their state and timers, the PROXY
 * protocol header and the TLS handshake driven, the request heads the hub
 * reads, keep-alive, lingering close and canned error responses. */
#define _GNU_SOURCE
#include "conn.h"

#include <errno.h>
#include <limits.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "proxyp.h"
#include "tlsconn.h"
#include "wait.h"
#include "xport.h"

#define LINGER_MS 2000

static long live_conns; /* changed and read under the GIL */

long lx_conn_live(void)
{
    return live_conns;
}

static uint64_t ms_of(double s)
{
    uint64_t ms = (uint64_t)(s * 1000.0 + 0.5);
    return ms ? ms : 1;
}

void lx_conns_init(lx_server_t *srv, double t_header, double t_body,
                   double t_write)
{
    srv->conns.next = srv->conns.prev = &srv->conns;
    lx_bufpool_init(&srv->bufs, LX_BUF_DEFAULT_SIZE, 1024);
    lx_timer_list_init(&srv->t_header, ms_of(t_header));
    lx_timer_list_init(&srv->t_body, ms_of(t_body));
    lx_timer_list_init(&srv->t_write, ms_of(t_write));
    lx_timer_list_init(&srv->t_keepalive, srv->keepalive_ms);
    lx_timer_list_init(&srv->t_linger, LINGER_MS);
    lx_timer_list_init(&srv->t_handshake, 10000);
}

/* ------------------------------------------------------------------ */
/* canned responses */

const char *lx_date_line(size_t *len)
{
    static time_t sec;
    static char line[48];
    static size_t n;
    time_t now = time(NULL);
    if (now != sec) {
        struct tm tm;
        gmtime_r(&now, &tm);
        n = strftime(line, sizeof(line), "Date: %a, %d %b %Y %H:%M:%S GMT\r\n",
                     &tm);
        sec = now;
    }
    *len = n;
    return line;
}

static const char *status_text(int status)
{
    switch (status) {
    case 408:
        return "408 Request Timeout";
    case 413:
        return "413 Content Too Large";
    case 414:
        return "414 URI Too Long";
    case 417:
        return "417 Expectation Failed";
    case 426:
        return "426 Upgrade Required";
    case 431:
        return "431 Request Header Fields Too Large";
    case 500:
        return "500 Internal Server Error";
    case 501:
        return "501 Not Implemented";
    case 503:
        return "503 Service Unavailable";
    case 505:
        return "505 HTTP Version Not Supported";
    default:
        return "400 Bad Request";
    }
}

size_t lx_error_response(int status, char *buf, size_t cap, size_t *body_len)
{
    if (status == LX_STATUS_PLAIN_ON_TLS) {
        static const char body[] =
            "400 Bad Request: this port speaks HTTPS; use an https:// URL\n";
        size_t dlen;
        const char *date = lx_date_line(&dlen);
        int n = snprintf(buf, cap,
                         "HTTP/1.1 400 Bad Request\r\nContent-Type: "
                         "text/plain\r\nContent-Length: %zu\r\nConnection: "
                         "close\r\n%.*s\r\n%s",
                         sizeof(body) - 1, (int)dlen, date, body);
        *body_len = sizeof(body) - 1;
        return n < 0 ? 0 : (size_t)n < cap ? (size_t)n : cap - 1;
    }
    const char *text = status_text(status);
    size_t dlen;
    const char *date = lx_date_line(&dlen);
    /* 426 answers a websocket request of another version than ours */
    int n =
        snprintf(buf, cap,
                 "HTTP/1.1 %s\r\n%sContent-Type: text/plain\r\n"
                 "Content-Length: %zu\r\nConnection: close\r\n%.*s\r\n"
                 "%s\n",
                 text, status == 426 ? "Sec-WebSocket-Version: 13\r\n" : "",
                 strlen(text) + 1, (int)dlen, date, text);
    *body_len = strlen(text) + 1;
    return n < 0 ? 0 : (size_t)n < cap ? (size_t)n : cap - 1;
}

/* ------------------------------------------------------------------ */
/* life and death */

static void on_timer(lx_timer_t *t);

lx_conn_t *lx_conn_open(lx_server_t *srv, int fd, int listener,
                        const struct sockaddr_storage *peer)
{
    lx_conn_t *c = PyMem_RawCalloc(1, sizeof(*c));
    if (c == NULL)
        return NULL;
    c->io.fd = fd;
    c->io.kind = LX_IO_CONN;
    c->srv = srv;
    c->listener = (uint16_t)listener;
    lx_timer_init(&c->timer, on_timer);
    c->next = &srv->conns;
    c->prev = srv->conns.prev;
    srv->conns.prev->next = c;
    srv->conns.prev = c;
    srv->nconns++;
    live_conns++;
    if (peer->ss_family == AF_INET) {
        const struct sockaddr_in *sin = (const struct sockaddr_in *)peer;
        c->peer_family = AF_INET;
        memcpy(c->peer_addr, &sin->sin_addr, 4);
        c->peer_port = ntohs(sin->sin_port);
    } else if (peer->ss_family == AF_INET6) {
        const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)peer;
        c->peer_family = AF_INET6;
        memcpy(c->peer_addr, &sin6->sin6_addr, 16);
        c->peer_port = ntohs(sin6->sin6_port);
    } else {
        c->peer_family = AF_UNIX;
    }
    /* The request usually comes right behind the connection: the caller
     * reads it at once, as if an edge had said so. Over TLS the handshake
     * comes first, within its own timeout. */
    if (srv->listeners[listener].tls) {
        c->state = LX_CS_HANDSHAKE;
        c->flags = LX_CONN_F_READABLE;
        lx_conn_arm(c, &srv->t_handshake);
    } else {
        c->flags = LX_CONN_F_READABLE | LX_CONN_F_HEADTIMER;
        lx_conn_arm(c, &srv->t_header);
    }
    /* Before either, a PROXY protocol header, within the same timeout. */
    if (srv->proxy_protocol)
        c->state = LX_CS_PROXY;
    return c;
}

static void release_buf(lx_conn_t *c)
{
    if (c->rbuf != NULL) {
        lx_buf_put(&c->srv->bufs, c->rbuf);
        c->rbuf = NULL;
    }
    c->parsed_len = 0;
}

void lx_conn_close(lx_conn_t *c)
{
    if (c->flags & LX_CONN_F_CLOSED)
        return;
    lx_server_t *srv = c->srv;
    lx_timer_cancel(&c->timer);
    if (c->sq != NULL) {
        lx_timer_cancel(&c->sq->timer);
        if (c->sq->buf != NULL) {
            lx_buf_put(&srv->bufs, c->sq->buf);
            c->sq->buf = NULL;
        }
    }
    if (c->held != NULL)
        (void)lx_flush_release(c->held); /* before the fd goes */
    c->held = NULL;
    lx_tlsconn_end(c);
    Py_CLEAR(c->tls_env);
    close(c->io.fd);
    c->io.fd = -1;
    c->flags |= LX_CONN_F_CLOSED | LX_CONN_F_BROKEN;
    release_buf(c);
    c->prev->next = c->next;
    c->next->prev = c->prev;
    srv->nconns--;
    /* A greenlet still waiting on it hears at the end of the turn; the
     * struct lives until that greenlet has left it. */
    if (c->flags & LX_CONN_F_WAITING) {
        c->wait_result = LX_WAIT_CLOSED;
        lx_conn_queue_resume(c);
    }
    if (c->sq != NULL && c->sq->wait_head != NULL)
        lx_conn_queue_resume(c);
    /* Events of this turn may still name it: freed at the end of it. */
    c->next = srv->dead;
    srv->dead = c;
    if (!srv->in_turn)
        (void)lx_loop_deadline(srv->loop, 0);
}

void lx_conns_free_dead(lx_server_t *srv)
{
    if (srv->dead == NULL)
        return;
    lx_pool_t *p = &srv->pool;
    size_t i, k = 0;
    for (i = p->pending_head; i < p->npending; i++)
        if (!(p->pending[i]->flags & LX_CONN_F_CLOSED))
            p->pending[k++] = p->pending[i];
    p->pending_head = 0;
    p->npending = k;
    lx_conn_t *keep = NULL, *c = srv->dead;
    while (c != NULL) {
        lx_conn_t *next = c->next;
        if (c->waiter != NULL || (c->sq != NULL && c->sq->wait_head != NULL) ||
            (c->flags & (LX_CONN_F_RESUME | LX_CONN_F_OWNED))) {
            c->next = keep;
            keep = c;
        } else {
            PyMem_RawFree(c->sq);
            PyMem_RawFree(c);
            live_conns--;
        }
        c = next;
    }
    srv->dead = keep;
}

/* Register with the loop once something has to wait on it (io.events is
 * 0 until then): a connection served in one go, the request read right
 * after accept and the response written at once, never costs an
 * epoll_ctl. Read interest only: write interest would bring an event for
 * nothing. LX_OK, or LX_ERR (the caller closes). */
static int watch(lx_conn_t *c)
{
    if (LX_LIKELY(c->io.events != 0))
        return LX_OK;
    return lx_loop_add(c->srv->loop, &c->io, LX_EV_READ);
}

/* Closing with unread input would reset the connection and could destroy
 * the response before the client reads it (RFC 9112 9.6): shut down our
 * side and discard what still comes, for a while. */
void lx_conn_linger(lx_conn_t *c)
{
    if (c->tls != NULL && !(c->flags & LX_CONN_F_BROKEN))
        lx_tls_close(c->tls);
    shutdown(c->io.fd, SHUT_WR);
    release_buf(c);
    c->state = LX_CS_LINGER;
    c->held = NULL;
    if (watch(c) < 0) {
        lx_conn_close(c);
        return;
    }
    lx_conn_arm(c, &c->srv->t_linger);
}

static void linger_read(lx_conn_t *c)
{
    char sink[4096];
    for (;;) {
        ssize_t n = lx_sock_recv(c->io.fd, sink, sizeof(sink));
        if (n > 0)
            continue;
        if (n == LX_AGAIN) {
            c->flags &= ~LX_CONN_F_READABLE;
            return;
        }
        lx_conn_close(c);
        return;
    }
}

void lx_conn_reject(lx_conn_t *c, int status)
{
    if (c->flags & LX_CONN_F_CLOSED)
        return;
    char buf[LX_ERROR_RESPONSE_MAX];
    size_t body;
    size_t n = lx_error_response(status, buf, sizeof(buf), &body);
    /* Small enough for any socket buffer: best effort, never blocks. */
    struct iovec iov = {buf, n};
    (void)lx_xp_writev(c->io.fd, c->tls, &iov, 1);
    lx_conn_linger(c);
}

void lx_conn_end(lx_conn_t *c, int how)
{
    /* May the client still be sending? Then the close has to linger.
     * Bytes already buffered or an edge not yet drained say yes at no
     * cost; a client that asked for the close and sent no body has
     * promised to send nothing more (RFC 9112 9.6). */
    int more;
    if (c->flags & LX_CONN_F_BROKEN)
        more = 0;
    else if (c->rbuf != NULL && lx_buf_avail(c->rbuf) > 0)
        more = 1;
    else if (c->flags & LX_CONN_F_EOF)
        more = 0;
    else if (c->flags & LX_CONN_F_READABLE)
        more = 1;
    else if (how != LX_END_PROBE)
        more = how == LX_END_UNREAD;
    else {
        char probe[512];
        more = lx_xp_recv(c->io.fd, c->tls, probe, sizeof(probe)) > 0;
    }
    if (more)
        lx_conn_linger(c);
    else
        lx_conn_close(c);
}

/* ------------------------------------------------------------------ */
/* the head of a request */

/* Whether the buffered bytes hold a whole head: an empty line after the
 * request line (leading empty lines skipped, as the parser does). */
static int head_whole(lx_conn_t *c)
{
    lx_buf_t *b = c->rbuf;
    const char *p = lx_buf_head(b), *e = p + lx_buf_avail(b);
    while (e - p >= 2 && p[0] == '\r' && p[1] == '\n')
        p += 2;
    if (e - p < 4)
        return 0;
    /* Most often the buffer ends with the head it holds. */
    if (memcmp(e - 4, "\r\n\r\n", 4) == 0)
        return 1;
    return memmem(p, (size_t)(e - p), "\r\n\r\n", 4) != NULL;
}

int lx_conn_parse_head(lx_conn_t *c, lx_http1_req_t *h, int *status)
{
    lx_server_t *srv = c->srv;
    lx_buf_t *b = c->rbuf;
    size_t avail = lx_buf_avail(b);
    *status = 400;
    h->num_headers = srv->limits.max_fields + 1;
    int rc =
        lx_http1_parse_request(lx_buf_head(b), avail, h, &srv->limits, status);
    c->parsed_len = (uint32_t)avail;
    if (rc > 0)
        return rc;
    if (rc == LX_AGAIN) {
        if (avail < srv->max_head)
            return 0;
        *status = 431;
    }
    return -1;
}

/* Whether new bytes since the last parse can change its outcome: a new
 * line end, or enough bytes to trip a length limit. Keeps a trickled head
 * from being re-parsed byte after byte. */
static int head_worth_parsing(lx_conn_t *c)
{
    lx_buf_t *b = c->rbuf;
    size_t avail = lx_buf_avail(b);
    size_t from = c->parsed_len;
    if (from >= avail)
        return from == 0 && avail > 0;
    if (memchr(lx_buf_head(b) + from, '\n', avail - from) != NULL)
        return 1;
    return avail - from >= 1024 || avail >= c->srv->limits.max_request_line;
}

int lx_conn_read_head(lx_conn_t *c)
{
    lx_server_t *srv = c->srv;
    while (c->flags & LX_CONN_F_READABLE) {
        ssize_t n = lx_conn_fill(c, srv->max_head + LX_READ_RESERVE);
        if (n == LX_AGAIN) {
            if (c->rbuf != NULL && lx_buf_avail(c->rbuf) == 0)
                release_buf(c);
            break;
        }
        if (n <= 0) {
            if (n == LX_ERR && errno == ENOBUFS)
                lx_conn_reject(c, 431);
            else
                lx_conn_close(c);
            return 0;
        }
        /* A whole head goes to a worker, which parses it; one still
         * arriving is parsed here, so that an error or a limit is answered
         * as soon as it can be told. */
        if (head_whole(c))
            return 1;
        if (head_worth_parsing(c)) {
            int status;
            int rc = lx_conn_parse_head(c, &srv->scratch, &status);
            if (rc < 0) {
                lx_conn_reject(c, status);
                return 0;
            }
            if (rc > 0)
                return 1;
        }
        if (!(c->flags & LX_CONN_F_HEADTIMER)) {
            /* A head in progress: its timeout is armed once, from here (a
             * head that came whole never needed it). */
            lx_conn_arm(c, &srv->t_header);
            c->flags |= LX_CONN_F_HEADTIMER;
        }
    }
    /* More of the head has to come. */
    if (watch(c) < 0)
        lx_conn_close(c);
    return 0;
}

/* ------------------------------------------------------------------ */
/* what comes before the first head */

/* c's PROXY protocol header (proxyp.c): peeked, then exactly its bytes
 * consumed, so that what follows (a TLS handshake, a request) stays in
 * the socket for the next stage. 1: read, and c's peer is the client it
 * names (or stays the socket's); 0: not whole yet, or c was closed without
 * a response: an untrusted peer, a malformed or missing header. */
static int proxy_read(lx_conn_t *c)
{
    lx_server_t *srv = c->srv;
    if (!lx_fwd_trusted(&srv->fwd_allow, c->peer_family, c->peer_addr)) {
        lx_conn_close(c);
        return 0;
    }
    uint8_t head[LX_PP_MAX];
    lx_pp_t pp;
    ssize_t n = lx_sock_peek(c->io.fd, head, sizeof(head));
    int len = n > 0 ? lx_pp_parse(head, (size_t)n, &pp) : LX_PP_MORE;
    if (n == LX_AGAIN || (len == LX_PP_MORE && n > 0)) {
        /* All there is was peeked: the next bytes bring an edge, unless
         * the client has said all it will. */
        c->flags &= (uint16_t)~LX_CONN_F_READABLE;
        if ((c->flags & LX_CONN_F_EOF) || watch(c) < 0)
            lx_conn_close(c);
        return 0;
    }
    if (n <= 0 || len < 0 ||
        lx_sock_recv(c->io.fd, head, (size_t)len) != len) {
        lx_conn_close(c);
        return 0;
    }
    if (pp.has_addr) {
        c->peer_family = pp.family;
        memcpy(c->peer_addr, pp.addr, sizeof(c->peer_addr));
        c->peer_port = pp.port;
    }
    if (n == len && n < (ssize_t)sizeof(head))
        c->flags &= (uint16_t)~LX_CONN_F_READABLE; /* nothing behind it */
    return 1;
}

int lx_conn_begin(lx_conn_t *c)
{
    if (c->state == LX_CS_PROXY) {
        if (!proxy_read(c))
            return 0;
        /* The timer armed at accept runs on: the handshake's or the
         * head's. */
        c->state =
            c->srv->listeners[c->listener].tls ? LX_CS_HANDSHAKE : LX_CS_HEAD;
    }
    if (c->state != LX_CS_HANDSHAKE)
        return lx_conn_read_head(c);
    switch (lx_tlsconn_handshake(c)) {
    case LX_HS_DONE:
        break;
    case LX_HS_WAIT:
        return 0;
    case LX_HS_PLAIN:
        lx_conn_reject(c, LX_STATUS_PLAIN_ON_TLS);
        return 0;
    default:
        lx_conn_close(c);
        return 0;
    }
    /* Its first request may have come with the handshake's end. */
    c->state = LX_CS_HEAD;
    c->flags |= LX_CONN_F_READABLE | LX_CONN_F_HEADTIMER;
    lx_conn_arm(c, &c->srv->t_header);
    return lx_conn_read_head(c);
}

int lx_conn_next_head(lx_conn_t *c, lx_http1_req_t *h, int *status)
{
    if (c->flags & LX_CONN_F_CLOSED)
        return -2;
    /* Maybe pipelined, maybe in the socket already: read while an edge
     * says there is more, since the hub will not hear of it again. */
    for (;;) {
        lx_buf_t *b = c->rbuf;
        if (b != NULL && lx_buf_avail(b) > 0) {
            int rc = lx_conn_parse_head(c, h, status);
            if (rc != 0)
                return rc;
        }
        if (!(c->flags & LX_CONN_F_READABLE))
            return 0;
        ssize_t n = lx_conn_fill(c, c->srv->max_head + LX_READ_RESERVE);
        if (n == 0 || n == LX_ERR)
            return -2;
        if (n == LX_AGAIN)
            return 0;
    }
}

void lx_conn_keep(lx_conn_t *c)
{
    lx_server_t *srv = c->srv;
    if (c->flags & LX_CONN_F_CLOSED)
        return;
    if (watch(c) < 0) {
        lx_conn_close(c);
        return;
    }
    c->state = LX_CS_HEAD;
    c->held = NULL;
    c->parsed_len = 0;
    if (c->rbuf != NULL && lx_buf_avail(c->rbuf) > 0) {
        lx_conn_arm(c, &srv->t_header);
        c->flags |= LX_CONN_F_HEADTIMER;
    } else {
        release_buf(c);
        lx_conn_arm(c, &srv->t_keepalive);
    }
}

/* ------------------------------------------------------------------ */
/* waits */

static void on_timer(lx_timer_t *t)
{
    lx_conn_t *c = LX_STRUCT_FROM_MEMBER(lx_conn_t, timer, t);
    switch (c->state) {
    case LX_CS_HEAD:
        if (c->rbuf != NULL && lx_buf_avail(c->rbuf) > 0)
            lx_conn_reject(c, 408);
        else
            lx_conn_close(c); /* idle keep-alive connection */
        break;
    case LX_CS_ACTIVE:
        if ((c->flags & LX_CONN_F_WAITING) && c->wait_for != 0)
            lx_conn_wake(c, LX_WAIT_TIMEOUT);
        break;
    case LX_CS_QUEUED:
        break; /* a worker takes it this turn */
    default:
        lx_conn_close(c);
        break;
    }
}

int lx_conn_event(lx_conn_t *c, unsigned ev)
{
    if (c->flags & LX_CONN_F_CLOSED)
        return 0;
    if (ev & LX_EV_READ)
        c->flags |= LX_CONN_F_READABLE;
    if (ev & LX_EV_EOF)
        c->flags |= LX_CONN_F_EOF;
    switch (c->state) {
    case LX_CS_HEAD:
        if (ev & LX_EV_READ)
            return lx_conn_read_head(c);
        break;
    case LX_CS_ACTIVE:
        if ((ev & LX_EV_WRITE) && c->sq != NULL) {
            if (lx_conn_drain(c) < 0) {
                lx_conn_close(c);
                return 0;
            }
            if (c->sq->wait_head != NULL &&
                lx_conn_queued(c) <= c->srv->ws_max_queue)
                lx_conn_wake_writers(c);
            if (c->flags & LX_CONN_F_CLOSED)
                return 0;
        }
        if ((c->flags & LX_CONN_F_WAITING) && (ev & c->wait_for))
            lx_conn_wake(c, LX_WAIT_READY);
        break;
    case LX_CS_LINGER:
        if (ev & LX_EV_READ)
            linger_read(c);
        break;
    case LX_CS_HANDSHAKE:
    case LX_CS_PROXY:
        return lx_conn_begin(c);
    }
    return 0;
}

/* A websocket's queue has not moved for the write timeout: the client
 * is lost. */
static void on_sendq_timer(lx_timer_t *t)
{
    lx_conn_close(LX_STRUCT_FROM_MEMBER(lx_sendq_t, timer, t)->conn);
}

int lx_conn_sendq_open(lx_conn_t *c)
{
    if (c->sq != NULL)
        return 0;
    c->sq = PyMem_RawCalloc(1, sizeof(*c->sq));
    if (c->sq == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    c->sq->conn = c;
    lx_timer_init(&c->sq->timer, on_sendq_timer);
    return 0;
}

/* ------------------------------------------------------------------ */
/* all of them */

uint64_t lx_conns_deadline(lx_server_t *srv)
{
    lx_timer_list_t *lists[] = {&srv->t_header, &srv->t_body,
                                &srv->t_write,  &srv->t_keepalive,
                                &srv->t_linger, &srv->t_handshake};
    uint64_t next = LX_TIMER_NEVER;
    size_t i;
    for (i = 0; i < sizeof(lists) / sizeof(lists[0]); i++) {
        uint64_t d = lx_timer_list_next(lists[i]);
        if (d < next)
            next = d;
    }
    return next;
}

void lx_conns_expire(lx_server_t *srv)
{
    lx_timer_list_t *lists[] = {&srv->t_header, &srv->t_body,
                                &srv->t_write,  &srv->t_keepalive,
                                &srv->t_linger, &srv->t_handshake};
    size_t i;
    for (i = 0; i < sizeof(lists) / sizeof(lists[0]); i++)
        lx_timer_list_expire(lists[i], srv->now);
}

void lx_conns_close_idle(lx_server_t *srv, int fresh_too)
{
    /* A head in progress may still finish. A connection with no byte
     * buffered and its head timer running has sent nothing since it was
     * accepted (between requests that timer is the keep-alive one). */
    lx_conn_t *c = srv->conns.next;
    while (c != &srv->conns) {
        lx_conn_t *next = c->next;
        if ((c->state == LX_CS_HEAD &&
             (c->rbuf == NULL || lx_buf_avail(c->rbuf) == 0) &&
             (fresh_too || !(c->flags & LX_CONN_F_HEADTIMER))) ||
            ((c->state == LX_CS_HANDSHAKE || c->state == LX_CS_PROXY) &&
             fresh_too))
            lx_conn_close(c);
        else if ((c->flags & LX_CONN_F_WS) && (c->flags & LX_CONN_F_WAITING) &&
                 c->wait_for == LX_EV_READ) {
            /* A websocket waiting for its client: its reader hears of the
             * stop (and closes with 1001, "going away"). */
            c->wait_for = 0;
            c->wait_result = LX_WAIT_STOP;
            lx_conn_queue_resume(c);
        }
        c = next;
    }
}

void lx_conns_close_all(lx_server_t *srv)
{
    while (srv->conns.next != &srv->conns)
        lx_conn_close(srv->conns.next);
}
