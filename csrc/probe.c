/* The parser and the chunked decoder exposed to Python as they are, for
 * differential tests against other parsers. Not used when serving. */
#include "engine.h"

#include <string.h>

static PyObject *str_of(lx_str_t s)
{
    return PyBytes_FromStringAndSize(s.base ? s.base : "", (Py_ssize_t)s.len);
}

/* parse_request(data, limit_request_line=8190, limit_request_fields=100,
 *               limit_request_field_size=8190)
 * -> dict of the parsed head, None when incomplete, or an int status. */
PyObject *lx_probe_parse_request(PyObject *m, PyObject *args, PyObject *kw)
{
    Py_buffer data;
    Py_ssize_t line = 8190, fields = 100, size = 8190;
    static char *kwlist[] = {"data", "limit_request_line",
                             "limit_request_fields",
                             "limit_request_field_size", NULL};
    (void)m;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "y*|nnn:parse_request", kwlist,
                                     &data, &line, &fields, &size))
        return NULL;
    PyObject *res = NULL;
    if (line < 1 || fields < 1 || size < 1 || fields > 100000) {
        PyErr_SetString(PyExc_ValueError, "bad limits");
        goto done;
    }
    lx_http1_limits_t limits = {(size_t)line, (size_t)size, (size_t)fields};
    lx_header_t *headers =
        PyMem_Malloc(sizeof(lx_header_t) * ((size_t)fields + 1));
    if (headers == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    lx_http1_req_t req;
    memset(&req, 0, sizeof(req));
    req.headers = headers;
    req.num_headers = (size_t)fields + 1;
    int status = 0;
    int rc = lx_http1_parse_request(data.buf, (size_t)data.len, &req, &limits,
                                    &status);
    if (rc == LX_AGAIN) {
        res = Py_NewRef(Py_None);
    } else if (rc < 0) {
        res = PyLong_FromLong(status);
    } else {
        PyObject *hl = PyList_New((Py_ssize_t)req.num_headers);
        size_t i;
        for (i = 0; hl != NULL && i < req.num_headers; i++) {
            PyObject *t = Py_BuildValue("(NN)", str_of(headers[i].name),
                                        str_of(headers[i].value));
            if (t == NULL)
                Py_CLEAR(hl);
            else
                PyList_SET_ITEM(hl, (Py_ssize_t)i, t);
        }
        if (hl != NULL)
            res = Py_BuildValue(
                "{s:i,s:N,s:N,s:N,s:N,s:i,s:L,s:O,s:O,s:O,s:O,s:N}",
                "consumed", rc, "method", str_of(req.method), "target",
                str_of(req.target), "path", str_of(req.path), "query",
                str_of(req.query), "minor_version", req.minor_version,
                "content_length", (long long)req.content_length, "chunked",
                (req.flags & LX_REQ_CHUNKED) ? Py_True : Py_False, "keepalive",
                (req.flags & LX_REQ_KEEPALIVE) ? Py_True : Py_False,
                "expect_continue",
                (req.flags & LX_REQ_EXPECT_100) ? Py_True : Py_False,
                "upgrade", (req.flags & LX_REQ_UPGRADE) ? Py_True : Py_False,
                "headers", hl);
    }
    PyMem_Free(headers);
done:
    PyBuffer_Release(&data);
    return res;
}

/* decode_chunked(data) -> (body, consumed) once the last chunk and the
 * trailers are in, None when more bytes are needed, 400 when invalid. */
PyObject *lx_probe_decode_chunked(PyObject *m, PyObject *arg)
{
    Py_buffer data;
    (void)m;
    if (PyObject_GetBuffer(arg, &data, PyBUF_SIMPLE) < 0)
        return NULL;
    char *body = PyMem_Malloc(data.len ? (size_t)data.len : 1);
    PyObject *res = NULL;
    if (body == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    lx_chunked_t d;
    lx_chunked_init(&d);
    const char *p = data.buf;
    size_t left = (size_t)data.len, out = 0;
    for (;;) {
        size_t used = 0;
        int rc = lx_chunked_parse(&d, p, left, &used);
        p += used;
        left -= used;
        if (rc == LX_CHUNKED_DATA) {
            size_t k = left < d.remaining ? left : (size_t)d.remaining;
            memcpy(body + out, p, k);
            out += k;
            p += k;
            left -= k;
            lx_chunked_take(&d, k);
            if (left == 0 && lx_chunked_in_data(&d)) {
                res = Py_NewRef(Py_None);
                break;
            }
            continue;
        }
        if (rc == LX_CHUNKED_END) {
            res = Py_BuildValue("(y#n)", body, (Py_ssize_t)out,
                                (Py_ssize_t)(data.len - left));
            break;
        }
        res = rc == LX_AGAIN ? Py_NewRef(Py_None) : PyLong_FromLong(400);
        break;
    }
done:
    PyMem_Free(body);
    PyBuffer_Release(&data);
    return res;
}
