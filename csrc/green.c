/* The greenlet bridge: the only file that includes greenlet.h, whose API
 * table is static (one copy per including file). New references returned
 * by the greenlet API are released by the callers here. */
#include "engine.h"

#include <greenlet.h>

int lx_green_import(void)
{
    PyGreenlet_Import();
    if (_PyGreenlet_API == NULL)
        return -1;
    return 0;
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
    return PyGreenlet_Switch((PyGreenlet *)g, NULL, NULL);
}

PyObject *lx_green_throw_exit(PyObject *g)
{
    return PyGreenlet_Throw((PyGreenlet *)g, PyExc_GreenletExit, NULL, NULL);
}

int lx_green_set_parent(PyObject *g, PyObject *parent)
{
    return PyGreenlet_SetParent((PyGreenlet *)g, (PyGreenlet *)parent);
}

int lx_green_is_exit(PyObject *exc)
{
    return exc != NULL && PyErr_GivenExceptionMatches(exc, PyExc_GreenletExit);
}
