/* The greenlet bridge: the only file that includes greenlet.h, whose API
 * table is static (one copy per including file). New references returned
 * by the greenlet API are released by the callers here. Also the two
 * switches of the hub: into a greenlet, and back. */
#include "green.h"

#include <greenlet.h>

/* greenlet copies stacks in and out of one region, which AddressSanitizer
 * cannot follow: the redzones of a suspended greenlet's frames stay in the
 * shadow memory and make false reports later (in greenlet's own memcpy of
 * the stack, in uninstrumented callers). Clearing the stack's shadow around
 * every switch, as the runtime does before a longjmp, keeps real reports. */
#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
#define STACK_CLEAN() __asan_handle_no_return()
#else
#define STACK_CLEAN() ((void)0)
#endif

int lx_green_import(void)
{
    PyGreenlet_Import();
    return PyErr_Occurred() ? -1 : 0;
}

PyObject *lx_green_current(void)
{
    return (PyObject *)PyGreenlet_GetCurrent();
}

PyObject *lx_green_new(PyObject *run, PyObject *parent)
{
    return (PyObject *)PyGreenlet_New(run, (PyGreenlet *)parent);
}

PyObject *lx_green_switch(PyObject *g)
{
    STACK_CLEAN();
    PyObject *r = PyGreenlet_Switch((PyGreenlet *)g, NULL, NULL);
    STACK_CLEAN();
    return r;
}

PyObject *lx_green_throw_exit(PyObject *g)
{
    STACK_CLEAN();
    PyObject *r =
        PyGreenlet_Throw((PyGreenlet *)g, PyExc_GreenletExit, NULL, NULL);
    STACK_CLEAN();
    return r;
}

int lx_green_set_parent(PyObject *g, PyObject *parent)
{
    return PyGreenlet_SetParent((PyGreenlet *)g, (PyGreenlet *)parent);
}

int lx_green_dead(PyObject *g)
{
    return PyGreenlet_STARTED((PyGreenlet *)g) &&
           !PyGreenlet_ACTIVE((PyGreenlet *)g);
}

int lx_green_is_exit(PyObject *exc)
{
    return exc != NULL && PyErr_GivenExceptionMatches(exc, PyExc_GreenletExit);
}

void lx_hub_resume(lx_server_t *srv, PyObject *g)
{
    Py_INCREF(g);
    PyObject *r = lx_green_switch(g);
    Py_DECREF(g);
    if (r != NULL) {
        Py_DECREF(r);
    } else if (PyErr_ExceptionMatches(PyExc_Exception)) {
        PyErr_WriteUnraisable((PyObject *)srv);
    } else {
        PyObject *exc = lx_err_get();
        if (lx_green_is_exit(exc) || srv->pending_exc != NULL)
            Py_DECREF(exc);
        else
            srv->pending_exc = exc;
    }
}

PyObject *lx_hub_wait(lx_server_t *srv)
{
    if (!srv->in_turn && lx_loop_deadline(srv->loop, 0) < 0)
        return PyErr_SetFromErrno(PyExc_OSError);
    return lx_green_switch(srv->hub);
}

int lx_hub_wait_quiet(lx_server_t *srv)
{
    PyObject *r = lx_hub_wait(srv);
    if (r == NULL)
        return -1;
    Py_DECREF(r);
    return 0;
}
