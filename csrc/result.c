/* The application's result: a list sent whole, any other iterable
 * streamed, wsgi.file_wrapper by sendfile, and close(). */
#include "result.h"

#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "output.h"
#include "response.h"

typedef struct {
    PyObject_HEAD PyObject *filelike;
    Py_ssize_t blksize;
} FileWrapperObject;

/* getattr that treats a missing attribute as 0 (not an error). */
static int getattr_opt(PyObject *o, PyObject *name, PyObject **out)
{
    *out = PyObject_GetAttr(o, name);
    if (*out != NULL)
        return 1;
    if (!PyErr_ExceptionMatches(PyExc_AttributeError))
        return -1;
    PyErr_Clear();
    return 0;
}

/* o.close() if o has one: 0, or -1 with its exception. */
static int close_of(PyObject *o, PyObject *name)
{
    PyObject *close;
    int rc = getattr_opt(o, name, &close);
    if (rc <= 0)
        return rc;
    PyObject *res = PyObject_CallNoArgs(close);
    Py_DECREF(close);
    if (res == NULL)
        return -1;
    Py_DECREF(res);
    return 0;
}

/* ------------------------------------------------------------------ */
/* wsgi.file_wrapper */

static int fw_init(PyObject *self, PyObject *args, PyObject *kw)
{
    FileWrapperObject *fw = (FileWrapperObject *)self;
    PyObject *filelike;
    Py_ssize_t blksize = 8192;
    static char *kwlist[] = {"filelike", "blksize", NULL};
    if (!PyArg_ParseTupleAndKeywords(args, kw, "O|n:FileWrapper", kwlist,
                                     &filelike, &blksize))
        return -1;
    if (blksize <= 0) {
        PyErr_SetString(PyExc_ValueError, "blksize must be positive");
        return -1;
    }
    Py_XSETREF(fw->filelike, Py_NewRef(filelike));
    fw->blksize = blksize;
    return 0;
}

static PyObject *fw_next(PyObject *self)
{
    FileWrapperObject *fw = (FileWrapperObject *)self;
    if (fw->filelike == NULL)
        return NULL;
    PyObject *data =
        PyObject_CallMethod(fw->filelike, "read", "n", fw->blksize);
    if (data == NULL)
        return NULL;
    Py_ssize_t n = PyObject_Length(data);
    if (n <= 0) {
        Py_DECREF(data);
        return NULL; /* StopIteration, or the error of len() */
    }
    return data;
}

static PyObject *fw_close(PyObject *self, PyObject *unused)
{
    FileWrapperObject *fw = (FileWrapperObject *)self;
    PyObject *name;
    (void)unused;
    if (fw->filelike == NULL)
        Py_RETURN_NONE;
    /* (a subclass's type has no module state to hold the name) */
    if ((name = PyUnicode_InternFromString("close")) == NULL)
        return NULL;
    int rc = close_of(fw->filelike, name);
    Py_DECREF(name);
    if (rc < 0)
        return NULL;
    Py_RETURN_NONE;
}

static int fw_traverse(PyObject *self, visitproc visit, void *arg)
{
    Py_VISIT(Py_TYPE(self));
    Py_VISIT(((FileWrapperObject *)self)->filelike);
    return 0;
}

static int fw_clear(PyObject *self)
{
    Py_CLEAR(((FileWrapperObject *)self)->filelike);
    return 0;
}

static void fw_dealloc(PyObject *self)
{
    PyTypeObject *tp = Py_TYPE(self);
    PyObject_GC_UnTrack(self);
    fw_clear(self);
    tp->tp_free(self);
    Py_DECREF(tp);
}

static PyMethodDef fw_methods[] = {
    {"close", fw_close, METH_NOARGS, "Close the wrapped file."},
    {NULL, NULL, 0, NULL},
};

static PyType_Slot fw_slots[] = {
    {Py_tp_init, fw_init},
    {Py_tp_new, PyType_GenericNew},
    {Py_tp_iter, PyObject_SelfIter},
    {Py_tp_iternext, fw_next},
    {Py_tp_methods, fw_methods},
    {Py_tp_traverse, fw_traverse},
    {Py_tp_clear, fw_clear},
    {Py_tp_dealloc, fw_dealloc},
    {Py_tp_doc, "FileWrapper(filelike, blksize=8192): wsgi.file_wrapper; "
                "real files are sent with sendfile(2)."},
    {0, NULL},
};

PyType_Spec lx_file_wrapper_spec = {
    .name = "lichen._lichen.FileWrapper",
    .basicsize = sizeof(FileWrapperObject),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_BASETYPE,
    .slots = fw_slots,
};

/* sendfile(2) for a FileWrapper around a real file. 1 done, 0 not a real
 * file (iterate instead), -1 error. */
static int send_file(lx_req_t *r, FileWrapperObject *fw)
{
    lx_state_t *ms = r->srv->st;
    PyObject *fileno = PyObject_CallMethodNoArgs(fw->filelike, ms->s_fileno);
    if (fileno == NULL) {
        PyErr_Clear();
        return 0;
    }
    long fd = PyLong_AsLong(fileno);
    Py_DECREF(fileno);
    if (fd < 0 || fd > INT32_MAX) {
        PyErr_Clear();
        return 0;
    }
    struct stat st;
    if (fstat((int)fd, &st) < 0 || !S_ISREG(st.st_mode))
        return 0;
    off_t pos;
    PyObject *tell = PyObject_CallMethodNoArgs(fw->filelike, ms->s_tell);
    if (tell != NULL) {
        pos = (off_t)PyLong_AsLongLong(tell);
        Py_DECREF(tell);
        if (pos == -1 && PyErr_Occurred())
            return -1;
    } else {
        PyErr_Clear();
        pos = lseek((int)fd, 0, SEEK_CUR);
        if (pos < 0)
            return 0;
    }
    int64_t size = st.st_size > pos ? (int64_t)(st.st_size - pos) : 0;
    if (!r->head_sent && lx_response_head(r, size) < 0)
        return -1;
    if (r->resp_chunked) {
        /* Framed by chunks only when the app insisted on no length after
         * a write(): rare; let the iteration frame it. */
        return 0;
    }
    if (r->resp_length >= 0 && size > r->resp_length - (int64_t)r->resp_sent)
        size = r->resp_length - (int64_t)r->resp_sent;
    if (r->resp_nobody)
        size = 0;
    if (lx_out_sendfile(r, (int)fd, &pos, (uint64_t)size) < 0)
        return -1;
    /* Keep Python's view of the position in step with what was sent. */
    PyObject *at = PyLong_FromLongLong((long long)pos);
    PyObject *res =
        at ? PyObject_CallMethodOneArg(fw->filelike, ms->s_seek, at) : NULL;
    Py_XDECREF(at);
    if (res == NULL)
        PyErr_Clear();
    else
        Py_DECREF(res);
    return 1;
}

/* ------------------------------------------------------------------ */
/* the body */

static int send_item(lx_req_t *r, PyObject *item, int last)
{
    if (PyByteArray_Check(item)) {
        /* Not bytes as PEP 3333 asks, but unambiguous: sent as a copy,
         * since the application could resize it while we wait. */
        PyObject *copy = PyBytes_FromObject(item);
        if (copy == NULL)
            return -1;
        int rc = send_item(r, copy, last);
        Py_DECREF(copy);
        return rc;
    }
    if (!PyBytes_Check(item)) {
        PyErr_Format(PyExc_TypeError,
                     "the application must yield bytes, not %.100s",
                     Py_TYPE(item)->tp_name);
        return -1;
    }
    Py_ssize_t n = PyBytes_GET_SIZE(item);
    if (n == 0 && !last)
        return 0; /* nothing to send: the head waits for real data */
    return lx_response_block(r, PyBytes_AS_STRING(item), (size_t)n, last);
}

/* The body ended: complete the framing. */
static int finish(lx_req_t *r)
{
    if (!r->head_sent)
        return lx_response_block(r, NULL, 0, 1);
    return lx_out_end(r, 0);
}

/* A list or tuple of bytes: the length is announced and the head and
 * every item leave in one writev (or join the batch's deferred output). */
static int send_whole_list(lx_req_t *r, PyObject *seq, int64_t total)
{
    Py_ssize_t i, n = PySequence_Fast_GET_SIZE(seq);
    if (lx_response_head(r, total) < 0)
        return -1;
    uint64_t room = r->resp_nobody        ? 0
                    : r->resp_length >= 0 ? (uint64_t)r->resp_length
                                          : UINT64_MAX;
    struct iovec small[17], *iov = small;
    PyObject *held[16], **items = held;
    if (n > 16) {
        iov = PyMem_Malloc(sizeof(*iov) * (size_t)(n + 1));
        items = PyMem_Malloc(sizeof(*items) * (size_t)n);
        if (iov == NULL || items == NULL) {
            PyMem_Free(iov);
            PyMem_Free(items);
            PyErr_NoMemory();
            return -1;
        }
    }
    int k = 0;
    size_t len = 0;
    iov[k].iov_base = lx_buf_head(r->out);
    iov[k++].iov_len = lx_buf_avail(r->out);
    for (i = 0; i < n; i++) {
        /* Held: another request could change a shared list meanwhile. */
        items[i] = Py_NewRef(PySequence_Fast_GET_ITEM(seq, i));
        size_t ilen = (size_t)PyBytes_GET_SIZE(items[i]);
        if (ilen > room - r->resp_sent) {
            ilen = (size_t)(room - r->resp_sent);
            if (!r->resp_nobody)
                r->resp_close = 1; /* longer than its Content-Length */
        }
        r->resp_sent += ilen;
        if (ilen == 0)
            continue;
        iov[k].iov_base = PyBytes_AS_STRING(items[i]);
        iov[k++].iov_len = ilen;
        len += ilen;
    }
    if (r->resp_length >= 0 && !r->resp_nobody &&
        r->resp_sent < (uint64_t)r->resp_length)
        r->resp_close = 1; /* shorter than announced: only a close tells */
    int rc = lx_out_whole(r, iov, k, len);
    for (i = 0; i < n; i++)
        Py_DECREF(items[i]);
    if (iov != small)
        PyMem_Free(iov);
    if (items != held)
        PyMem_Free(items);
    return rc;
}

int lx_result_send(lx_req_t *r, PyObject *result)
{
    lx_state_t *st = r->srv->st;
    if (PyList_CheckExact(result) || PyTuple_CheckExact(result)) {
        Py_ssize_t i, n = PySequence_Fast_GET_SIZE(result);
        if (n > 1 && !r->head_sent) {
            /* The whole body is known: announce its length. */
            int64_t total = 0;
            for (i = 0; i < n; i++) {
                PyObject *item = PySequence_Fast_GET_ITEM(result, i);
                if (!PyBytes_Check(item))
                    break;
                total += PyBytes_GET_SIZE(item);
            }
            if (i == n)
                return send_whole_list(r, result, total);
        }
        for (i = 0; i < n; i++) {
            PyObject *item = Py_NewRef(PySequence_Fast_GET_ITEM(result, i));
            int rc = send_item(r, item, i == n - 1);
            Py_DECREF(item);
            if (rc < 0)
                return -1;
            /* The list may shrink while we wait on the socket. */
            n = PySequence_Fast_GET_SIZE(result);
        }
        if (n == 0 || !r->head_sent)
            return finish(r);
        return lx_out_end(r, 1); /* the last item ended the framing */
    }
    if (Py_IS_TYPE(result, st->file_wrapper_type)) {
        int rc = send_file(r, (FileWrapperObject *)result);
        if (rc != 0)
            return rc < 0 ? -1 : finish(r);
    }
    PyObject *it = PyObject_GetIter(result);
    if (it == NULL)
        return -1;
    for (;;) {
        /* What gathered so far keeps moving while the application makes
         * the next block (PEP 3333: no delaying a block). */
        if (lx_out_lend(r) < 0)
            break;
        PyObject *item = PyIter_Next(it);
        lx_out_reclaim(r);
        if (item == NULL)
            break;
        r->coalesce = 1;
        int rc = send_item(r, item, 0);
        r->coalesce = 0;
        Py_DECREF(item);
        if (rc < 0)
            break;
    }
    Py_DECREF(it);
    if (PyErr_Occurred())
        return -1;
    return finish(r);
}

int lx_result_close(lx_req_t *r, PyObject *result)
{
    if (PyList_CheckExact(result) || PyTuple_CheckExact(result) ||
        PyBytes_CheckExact(result))
        return 0;
    if (lx_out_lend(r) < 0)
        PyErr_Clear(); /* the close below must run all the same */
    int rc = close_of(result, r->srv->st->s_close);
    lx_out_reclaim(r);
    return rc;
}
