/* Socket calls with errno mapped to LX_* codes. Pure C. */
#ifndef LX_SOCK_H
#define LX_SOCK_H

#include <sys/socket.h>
#include <sys/types.h>
#include <sys/uio.h>

#include "lx.h"

/* A new non-blocking, close-on-exec connection, LX_AGAIN or LX_ERR. */
int lx_sock_accept(int lfd, struct sockaddr *sa, socklen_t *salen);
/* Bytes read (> 0), 0 at EOF, LX_AGAIN or LX_ERR. */
ssize_t lx_sock_recv(int fd, void *buf, size_t n);
/* Bytes written (> 0), LX_AGAIN or LX_ERR; never raises SIGPIPE. */
/* The first bytes waiting on fd, left there: as lx_sock_recv. */
ssize_t lx_sock_peek(int fd, void *buf, size_t n);
ssize_t lx_sock_send(int fd, const void *buf, size_t n);
ssize_t lx_sock_writev(int fd, const struct iovec *iov, int iovcnt);
/* sendfile from in_fd at *off; advances *off. Bytes, LX_AGAIN or LX_ERR.
 * Linux's sendfile has no MSG_NOSIGNAL: call lx_sock_ignore_sigpipe once
 * before using it, or a peer gone mid-file raises SIGPIPE. */
ssize_t lx_sock_sendfile(int out_fd, int in_fd, off_t *off, size_t n);
void lx_sock_nodelay(int fd);
/* On a TCP listener: set TCP_NODELAY there, once. 1 when the system makes
 * accepted sockets inherit it (Linux), so accept need not set it. */
int lx_sock_listener_nodelay(int fd);
/* Ignore SIGPIPE if it is at its default action (Python already ignores
 * it; an embedding program may not), so writes report EPIPE instead. */
void lx_sock_ignore_sigpipe(void);
/* Drop the first n written bytes from an iovec array; returns the index
 * of the first iovec still holding data. */
int lx_iov_advance(struct iovec *iov, int iovcnt, size_t n);

#endif
