/* Static files (files.c): a request under a static prefix answered by the
 * engine, from static.c's answer, without a Python call. */
#ifndef LX_FILES_H
#define LX_FILES_H

#include "engine.h"

/* Set up the server's static files from the options' "static" entry
 * (None, or a dict: mounts [(prefix, dir)], max_age, immutable, index,
 * dotfiles, types [(ext, type)], cache). 0, or -1 with an exception. */
int lx_files_configure(lx_server_t *srv, PyObject *spec);
/* Close the open files and the directories, and forget the
 * configuration (the server is torn down, or goes). */
void lx_files_free(lx_server_t *srv);
/* Debug counter: open static files in this process. */
long lx_files_live(void);

/* The static mount r's request falls under (and in *rest where the path
 * below it begins), -1 for the application's. */
static inline int lx_files_match(lx_req_t *r, size_t *rest)
{
    if (r->srv->statics == NULL)
        return -1;
    return lx_static_match(r->srv->statics, lx_http1_origin_path(r->h.path),
                           rest);
}
/* Answer r's request from mount m, as lx_wsgi_call: 1 when the
 * connection may carry another request, 0 to close it, -1 when it was
 * rejected. */
int lx_files_serve(lx_req_t *r, int m, size_t rest);
/* Drop what r holds for static answers (its worker ends). */
void lx_files_release(lx_req_t *r);

#endif
