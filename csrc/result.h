/* The application's result (result.c): a list sent whole, any other
 * iterable streamed, wsgi.file_wrapper by sendfile, and close(). */
#ifndef LX_RESULT_H
#define LX_RESULT_H

#include "engine.h"

extern PyType_Spec lx_file_wrapper_spec;

/* Send the body the application returned, its head first: 0, or -1 with
 * an exception (the application's, or ClientDisconnected). */
int lx_result_send(lx_req_t *r, PyObject *result);
/* Call result.close() if it has one (PEP 3333), the output on loan to the
 * flusher meanwhile: 0, or -1 with its exception. */
int lx_result_close(lx_req_t *r, PyObject *result);

#endif
