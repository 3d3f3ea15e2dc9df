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
/* The application's exception exc ended request r: to the server's
 * app_error(environ, exc) when it has one (as gevent's hub.handle_error
 * takes it), else to the error log with the request's method and target. */
void lx_log_app_error(lx_req_t *r, PyObject *exc);
/* The access log line of the request that just ended, into the buffer
 * (or to the access_log_call hook, with its environ). */
void lx_log_access(lx_req_t *r);
/* The same line from its fields, for a request without an environ (a
 * static file); a field whose base is NULL is written as missing. */
typedef struct {
    lx_str_t addr, method, target, proto, referer, agent;
} lx_alog_fields_t;
void lx_log_access_fields(lx_req_t *r, const lx_alog_fields_t *f);
/* Write out the buffered access log lines (all of them, retrying partial
 * writes), or give them to the callable line by line. */
void lx_log_flush(lx_server_t *srv);

#endif
