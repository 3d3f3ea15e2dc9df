/* Static files over HTTP (pure C): a request under a mount answered from
 * its directory. Method, path, conditional requests, ranges and
 * precompressed siblings make the status and the header fields; the
 * caller adds the framing (Content-Length, Date, Connection) and sends the
 * body: a range of the open file, or a short text. */
#ifndef LX_STATIC_H
#define LX_STATIC_H

#include <regex.h>

#include "fcache.h"
#include "fpath.h"
#include "hvalue.h"
#include "http1.h"

typedef struct {
    char *ext; /* ".css", lower case */
    size_t ext_len;
    char *type;
} lx_ftype_t;

typedef struct {
    /* mounts: URL prefixes and their directories */
    char **prefixes;
    size_t *prefix_lens;
    lx_fmount_t *mounts;
    int nmounts;
    lx_fcache_t cache;
    /* options */
    int64_t max_age; /* Cache-Control max-age, -1: none */
    int immutable_on;
    regex_t immutable; /* paths that get immutable */
    char *index;       /* a directory's index file, NULL: none */
    size_t index_len;
    int dotfiles;
    lx_ftype_t *types; /* the user's, before the built-in table */
    int ntypes;
    char path[LX_FPATH_MAX + 8]; /* scratch: the relative path */
} lx_static_t;

/* NULL when out of memory. */
lx_static_t *lx_static_new(size_t cache_entries);
void lx_static_free(lx_static_t *s);
/* Serve dir under prefix ("/static"; a trailing slash is dropped). 0, or
 * LX_ERR with errno (the directory cannot be opened, or is not one). */
int lx_static_mount(lx_static_t *s, const char *prefix, const char *dir);
/* Content-Type for the extension ext (".x" or "x"). 0 or LX_ERR. */
int lx_static_add_type(lx_static_t *s, const char *ext, const char *type);
/* Paths matching the POSIX extended regex get Cache-Control immutable.
 * 0, or LX_ERR with the regex's error in err. */
int lx_static_set_immutable(lx_static_t *s, const char *regex, char *err,
                            size_t cap);
int lx_static_set_index(lx_static_t *s, const char *name);

/* The mount path (origin-form: lx_http1_origin_path) falls under, and in
 * *rest where the path below it begins; -1 for none. */
int lx_static_match(const lx_static_t *s, lx_str_t path, size_t *rest);

#define LX_STATIC_FIELDS 1024
/* Files up to this size are kept in memory with their cache entry (a
 * snapshot, renewed when a check of the path finds the file changed), so
 * that answering one is no system call at all. */
#define LX_STATIC_SNAPSHOT_MAX 16384

typedef struct {
    int status;
    lx_fentry_t *file; /* the body is file[offset, offset + length),
                          from bytes (its snapshot) unless NULL ... */
    const char *bytes;
    uint64_t offset, length;
    const char *body; /* ... or this text (NULL: no body, as 304) */
    size_t body_len;
    int redirect; /* 301: Location is the path with '/' after it */
    size_t fields_len;
    char fields[LX_STATIC_FIELDS]; /* header lines, each with its CRLF */
} lx_static_resp_t;

/* Answer request h, whose path (origin-form) is below mount m from
 * rest on, at now (ms, any monotonic clock). Call lx_static_done
 * afterwards. */
void lx_static_answer(lx_static_t *s, int m, lx_str_t path, size_t rest,
                      const lx_http1_req_t *h, uint64_t now,
                      lx_static_resp_t *a);
void lx_static_done(lx_static_t *s, lx_static_resp_t *a);
/* The reason phrase of a status the answers use. */
const char *lx_static_reason(int status);

#endif
