/* Open static files and their metadata (pure C): a bounded cache, least
 * recently used out, so that many requests for one file are one open.
 *
 * A file is opened beneath its mount's directory with openat2(2) and
 * RESOLVE_BENEATH (no path or symlink resolves outside it), non-blocking
 * (a FIFO never blocks the open). A cached entry is checked against its
 * path again once it is LX_FCACHE_CHECK_MS old: a file replaced since
 * (another inode there) is opened anew. Its descriptor is fstat'ed by
 * every lookup, so the size a response announces is the file's then,
 * unless the user keeps the file's bytes with the entry (a small file:
 * that snapshot is sent whole, and renewed after the next check). An
 * entry in use (refs) outlives its eviction until it is put back. */
#ifndef LX_FCACHE_H
#define LX_FCACHE_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define LX_FCACHE_CHECK_MS 1000

/* Siblings of a regular file: precompressed variants beside it. */
#define LX_FSIB_GZ 0x01 /* NAME.gz */
#define LX_FSIB_BR 0x02 /* NAME.br */

typedef struct {
    int dirfd;  /* the directory, opened at start-up (O_PATH) */
    char *real; /* its real path, for kernels without openat2 */
} lx_fmount_t;

typedef struct lx_fentry {
    struct lx_fentry *hnext;         /* the bucket's chain */
    struct lx_fentry *lprev, *lnext; /* recency: most recent first */
    uint32_t hash;
    uint16_t mount;
    uint8_t cached;   /* in the table (else freed when refs drops to 0) */
    uint8_t siblings; /* LX_FSIB_* */
    int fd;
    int refs;
    uint64_t checked; /* ms: when the path was last checked */
    /* from the last stat */
    uint64_t dev, ino, size;
    int64_t mtime_s;
    long mtime_ns;
    unsigned mode;
    /* the user's, kept with the entry: its Content-Type, flags, and a
     * text of its own (malloc'ed; freed with the entry) with the stamp
     * of the metadata it was made from, and an offset into it */
    const char *type;
    size_t type_len;
    uint8_t user;
    uint8_t text_siblings;
    char *text;
    size_t text_len, text_mark;
    uint64_t text_stamp[2];
    /* a small file's bytes, read by the user (malloc'ed; freed with the
     * entry): while it holds them, a lookup within the second skips the
     * fstat, since what is sent is this snapshot, whole */
    char *bytes;
    uint64_t bytes_stamp[2];
    size_t keylen;
    char key[]; /* the relative path, NUL-terminated */
} lx_fentry_t;

typedef struct {
    lx_fentry_t **buckets;
    size_t nbuckets; /* a power of two */
    size_t count, cap;
    lx_fentry_t *head, *tail; /* recency list */
} lx_fcache_t;

/* cap: entries kept (0: every file is closed after its request). 0 or
 * LX_ERR (out of memory). */
int lx_fcache_init(lx_fcache_t *fc, size_t cap);
/* Close and free every entry not in use; those in use are freed when
 * put back. */
void lx_fcache_clear(lx_fcache_t *fc);

/* The file rel[0..len) (NUL-terminated, "" for the directory itself) of
 * mount m, open, with fresh metadata and one more reference; siblings
 * are looked for when want_siblings. NULL with *status (404, 403, 503)
 * when it cannot be opened. now: ms. */
lx_fentry_t *lx_fcache_get(lx_fcache_t *fc, const lx_fmount_t *mounts, int m,
                           const char *rel, size_t len, int want_siblings,
                           uint64_t now, int *status);
/* Done with it (the descriptor may be closed now). */
void lx_fcache_put(lx_fcache_t *fc, lx_fentry_t *e);
/* Debug counter: entries alive in this process. */
long lx_fcache_live(void);

#endif
