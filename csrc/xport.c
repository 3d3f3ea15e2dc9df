/* A connection's byte stream: see xport.h. Pure C. */
#define _GNU_SOURCE
#include "xport.h"

#include <errno.h>
#include <unistd.h>

/* One TLS record's worth of a file at a time, and at most this many
 * blocks a call (the caller lets others run between calls). */
#define FILE_BLOCK 16384
#define FILE_BLOCKS 16

ssize_t lx_xp_sendfile(int fd, lx_tls_t *tls, int in_fd, off_t *off, size_t n)
{
    if (tls == NULL)
        return lx_sock_sendfile(fd, in_fd, off, n);
    char block[FILE_BLOCK];
    size_t done = 0;
    /* A retry after LX_AGAIN reads the same bytes again from the same
     * offset, as TLS wants them. */
    int blocks = 0;
    while (done < n && blocks++ < FILE_BLOCKS) {
        size_t want = n - done < sizeof(block) ? n - done : sizeof(block);
        ssize_t r = pread(in_fd, block, want, *off);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            return done > 0 ? (ssize_t)done : LX_ERR;
        if (r == 0)
            break;
        ssize_t w = lx_tls_writev(tls, &(struct iovec){block, (size_t)r}, 1);
        if (w <= 0)
            return done > 0 ? (ssize_t)done : w;
        *off += w;
        done += (size_t)w;
        if (w < r)
            break; /* the socket is full: the caller hears LX_AGAIN next */
    }
    return (ssize_t)done;
}
