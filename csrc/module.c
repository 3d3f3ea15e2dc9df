/* The lichen._lichen module: its state, types, interned strings and the
 * debug counters of live engine objects. */
#include "engine.h"

#include "conn.h"
#include "environ.h"
#include "files.h"
#include "green.h"
#include "input.h"
#include "pool.h"
#include "response.h"
#include "result.h"
#include "tlsconn.h"
#include "wsock.h"

extern PyType_Spec lx_server_spec;

static lx_state_t *get_state(PyObject *m)
{
    return (lx_state_t *)PyModule_GetState(m);
}

static PyObject *live_counts(PyObject *m, PyObject *unused)
{
    (void)m;
    (void)unused;
    long pooled = lx_buf_pooled();
    return Py_BuildValue("{s:l,s:l,s:l,s:l,s:l,s:l,s:l,s:l}", "connections",
                         lx_conn_live(), "buffers", lx_buf_live() - pooled,
                         "pooled_buffers", pooled, "greenlets", lx_pool_live(),
                         "held_outputs", lx_flush_held(), "static_files",
                         lx_files_live(), "websockets", lx_wsock_live(), "tls",
                         lx_tlsconn_live());
}

PyObject *lx_probe_parse_request(PyObject *m, PyObject *args, PyObject *kw);
PyObject *lx_probe_decode_chunked(PyObject *m, PyObject *arg);

static PyMethodDef module_methods[] = {
    {"parse_request", (PyCFunction)(void (*)(void))lx_probe_parse_request,
     METH_VARARGS | METH_KEYWORDS,
     "parse_request(data, limit_request_line=8190, limit_request_fields=100, "
     "limit_request_field_size=8190): the engine's head parser on data: a "
     "dict, None when incomplete, or the rejection status."},
    {"decode_chunked", lx_probe_decode_chunked, METH_O,
     "decode_chunked(data): (body, consumed), None when incomplete, or 400."},
    {"live_counts", live_counts, METH_NOARGS,
     "Live engine objects in this process: connections, buffers in use, "
     "buffers kept in free lists, worker greenlets, outputs lent to the "
     "flusher thread. All zero once every "
     "server is closed."},
    {NULL, NULL, 0, NULL},
};

#define INTERN(field, text)                           \
    do {                                              \
        st->field = PyUnicode_InternFromString(text); \
        if (st->field == NULL)                        \
            return -1;                                \
    } while (0)

static PyTypeObject *add_type(PyObject *m, PyType_Spec *spec, PyObject *base)
{
    PyTypeObject *tp = (PyTypeObject *)PyType_FromModuleAndSpec(m, spec, base);
    if (tp == NULL)
        return NULL;
    if (PyModule_AddType(m, tp) < 0) {
        Py_DECREF(tp);
        return NULL;
    }
    return tp;
}

static int module_exec(PyObject *m)
{
    lx_state_t *st = get_state(m);
    if (lx_green_import() < 0)
        return -1;
    if ((st->server_type = add_type(m, &lx_server_spec, NULL)) == NULL ||
        (st->input_type = add_type(m, &lx_input_spec, NULL)) == NULL ||
        (st->start_response_type =
             add_type(m, &lx_start_response_spec, NULL)) == NULL ||
        (st->writer_type = add_type(m, &lx_writer_spec, NULL)) == NULL ||
        (st->file_wrapper_type = add_type(m, &lx_file_wrapper_spec, NULL)) ==
            NULL ||
        (st->websocket_type = add_type(m, &lx_websocket_spec, NULL)) == NULL)
        return -1;
    st->ClientDisconnected = PyErr_NewExceptionWithDoc(
        "lichen._lichen.ClientDisconnected",
        "The client went away (or the server closed the connection) while "
        "the request was being read or answered.",
        PyExc_ConnectionError, NULL);
    if (st->ClientDisconnected == NULL ||
        PyModule_AddObjectRef(m, "ClientDisconnected",
                              st->ClientDisconnected) < 0)
        return -1;
    st->BodyError = PyErr_NewExceptionWithDoc(
        "lichen._lichen.BodyError",
        "The request body is malformed or larger than the limit; the server "
        "answers 400 or 413 if the application lets this propagate.",
        PyExc_OSError, NULL);
    if (st->BodyError == NULL ||
        PyModule_AddObjectRef(m, "BodyError", st->BodyError) < 0)
        return -1;
    st->empty_str = PyUnicode_New(0, 0);
    if (st->empty_str == NULL)
        return -1;
    INTERN(k_REQUEST_METHOD, "REQUEST_METHOD");
    INTERN(k_SCRIPT_NAME, "SCRIPT_NAME");
    INTERN(k_PATH_INFO, "PATH_INFO");
    INTERN(k_QUERY_STRING, "QUERY_STRING");
    INTERN(k_RAW_URI, "RAW_URI");
    INTERN(k_SERVER_PROTOCOL, "SERVER_PROTOCOL");
    INTERN(k_REMOTE_ADDR, "REMOTE_ADDR");
    INTERN(k_REMOTE_PORT, "REMOTE_PORT");
    INTERN(k_wsgi_input, "wsgi.input");
    INTERN(k_wsgi_input_terminated, "wsgi.input_terminated");
    INTERN(k_HTTP_REFERER, "HTTP_REFERER");
    INTERN(k_HTTP_USER_AGENT, "HTTP_USER_AGENT");
    INTERN(v_http10, "HTTP/1.0");
    INTERN(v_http11, "HTTP/1.1");
    INTERN(v_GET, "GET");
    INTERN(s_close, "close");
    INTERN(s_fileno, "fileno");
    INTERN(s_tell, "tell");
    INTERN(s_seek, "seek");
    if (lx_environ_init() < 0)
        return -1;
    return 0;
}

static int module_traverse(PyObject *m, visitproc visit, void *arg)
{
    lx_state_t *st = get_state(m);
    Py_VISIT(st->server_type);
    Py_VISIT(st->input_type);
    Py_VISIT(st->start_response_type);
    Py_VISIT(st->writer_type);
    Py_VISIT(st->file_wrapper_type);
    Py_VISIT(st->websocket_type);
    Py_VISIT(st->ClientDisconnected);
    Py_VISIT(st->BodyError);
    return 0;
}

static int module_clear(PyObject *m)
{
    lx_state_t *st = get_state(m);
    PyObject **p = (PyObject **)st;
    size_t i;
    for (i = 0; i < sizeof(*st) / sizeof(PyObject *); i++)
        Py_CLEAR(p[i]);
    return 0;
}

static void module_free(void *m)
{
    module_clear((PyObject *)m);
}

static PyModuleDef_Slot module_slots[] = {
    {Py_mod_exec, module_exec},
    {0, NULL},
};

static struct PyModuleDef lichen_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "lichen._lichen",
    .m_doc = "The lichen engine: HTTP/1.1 in C, applications in greenlets.",
    .m_size = sizeof(lx_state_t),
    .m_methods = module_methods,
    .m_slots = module_slots,
    .m_traverse = module_traverse,
    .m_clear = module_clear,
    .m_free = module_free,
};

PyMODINIT_FUNC PyInit__lichen(void)
{
    return PyModuleDef_Init(&lichen_module);
}
