/* Open static files and their metadata: a bounded cache. */
#define _GNU_SOURCE
#include "fcache.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#if defined(__linux__)
#include <sys/syscall.h>
#if defined(SYS_openat2)
#include <linux/openat2.h>
#endif
#endif

#define OPEN_FLAGS (O_RDONLY | O_NONBLOCK | O_CLOEXEC | O_NOCTTY)

static long live;

long lx_fcache_live(void)
{
    return live;
}

int lx_fcache_init(lx_fcache_t *fc, size_t cap)
{
    memset(fc, 0, sizeof(*fc));
    fc->cap = cap;
    fc->nbuckets = 16;
    while (fc->nbuckets < cap)
        fc->nbuckets <<= 1;
    fc->buckets = calloc(fc->nbuckets, sizeof(*fc->buckets));
    return fc->buckets ? 0 : -1;
}

static uint32_t hash_key(int m, const char *s, size_t n)
{
    uint32_t h = 2166136261u ^ (uint32_t)m;
    for (size_t i = 0; i < n; i++)
        h = (h ^ (unsigned char)s[i]) * 16777619u;
    return h;
}

static void entry_free(lx_fentry_t *e)
{
    if (e->fd >= 0)
        close(e->fd);
    free(e->text);
    free(e->bytes);
    free(e);
    live--;
}

/* Out of the table and the recency list; freed now unless in use. */
static void detach(lx_fcache_t *fc, lx_fentry_t *e)
{
    if (!e->cached)
        return;
    lx_fentry_t **pp = &fc->buckets[e->hash & (fc->nbuckets - 1)];
    while (*pp != e)
        pp = &(*pp)->hnext;
    *pp = e->hnext;
    if (e->lprev)
        e->lprev->lnext = e->lnext;
    else
        fc->head = e->lnext;
    if (e->lnext)
        e->lnext->lprev = e->lprev;
    else
        fc->tail = e->lprev;
    e->hnext = e->lprev = e->lnext = NULL;
    e->cached = 0;
    fc->count--;
    if (e->refs == 0)
        entry_free(e);
}

void lx_fcache_clear(lx_fcache_t *fc)
{
    while (fc->head != NULL)
        detach(fc, fc->head);
    free(fc->buckets);
    fc->buckets = NULL;
    fc->nbuckets = 0;
}

static void to_front(lx_fcache_t *fc, lx_fentry_t *e)
{
    if (fc->head == e)
        return;
    e->lprev->lnext = e->lnext;
    if (e->lnext)
        e->lnext->lprev = e->lprev;
    else
        fc->tail = e->lprev;
    e->lprev = NULL;
    e->lnext = fc->head;
    fc->head->lprev = e;
    fc->head = e;
}

static void note_stat(lx_fentry_t *e, const struct stat *st)
{
    e->dev = (uint64_t)st->st_dev;
    e->ino = (uint64_t)st->st_ino;
    e->size = st->st_size > 0 ? (uint64_t)st->st_size : 0;
    e->mtime_s = (int64_t)st->st_mtim.tv_sec;
    e->mtime_ns = st->st_mtim.tv_nsec;
    e->mode = (unsigned)st->st_mode;
}

static int status_of(int err)
{
    switch (err) {
    case EACCES:
    case EPERM:
        return 403;
    case EMFILE:
    case ENFILE:
    case ENOMEM:
        return 503;
    default:
        return 404; /* ENOENT, ENOTDIR, ELOOP, EXDEV (outside), ... */
    }
}

/* Without openat2: the path resolved by realpath must stay below the
 * mount's own real path; the file is then opened without following a
 * symlink at its last step. */
static int open_fallback(const lx_fmount_t *mt, const char *rel)
{
    size_t rl = strlen(mt->real), n = strlen(rel);
    if (rl + n + 2 > PATH_MAX) {
        errno = ENAMETOOLONG;
        return -1;
    }
    char path[PATH_MAX], resolved[PATH_MAX];
    memcpy(path, mt->real, rl);
    path[rl] = '/';
    memcpy(path + rl + 1, rel, n + 1);
    if (realpath(path, resolved) == NULL)
        return -1;
    if (strncmp(resolved, mt->real, rl) != 0 ||
        (resolved[rl] != '/' && resolved[rl] != '\0' &&
         !(rl == 1 && mt->real[0] == '/'))) {
        errno = EXDEV;
        return -1;
    }
    return open(resolved, OPEN_FLAGS | O_NOFOLLOW);
}

static int open_beneath(const lx_fmount_t *mt, const char *rel)
{
    if (rel[0] == '\0')
        rel = ".";
#if defined(SYS_openat2)
    static int no_openat2;
    if (!no_openat2) {
        struct open_how how;
        memset(&how, 0, sizeof(how));
        how.flags = OPEN_FLAGS;
        how.resolve = RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS;
        long fd = syscall(SYS_openat2, mt->dirfd, rel, &how, sizeof(how));
        if (fd >= 0 || (errno != ENOSYS && errno != EPERM))
            return (int)fd;
        /* No openat2 in this kernel (ENOSYS), or a seccomp filter that
         * refuses system calls it does not know (EPERM). */
        if (errno == ENOSYS)
            no_openat2 = 1;
    }
#endif
    return open_fallback(mt, rel);
}

/* Whether NAME + suffix is a regular file beside the entry's. */
static int sibling(const lx_fmount_t *mt, const lx_fentry_t *e,
                   const char *suffix)
{
    char path[PATH_MAX];
    if (e->keylen + 4 > sizeof(path))
        return 0;
    memcpy(path, e->key, e->keylen);
    memcpy(path + e->keylen, suffix, 4);
    struct stat st;
    return fstatat(mt->dirfd, path, &st, 0) == 0 && S_ISREG(st.st_mode);
}

static void find_siblings(const lx_fmount_t *mt, lx_fentry_t *e)
{
    e->siblings = 0;
    if (!S_ISREG(e->mode) || e->keylen == 0)
        return;
    if (sibling(mt, e, ".gz"))
        e->siblings |= LX_FSIB_GZ;
    if (sibling(mt, e, ".br"))
        e->siblings |= LX_FSIB_BR;
}

/* The entry still names its path (a stat of the path finds its inode):
 * refresh it. 0 when the path changed or is gone. */
static int recheck(const lx_fmount_t *mt, lx_fentry_t *e, int want_siblings,
                   uint64_t now)
{
    struct stat st;
    const char *rel = e->keylen ? e->key : ".";
    if (fstatat(mt->dirfd, rel, &st, 0) < 0 || (uint64_t)st.st_dev != e->dev ||
        (uint64_t)st.st_ino != e->ino)
        return 0;
    note_stat(e, &st);
    if (want_siblings)
        find_siblings(mt, e);
    e->checked = now;
    return 1;
}

static lx_fentry_t *open_entry(lx_fcache_t *fc, const lx_fmount_t *mounts,
                               int m, const char *rel, size_t len, uint32_t h,
                               int want_siblings, uint64_t now, int *status)
{
    int fd = open_beneath(&mounts[m], rel);
    if (fd < 0) {
        *status = status_of(errno);
        return NULL;
    }
    struct stat st;
    if (fstat(fd, &st) < 0) {
        *status = status_of(errno);
        close(fd);
        return NULL;
    }
    lx_fentry_t *e = malloc(sizeof(*e) + len + 1);
    if (e == NULL) {
        close(fd);
        *status = 503;
        return NULL;
    }
    live++;
    memset(e, 0, sizeof(*e));
    e->fd = fd;
    e->hash = h;
    e->mount = (uint16_t)m;
    e->keylen = len;
    memcpy(e->key, rel, len);
    e->key[len] = '\0';
    note_stat(e, &st);
    if (want_siblings)
        find_siblings(&mounts[m], e);
    e->checked = now;
    if (fc->cap == 0)
        return e;
    if (fc->count >= fc->cap)
        detach(fc, fc->tail);
    lx_fentry_t **b = &fc->buckets[h & (fc->nbuckets - 1)];
    e->hnext = *b;
    *b = e;
    e->lnext = fc->head;
    if (fc->head)
        fc->head->lprev = e;
    fc->head = e;
    if (fc->tail == NULL)
        fc->tail = e;
    e->cached = 1;
    fc->count++;
    return e;
}

lx_fentry_t *lx_fcache_get(lx_fcache_t *fc, const lx_fmount_t *mounts, int m,
                           const char *rel, size_t len, int want_siblings,
                           uint64_t now, int *status)
{
    uint32_t h = hash_key(m, rel, len);
    lx_fentry_t *e = fc->nbuckets ? fc->buckets[h & (fc->nbuckets - 1)] : NULL;
    for (; e != NULL; e = e->hnext)
        if (e->hash == h && e->mount == m && e->keylen == len &&
            memcmp(e->key, rel, len) == 0)
            break;
    if (e != NULL) {
        int fresh;
        if (now - e->checked < LX_FCACHE_CHECK_MS && now >= e->checked) {
            struct stat st;
            fresh = e->bytes != NULL || fstat(e->fd, &st) == 0;
            if (fresh && e->bytes == NULL)
                note_stat(e, &st);
        } else {
            fresh = recheck(&mounts[m], e, want_siblings, now);
        }
        if (fresh) {
            to_front(fc, e);
            e->refs++;
            return e;
        }
        detach(fc, e);
    }
    e = open_entry(fc, mounts, m, rel, len, h, want_siblings, now, status);
    if (e != NULL)
        e->refs++;
    return e;
}

void lx_fcache_put(lx_fcache_t *fc, lx_fentry_t *e)
{
    (void)fc;
    if (--e->refs == 0 && !e->cached)
        entry_free(e);
}
