/* One request through the application: its environ, the call, the result
 * sent, errors answered, the access log line. */
#include "wsgi.h"

#include "conn.h"
#include "environ.h"
#include "green.h"
#include "input.h"
#include "log.h"
#include "output.h"
#include "response.h"
#include "result.h"
#include "wsock.h"

/* A small response of our own (500, 400, 408, 413) after an error; it
 * follows whatever earlier pipelined responses wait in r->out. */
static int send_error(lx_req_t *r, int status)
{
    char buf[LX_ERROR_RESPONSE_MAX];
    size_t body;
    size_t n = lx_error_response(status, buf, sizeof(buf), &body);
    r->resp_close = 1;
    r->head_sent = 1;
    r->status_code = status;
    r->resp_sent = body;
    if (lx_out_reserve(r, n) < 0)
        return -1;
    lx_out_put(r, buf, n);
    return lx_out_flush(r);
}

/* The exception set now ended the request. */
static void request_error(lx_req_t *r)
{
    lx_server_t *srv = r->srv;
    lx_conn_t *c = r->conn;
    PyObject *exc = lx_err_get();
    if (exc == NULL)
        return;
    if ((c->flags & LX_CONN_F_BROKEN) ||
        PyErr_GivenExceptionMatches(exc, srv->st->ClientDisconnected)) {
        /* The client is gone (or timed out): nothing to answer. */
        c->flags |= LX_CONN_F_BROKEN;
        lx_log(srv, LX_LOG_DEBUG, "client went away", NULL);
        Py_DECREF(exc);
        return;
    }
    if (!PyErr_GivenExceptionMatches(exc, PyExc_Exception)) {
        /* KeyboardInterrupt, SystemExit, GreenletExit: the loop's business,
         * raised again from it. */
        c->flags |= LX_CONN_F_BROKEN;
        if (lx_green_is_exit(exc) || srv->pending_exc != NULL)
            Py_DECREF(exc);
        else
            srv->pending_exc = exc;
        return;
    }
    int status = 500;
    if (r->body_error &&
        (PyErr_GivenExceptionMatches(exc, srv->st->BodyError) ||
         PyErr_GivenExceptionMatches(exc, PyExc_TimeoutError)))
        status = r->body_error; /* the request's fault, not the app's */
    else
        lx_log_app_error(r, exc);
    Py_DECREF(exc);
    if (r->head_sent) {
        /* Mid-response: what the application gave still goes out (it may
         * have gathered in r->out), then only a close can tell. */
        if (lx_out_flush(r) < 0)
            PyErr_Clear();
        c->flags |= LX_CONN_F_BROKEN;
        return;
    }
    /* r->out holds only earlier pipelined responses (this one's head was
     * never built): they go first, then the error. */
    if (send_error(r, status) < 0) {
        PyErr_Clear();
        c->flags |= LX_CONN_F_BROKEN;
    }
}

/* Lend r->out while the application runs; a connection that breaks on
 * the way is marked broken by the write that found it. */
static void lend(lx_req_t *r)
{
    if (lx_out_lend(r) < 0)
        PyErr_Clear();
}

/* The objects handed to the application: reused from one request to the
 * next unless the application kept them. */
static int bind_objects(lx_req_t *r)
{
    lx_state_t *st = r->srv->st;
    if (r->input == NULL && (r->input = lx_input_new(st)) == NULL)
        return -1;
    if (r->sr == NULL && (r->sr = lx_start_response_new(st)) == NULL)
        return -1;
    if (r->writer == NULL && (r->writer = lx_writer_new(st)) == NULL)
        return -1;
    lx_input_bind(r->input, r);
    lx_start_response_bind(r->sr, r);
    lx_writer_bind(r->writer, r);
    return 0;
}

/* Objects the application kept past the request are cut loose; the others
 * serve the next request. */
static void unbind_objects(lx_req_t *r)
{
    if (r->input != NULL) {
        lx_input_bind(r->input, NULL);
        if (Py_REFCNT(r->input) > 1)
            Py_CLEAR(r->input);
    }
    if (r->sr != NULL) {
        lx_start_response_bind(r->sr, NULL);
        if (Py_REFCNT(r->sr) > 1)
            Py_CLEAR(r->sr);
    }
    if (r->writer != NULL) {
        lx_writer_bind(r->writer, NULL);
        if (Py_REFCNT(r->writer) > 1)
            Py_CLEAR(r->writer);
    }
}

static void release_fields(lx_req_t *r)
{
    if (r->fields != NULL) {
        lx_buf_put(&r->srv->bufs, r->fields);
        r->fields = NULL;
    }
}

void lx_wsgi_release(lx_req_t *r)
{
    Py_CLEAR(r->ws);
    unbind_objects(r);
    Py_CLEAR(r->input);
    Py_CLEAR(r->sr);
    Py_CLEAR(r->writer);
    Py_CLEAR(r->environ);
    release_fields(r);
    lx_out_release(r);
}

int lx_wsgi_traverse(lx_req_t *r, visitproc visit, void *arg)
{
    Py_VISIT(r->environ);
    Py_VISIT(r->ws);
    Py_VISIT(r->input);
    Py_VISIT(r->sr);
    Py_VISIT(r->writer);
    return 0;
}

/* The application on a websocket request: earlier responses of a batch
 * go first; then the websocket's end, or a plain HTTP answer if the
 * application declined the upgrade. */
static void websocket_call(lx_req_t *r)
{
    lx_server_t *srv = r->srv;
    /* The head is all in the environ now, and a websocket's request never
     * reads another: its worker's array of header fields (some KiB) is
     * given back while it lasts, made again when the worker takes the
     * next connection (pool.c). */
    PyMem_Free(r->h.headers);
    r->h.headers = NULL;
    if (lx_out_flush(r) < 0) {
        request_error(r);
        return;
    }
    PyObject *args[2] = {r->environ, (PyObject *)r->sr};
    PyObject *result = PyObject_Vectorcall(srv->app, args, 2, NULL);
    if (lx_wsock_declined(r)) {
        r->resp_close = 1;
        if (result == NULL) {
            request_error(r);
            return;
        }
        if (lx_result_send(r, result) < 0)
            request_error(r);
        if (lx_result_close(r, result) < 0)
            request_error(r);
        Py_DECREF(result);
        return;
    }
    PyObject *exc = result == NULL ? lx_err_get() : NULL;
    lx_wsock_end(r, result);
    if (exc != NULL) {
        if (!r->head_sent) {
            lx_err_set(exc); /* nothing went: a 500 */
            request_error(r);
            return;
        }
        /* After the 101 there is no response to fail; a socket taken
         * over ends as its library says (StopIteration, in gunicorn's
         * convention). */
        if (!PyErr_GivenExceptionMatches(exc, PyExc_StopIteration) &&
            !PyErr_GivenExceptionMatches(exc, PyExc_ConnectionError)) {
            lx_err_set(exc);
            request_error(r);
        } else {
            Py_DECREF(exc);
        }
        return;
    }
    /* The body of a websocket's response has no place on the wire. */
    if (lx_result_close(r, result) < 0)
        request_error(r);
    Py_DECREF(result);
}

int lx_wsgi_call(lx_req_t *r)
{
    lx_server_t *srv = r->srv;
    lx_conn_t *c = r->conn;
    int begun = lx_response_begin(r);
    if (begun <= 0)
        return begun;
    int refused;
    int ws = lx_wsock_begin(r, &refused); /* before the head is consumed */
    if (ws < 0 || bind_objects(r) < 0) {
        if (PyErr_Occurred()) {
            lx_log(srv, LX_LOG_ERROR, "out of memory", NULL);
            PyErr_Clear();
        }
        lx_buf_consume(c->rbuf, r->head_len);
        lx_wsock_release(r);
        if (ws < 0 && send_error(r, refused) < 0)
            PyErr_Clear();
        return 0;
    }
    r->environ = lx_environ_build(r);
    lx_buf_consume(c->rbuf, r->head_len);
    if (r->environ != NULL && ws > 0 && lx_wsock_environ(r) < 0)
        Py_CLEAR(r->environ);
    if (r->environ == NULL) {
        request_error(r);
    } else if (ws > 0) {
        websocket_call(r);
    } else {
        PyObject *args[2] = {r->environ, (PyObject *)r->sr};
        /* Responses deferred for the batch keep moving meanwhile. */
        lend(r);
        PyObject *result = PyObject_Vectorcall(srv->app, args, 2, NULL);
        lx_out_reclaim(r);
        if (result == NULL) {
            request_error(r);
        } else {
            if (lx_result_send(r, result) < 0)
                request_error(r);
            if (lx_result_close(r, result) < 0)
                request_error(r);
            Py_DECREF(result);
        }
    }
    if (!r->head_sent && !(c->flags & LX_CONN_F_BROKEN)) {
        /* The close() above failed before anything was sent. */
        if (send_error(r, 500) < 0) {
            PyErr_Clear();
            c->flags |= LX_CONN_F_BROKEN;
        }
    }
    int keep = !(c->flags & LX_CONN_F_BROKEN) && !r->resp_close &&
               r->ws == NULL && r->keepalive && lx_body_discard(r);
    srv->served++;
    if (srv->alog_on)
        lx_log_access(r);
    /* The environ first: it holds wsgi.input, which can then serve the
     * next request unless the application kept it. */
    Py_CLEAR(r->environ);
    lx_wsock_release(r);
    unbind_objects(r);
    release_fields(r);
    return keep;
}
