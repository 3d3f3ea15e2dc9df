/* The logs (log.c): errors through the server's Python callable, and the
 * access log, formatted and buffered in C. */
#ifndef LX_LOG_H
#define LX_LOG_H

#include "engine.h"

/* Levels as the logging module's. */
enum {
    LX_LOG_DEBUG = 10,
    LX_LOG_INFO = 20,
    LX_LOG_WARNING = 30,
    LX_LOG_ERROR = 40
};

/* Report msg at level, with the exception exc (or NULL) and its traceback.
 * Never raises: a failing log callable is reported as unraisable. */
void lx_log(lx_server_t *srv, int level, const char *msg, PyObject *exc);
/* The access log line of the request that just ended, into the buffer. */
void lx_log_access(lx_req_t *r);
/* Write out the buffered access log lines (all of them, retrying partial
 * writes). */
void lx_log_flush(lx_server_t *srv);

#endif
