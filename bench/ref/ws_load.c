/* ws_load: the websocket load client of bench/ws.py (no third-party code).
 *
 *   ws_load echo HOST PORT PATH CONNS SECONDS [INFLIGHT [SIZE [WARMUP]]]
 *   ws_load hold HOST PORT PATH CONNS
 *
 * One thread, epoll, non-blocking sockets.  Every connection does the
 * opening handshake (RFC 6455: the Sec-WebSocket-Accept checked with SHA-1)
 * with at most MAX_PENDING handshakes under way at once, so that no
 * server's listen backlog overflows.  Client frames are masked, each with a
 * mask of its own.
 *
 * echo: each of CONNS connections keeps INFLIGHT (default 1) text messages
 * of SIZE bytes (default 32) in flight: it sends a message when its echo
 * comes back, byte for byte checked.  Prints to stdout, one line each:
 *     open N seconds=T
 *     start                       (after WARMUP seconds, default 1)
 *     end messages=M seconds=S errors=E p50_us=A p99_us=B
 * messages: echoes received in the SECONDS after "start"; p50/p99: the time
 * from a message's send to its echo, in microseconds.
 *
 * hold: opens CONNS websockets, prints "open N seconds=T failed=F" and
 * then takes commands from stdin, one a line:
 *     b   connection 0 sends "broadcast SEQ ...": prints
 *         "bcast us=T got=K" once all open connections have the message
 *         (T: microseconds from the send to the last one), or after 30 s
 *     a   prints "alive K": the connections the server has not closed
 *     q   exits (every socket closed with a reset: no TIME_WAIT left)
 * Any other frame a connection receives is counted ("other" in the bcast
 * line); pings are answered.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define BUF 4096
#define MAX_PENDING 64
#define MAX_INFLIGHT 64
#define HIST_US 1000000 /* latency histogram: 1 us buckets up to 1 s */

enum { ST_CONNECTING, ST_HANDSHAKE, ST_OPEN, ST_DEAD };

struct conn {
    int fd;
    int state;
    int inlen;
    int outlen;
    int outoff;
    int want_out;
    int got_seq; /* hold: the last broadcast seen */
    int nsent;   /* echo: sends in flight (ring of send times) */
    int head;
    double sent_at[MAX_INFLIGHT];
    char key[25];
    unsigned char in[BUF];
    unsigned char out[BUF];
};

static struct conn *conns;
static int nconns, epfd;
static const char *host, *path;
static int port;
static struct sockaddr_in addr;
static int msg_size = 32, inflight = 1;
static unsigned char payload[65536];
static uint64_t rng = 0x9E3779B97F4A7C15ull;
static long errors, others;
static unsigned *hist;
static long hist_n, hist_over;
static int measuring;
static long messages;
static int is_hold;
static int bcast_seq, bcast_got, bcast_want;
static double bcast_t0;

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static uint32_t rnd32(void) {
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (uint32_t)(rng >> 11);
}

/* ---------------------------------------------------------- keys */

/* The accept key the server must answer with: the engine's own
 * lx_ws_accept (its SHA-1 is checked against FIPS vectors in tests/c). */
#include "../../csrc/utf8.c"
#include "../../csrc/ws.c"

/* A Sec-WebSocket-Key: 16 random bytes in base64 (21 characters of 6
 * bits, one of the 2 bits left, the padding). */
static void random_key(char out[25]) {
    static const char t[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    for (int i = 0; i < 21; i++)
        out[i] = t[rnd32() & 63];
    out[21] = "AQgw"[rnd32() & 3];
    memcpy(out + 22, "==", 3);
}

/* ---------------------------------------------------------- connections */

static void die(const char *what) {
    perror(what);
    exit(2);
}

static void arm(struct conn *c, int idx) {
    struct epoll_event ev = {.events = EPOLLIN | (c->want_out ? EPOLLOUT : 0),
                             .data.u32 = (uint32_t)idx};
    if (epoll_ctl(epfd, EPOLL_CTL_MOD, c->fd, &ev)) die("epoll_ctl");
}

static int pending; /* connections connecting or in their handshake */
static int next_conn, opened, failed;

static void kill_conn(struct conn *c, int counted) {
    if (c->state == ST_DEAD) return;
    if (c->state != ST_OPEN) {
        pending--;
        failed++;
    } else if (counted) {
        errors++;
    }
    epoll_ctl(epfd, EPOLL_CTL_DEL, c->fd, NULL);
    struct linger lg = {1, 0};
    setsockopt(c->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
    close(c->fd);
    c->state = ST_DEAD;
}

/* Queue bytes and write what the socket takes. */
static void send_bytes(struct conn *c, int idx, const void *p, int n) {
    if (c->outlen - c->outoff + n > BUF) {
        kill_conn(c, 1);
        return;
    }
    if (c->outoff && c->outoff == c->outlen) c->outoff = c->outlen = 0;
    if (c->outlen + n > BUF) {
        memmove(c->out, c->out + c->outoff, c->outlen - c->outoff);
        c->outlen -= c->outoff;
        c->outoff = 0;
    }
    memcpy(c->out + c->outlen, p, n);
    c->outlen += n;
    while (c->outoff < c->outlen) {
        ssize_t w = write(c->fd, c->out + c->outoff, c->outlen - c->outoff);
        if (w < 0) {
            if (errno == EAGAIN) break;
            kill_conn(c, 1);
            return;
        }
        c->outoff += (int)w;
    }
    int want = c->outoff < c->outlen;
    if (want != c->want_out) {
        c->want_out = want;
        arm(c, idx);
    }
}

static int frame(unsigned char *f, int opcode, const unsigned char *p,
                 int n) {
    int h = 0;
    f[h++] = (unsigned char)(0x80 | opcode);
    if (n < 126) {
        f[h++] = (unsigned char)(0x80 | n);
    } else {
        f[h++] = 0x80 | 126;
        f[h++] = (unsigned char)(n >> 8);
        f[h++] = (unsigned char)n;
    }
    uint32_t m = rnd32();
    unsigned char mk[4] = {(unsigned char)m, (unsigned char)(m >> 8),
                           (unsigned char)(m >> 16), (unsigned char)(m >> 24)};
    memcpy(f + h, mk, 4);
    h += 4;
    for (int i = 0; i < n; i++) f[h + i] = p[i] ^ mk[i & 3];
    return h + n;
}

static void send_echo(struct conn *c, int idx, int k) {
    unsigned char buf[MAX_INFLIGHT * 200];
    int n = 0;
    double t = now();
    for (int i = 0; i < k; i++) {
        n += frame(buf + n, 1, payload, msg_size);
        c->sent_at[(c->head + c->nsent) % MAX_INFLIGHT] = t;
        c->nsent++;
    }
    send_bytes(c, idx, buf, n);
}

static void start_conn(int idx) {
    struct conn *c = &conns[idx];
    c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    if (c->fd < 0) die("socket");
    int one = 1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    c->state = ST_CONNECTING;
    pending++;
    if (connect(c->fd, (struct sockaddr *)&addr, sizeof addr) &&
        errno != EINPROGRESS)
        die("connect");
    struct epoll_event ev = {.events = EPOLLOUT, .data.u32 = (uint32_t)idx};
    if (epoll_ctl(epfd, EPOLL_CTL_ADD, c->fd, &ev)) die("epoll_ctl");
}

static void fill_pending(void) {
    while (pending < MAX_PENDING && next_conn < nconns) start_conn(next_conn++);
}

static void send_handshake(struct conn *c, int idx) {
    random_key(c->key);
    char req[1024];
    int n = snprintf(req, sizeof req,
                     "GET %s HTTP/1.1\r\nHost: %s:%d\r\nUpgrade: websocket\r\n"
                     "Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\n"
                     "Sec-WebSocket-Version: 13\r\n\r\n",
                     path, host, port, c->key);
    c->state = ST_HANDSHAKE;
    c->want_out = 0;
    arm(c, idx);
    send_bytes(c, idx, req, n);
}

static int check_handshake(struct conn *c) {
    /* returns header length when complete and right, 0 when incomplete,
       -1 when wrong */
    unsigned char *end = memmem(c->in, c->inlen, "\r\n\r\n", 4);
    if (!end) return c->inlen >= BUF ? -1 : 0;
    int hlen = (int)(end - c->in) + 4;
    if (c->inlen < 12 || memcmp(c->in + 9, "101", 3)) return -1;
    char want[29];
    lx_ws_accept(c->key, strlen(c->key), want);
    /* find the Accept header, case-insensitively */
    const char *name = "sec-websocket-accept:";
    size_t nl = strlen(name);
    for (int i = 0; i + (int)nl < hlen; i++) {
        if ((i == 0 || c->in[i - 1] == '\n') &&
            strncasecmp((char *)c->in + i, name, nl) == 0) {
            int j = i + (int)nl;
            while (c->in[j] == ' ' || c->in[j] == '\t') j++;
            size_t wl = strlen(want);
            if (memcmp(c->in + j, want, wl) == 0 &&
                (c->in[j + wl] == '\r' || c->in[j + wl] == ' '))
                return hlen;
            return -1;
        }
    }
    return -1;
}

static void on_open(struct conn *c, int idx) {
    pending--;
    opened++;
    c->state = ST_OPEN;
    if (!is_hold && measuring >= 0) send_echo(c, idx, inflight);
}

static void record(double us) {
    if (!measuring) return;
    long b = (long)us;
    if (b < 0) b = 0;
    if (b >= HIST_US)
        hist_over++;
    else
        hist[b]++;
    hist_n++;
}

/* A complete frame from the server. */
static void on_frame(struct conn *c, int idx, int op, unsigned char *p,
                     int n) {
    if (op == 9) { /* ping */
        unsigned char f[200];
        if (n <= 125) send_bytes(c, idx, f, frame(f, 10, p, n));
        return;
    }
    if (op == 10) return;
    if (op == 8) {
        kill_conn(c, 1);
        return;
    }
    if (is_hold) {
        int seq;
        if (op == 1 && n > 10 && memcmp(p, "broadcast ", 10) == 0 &&
            sscanf((char *)p + 10, "%d", &seq) == 1 && seq == bcast_seq &&
            c->got_seq != seq) {
            c->got_seq = seq;
            bcast_got++;
        } else {
            others++;
        }
        return;
    }
    if (op != 1 || n != msg_size || memcmp(p, payload, n) != 0 ||
        c->nsent == 0) {
        errors++;
        return;
    }
    double t = now();
    record((t - c->sent_at[c->head]) * 1e6);
    c->head = (c->head + 1) % MAX_INFLIGHT;
    c->nsent--;
    if (measuring) messages++;
}

static void on_readable(struct conn *c, int idx) {
    for (;;) {
        ssize_t r = read(c->fd, c->in + c->inlen, BUF - c->inlen);
        if (r == 0 || (r < 0 && errno != EAGAIN)) {
            kill_conn(c, 1);
            return;
        }
        if (r < 0) return;
        c->inlen += (int)r;
        int off = 0;
        if (c->state == ST_HANDSHAKE) {
            int h = check_handshake(c);
            if (h < 0) {
                kill_conn(c, 1);
                fill_pending();
                return;
            }
            if (h == 0) continue;
            off = h;
            on_open(c, idx);
            fill_pending();
        }
        int before = c->nsent;
        while (c->state == ST_OPEN && c->inlen - off >= 2) {
            unsigned char *f = c->in + off;
            int avail = c->inlen - off;
            int op = f[0] & 15, len = f[1] & 127, h = 2;
            if (f[1] & 0x80) { /* a server must not mask */
                kill_conn(c, 1);
                return;
            }
            if (len == 126) {
                if (avail < 4) break;
                len = f[2] << 8 | f[3];
                h = 4;
            } else if (len == 127) {
                kill_conn(c, 1); /* never this big here */
                return;
            }
            if (h + len > BUF) {
                kill_conn(c, 1);
                return;
            }
            if (avail < h + len) break;
            on_frame(c, idx, op, f + h, len);
            off += h + len;
        }
        if (c->state != ST_OPEN) return;
        if (off) {
            memmove(c->in, c->in + off, c->inlen - off);
            c->inlen -= off;
        }
        if (!is_hold && measuring >= 0 && c->nsent < before)
            send_echo(c, idx, before - c->nsent);
        if (r < BUF / 2) return; /* likely drained */
    }
}

static void on_event(int idx, uint32_t ev) {
    struct conn *c = &conns[idx];
    if (c->state == ST_DEAD) return;
    if (c->state == ST_CONNECTING) {
        int err = 0;
        socklen_t l = sizeof err;
        getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &l);
        if (err) {
            kill_conn(c, 0);
            fill_pending();
            return;
        }
        send_handshake(c, idx);
        return;
    }
    if (ev & EPOLLOUT) send_bytes(c, idx, "", 0);
    if (c->state != ST_DEAD && (ev & (EPOLLIN | EPOLLHUP | EPOLLERR)))
        on_readable(c, idx);
}

static void poll_once(int timeout_ms) {
    struct epoll_event evs[1024];
    int n = epoll_wait(epfd, evs, 1024, timeout_ms);
    if (n < 0 && errno != EINTR) die("epoll_wait");
    for (int i = 0; i < n; i++) {
        if (evs[i].data.u32 == UINT32_MAX)
            continue; /* stdin: read by the caller */
        on_event((int)evs[i].data.u32, evs[i].events);
    }
}

static double open_all(void) {
    double t0 = now();
    fill_pending();
    while (pending > 0 || next_conn < nconns) {
        poll_once(1000);
        fill_pending();
        if (now() - t0 > 120) break;
    }
    return now() - t0;
}

static void raise_nofile(void) {
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
}

static long percentile_us(double q) {
    long want = (long)(hist_n * q), seen = 0;
    for (long b = 0; b < HIST_US; b++) {
        seen += hist[b];
        if (seen > want) return b;
    }
    return HIST_US;
}

static int run_echo(double seconds, double warmup) {
    hist = calloc(HIST_US, sizeof *hist);
    measuring = -1; /* no sends until every connection is open */
    double t = open_all();
    printf("open %d seconds=%.3f failed=%d\n", opened, t, failed);
    fflush(stdout);
    if (!opened) return 1;
    measuring = 0;
    for (int i = 0; i < nconns; i++)
        if (conns[i].state == ST_OPEN) send_echo(&conns[i], i, inflight);
    double start = now() + warmup, end = start + seconds;
    for (;;) {
        double tn = now();
        if (!measuring && tn >= start) {
            measuring = 1;
            printf("start\n");
            fflush(stdout);
            start = tn;
            end = tn + seconds;
        }
        if (measuring && tn >= end) break;
        poll_once(10);
    }
    double el = now() - start;
    printf("end messages=%ld seconds=%.3f errors=%ld p50_us=%ld p99_us=%ld\n",
           messages, el, errors + failed, percentile_us(0.5),
           percentile_us(0.99));
    fflush(stdout);
    return 0;
}

static int run_hold(void) {
    double t = open_all();
    printf("open %d seconds=%.3f failed=%d\n", opened, t, failed);
    fflush(stdout);
    struct epoll_event ev = {.events = EPOLLIN, .data.u32 = UINT32_MAX};
    if (epoll_ctl(epfd, EPOLL_CTL_ADD, 0, &ev)) die("epoll_ctl stdin");
    fcntl(0, F_SETFL, fcntl(0, F_GETFL) | O_NONBLOCK);
    char line[256];
    int ll = 0, eof = 0;
    for (;;) {
        if (bcast_want) {
            if (bcast_got >= bcast_want || now() - bcast_t0 > 30) {
                printf("bcast us=%.0f got=%d other=%ld\n",
                       (now() - bcast_t0) * 1e6, bcast_got, others);
                fflush(stdout);
                bcast_want = 0;
            }
        }
        poll_once(bcast_want ? 1 : 100);
        if (bcast_want) continue; /* commands wait for the broadcast */
        if (!eof && ll < (int)sizeof line - 1) {
            ssize_t r = read(0, line + ll, sizeof line - 1 - ll);
            if (r == 0) eof = 1;
            if (r > 0) ll += (int)r;
        }
        char *nl;
        while (!bcast_want && (nl = memchr(line, '\n', ll))) {
            char cmd = line[0];
            int used = (int)(nl - line) + 1;
            memmove(line, line + used, ll - used);
            ll -= used;
            if (cmd == 'q') goto quit;
            int alive = 0, first = -1;
            for (int i = 0; i < nconns; i++)
                if (conns[i].state == ST_OPEN) {
                    alive++;
                    if (first < 0) first = i;
                }
            if (cmd == 'a') {
                printf("alive %d\n", alive);
                fflush(stdout);
            } else if (cmd == 'b') {
                if (first < 0) {
                    printf("bcast us=0 got=0 other=%ld\n", others);
                    fflush(stdout);
                    continue;
                }
                bcast_seq++;
                bcast_got = 0;
                bcast_want = alive;
                unsigned char msg[64], f[100];
                int n = snprintf((char *)msg, sizeof msg,
                                 "broadcast %d ........................",
                                 bcast_seq);
                bcast_t0 = now();
                send_bytes(&conns[first], first, f, frame(f, 1, msg, n));
            }
        }
        if (ll >= (int)sizeof line - 1) ll = 0;
        if (eof && !bcast_want && !memchr(line, '\n', ll)) break;
    }
quit:
    for (int i = 0; i < nconns; i++) kill_conn(&conns[i], 0);
    return 0;
}

int main(int argc, char **argv) {
    if (argc < 6) {
        fprintf(stderr,
                "usage: ws_load echo HOST PORT PATH CONNS SECONDS [INFLIGHT "
                "[SIZE [WARMUP]]]\n"
                "       ws_load hold HOST PORT PATH CONNS\n");
        return 2;
    }
    is_hold = strcmp(argv[1], "hold") == 0;
    if (!is_hold && strcmp(argv[1], "echo")) {
        fprintf(stderr, "unknown mode %s\n", argv[1]);
        return 2;
    }
    host = argv[2];
    port = atoi(argv[3]);
    path = argv[4];
    nconns = atoi(argv[5]);
    double seconds = argc > 6 ? atof(argv[6]) : 5, warmup = 1;
    if (argc > 7) inflight = atoi(argv[7]);
    if (argc > 8) msg_size = atoi(argv[8]);
    if (argc > 9) warmup = atof(argv[9]);
    if (inflight < 1 || inflight > MAX_INFLIGHT || msg_size < 1 ||
        msg_size > 125 || nconns < 1) {
        fprintf(stderr, "bad INFLIGHT (1-%d), SIZE (1-125) or CONNS\n",
                MAX_INFLIGHT);
        return 2;
    }
    for (int i = 0; i < msg_size; i++) payload[i] = (unsigned char)('a' + i % 26);
    raise_nofile();
    rng ^= (uint64_t)getpid() << 20 ^ (uint64_t)(now() * 1e6);
    memset(&addr, 0, sizeof addr);
    addr.sin_family = AF_INET;
    addr.sin_port = htons((uint16_t)port);
    if (inet_pton(AF_INET, host, &addr.sin_addr) != 1) {
        fprintf(stderr, "HOST must be an IPv4 address\n");
        return 2;
    }
    conns = calloc(nconns, sizeof *conns);
    if (!conns) die("calloc");
    epfd = epoll_create1(0);
    if (epfd < 0) die("epoll_create1");
    return is_hold ? run_hold() : run_echo(seconds, warmup);
}
