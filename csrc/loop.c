/* The poller backend is chosen here at compile time, never by the build. */
#define _GNU_SOURCE
#include "loop.h"

#include <errno.h>
#include <stdlib.h>
#include <unistd.h>

#if defined(__linux__)
#include "loop_epoll.c.h"
#elif defined(__APPLE__) || defined(__FreeBSD__) || defined(__OpenBSD__) || \
    defined(__NetBSD__) || defined(__DragonFly__)
#include "loop_kqueue.c.h"
#else
#error "lichen needs epoll (Linux) or kqueue (BSD, macOS)"
#endif
