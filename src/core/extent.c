/* extent.c — first-fit extent allocator over the region's pages (see extent.h). */
#define _GNU_SOURCE
#include "core/extent.h"

#include <errno.h>
#include <stdbool.h>
#include <string.h>
#include <sys/mman.h>

#define INITIAL_BYTES 4096

int lethe_extents_init(struct lethe_extents *e, uint64_t pages, uint64_t base_pfn)
{
    memset(e, 0, sizeof(*e));
    void *m = mmap(NULL, INITIAL_BYTES, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED)
        return -errno;
    e->runs = m;
    e->bytes = INITIAL_BYTES;
    e->cap = INITIAL_BYTES / sizeof(struct lethe_extent_run);
    e->pages = pages;
    e->base_pfn = base_pfn;
    if (pages) {
        e->runs[0] = (struct lethe_extent_run){0, pages};
        e->nruns = 1;
    }
    e->free_pages = pages;
    pthread_mutex_init(&e->lock, NULL);
    return 0;
}

void lethe_extents_destroy(struct lethe_extents *e)
{
    if (e->runs) {
        munmap(e->runs, e->bytes);
        e->runs = NULL;
        pthread_mutex_destroy(&e->lock);
    }
}

/* Called with e->lock held: room for one more run. */
static int grow(struct lethe_extents *e)
{
    if (e->nruns < e->cap)
        return 0;
    void *m = mremap(e->runs, e->bytes, e->bytes * 2, MREMAP_MAYMOVE);
    if (m == MAP_FAILED)
        return -ENOMEM;
    e->runs = m;
    e->bytes *= 2;
    e->cap = e->bytes / sizeof(struct lethe_extent_run);
    return 0;
}

/* Called with e->lock held: inserts a run at index i. */
static int insert_at(struct lethe_extents *e, size_t i, uint64_t start, uint64_t n)
{
    int rc = grow(e);
    if (rc < 0)
        return rc;
    memmove(&e->runs[i + 1], &e->runs[i], (e->nruns - i) * sizeof(e->runs[0]));
    e->runs[i] = (struct lethe_extent_run){start, n};
    e->nruns++;
    return 0;
}

static void remove_at(struct lethe_extents *e, size_t i)
{
    memmove(&e->runs[i], &e->runs[i + 1], (e->nruns - i - 1) * sizeof(e->runs[0]));
    e->nruns--;
}

int64_t lethe_extents_alloc(struct lethe_extents *e, uint64_t n, uint64_t align)
{
    if (n == 0)
        return -EINVAL;
    if (align == 0)
        align = 1;
    pthread_mutex_lock(&e->lock);
    int64_t result = -ENOMEM;
    for (size_t i = 0; i < e->nruns; i++) {
        struct lethe_extent_run r = e->runs[i];
        uint64_t abs = e->base_pfn + r.start;
        uint64_t pad = (align - abs % align) % align;
        if (pad >= r.n || r.n - pad < n)
            continue;
        uint64_t start = r.start + pad;
        uint64_t tail = r.n - pad - n;
        if (pad && tail) {
            if (insert_at(e, i + 1, start + n, tail) < 0)
                break; /* no memory for the split: report the region as exhausted */
            e->runs[i].n = pad;
        } else if (pad) {
            e->runs[i].n = pad;
        } else if (tail) {
            e->runs[i] = (struct lethe_extent_run){start + n, tail};
        } else {
            remove_at(e, i);
        }
        e->free_pages -= n;
        result = (int64_t)start;
        break;
    }
    pthread_mutex_unlock(&e->lock);
    return result;
}

/* Called with e->lock held: index of the first run starting after `start`. */
static size_t upper_bound(const struct lethe_extents *e, uint64_t start)
{
    size_t lo = 0, hi = e->nruns;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (e->runs[mid].start <= start)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

int lethe_extents_free(struct lethe_extents *e, uint64_t start, uint64_t n)
{
    if (n == 0 || start >= e->pages || n > e->pages - start)
        return -EINVAL;
    pthread_mutex_lock(&e->lock);
    size_t i = upper_bound(e, start); /* runs[i-1].start <= start < runs[i].start */
    int rc = 0;
    bool join_prev = false, join_next = false;
    if (i > 0) {
        struct lethe_extent_run p = e->runs[i - 1];
        if (p.start + p.n > start)
            rc = -EINVAL; /* overlaps a free run */
        join_prev = p.start + p.n == start;
    }
    if (rc == 0 && i < e->nruns) {
        struct lethe_extent_run q = e->runs[i];
        if (start + n > q.start)
            rc = -EINVAL;
        join_next = start + n == q.start;
    }
    if (rc == 0) {
        if (join_prev && join_next) {
            e->runs[i - 1].n += n + e->runs[i].n;
            remove_at(e, i);
        } else if (join_prev) {
            e->runs[i - 1].n += n;
        } else if (join_next) {
            e->runs[i].start = start;
            e->runs[i].n += n;
        } else {
            rc = insert_at(e, i, start, n);
        }
        if (rc == 0)
            e->free_pages += n;
    }
    pthread_mutex_unlock(&e->lock);
    return rc;
}

int64_t lethe_extents_claim(struct lethe_extents *e, uint64_t start, uint64_t n)
{
    if (n == 0 || start >= e->pages || n > e->pages - start)
        return -EINVAL;
    uint64_t end = start + n;
    pthread_mutex_lock(&e->lock);
    int64_t taken = 0;
    size_t i = upper_bound(e, start);
    if (i > 0 && e->runs[i - 1].start + e->runs[i - 1].n > start)
        i--; /* the run that holds start */
    while (i < e->nruns && e->runs[i].start < end) {
        struct lethe_extent_run r = e->runs[i];
        uint64_t lo = r.start > start ? r.start : start;
        uint64_t hi = r.start + r.n < end ? r.start + r.n : end;
        bool head = r.start<lo, tail = r.start + r.n> hi;
        if (head && tail) {
            if (insert_at(e, i + 1, hi, r.start + r.n - hi) < 0) {
                taken = -ENOMEM;
                break;
            }
            e->runs[i].n = lo - r.start;
            i += 2;
        } else if (head) {
            e->runs[i].n = lo - r.start;
            i++;
        } else if (tail) {
            e->runs[i] = (struct lethe_extent_run){hi, r.start + r.n - hi};
            i++;
        } else {
            remove_at(e, i);
        }
        e->free_pages -= hi - lo;
        taken += (int64_t)(hi - lo);
    }
    pthread_mutex_unlock(&e->lock);
    return taken;
}

int lethe_extents_allocated(struct lethe_extents *e, uint64_t start, uint64_t n)
{
    if (n == 0 || start >= e->pages || n > e->pages - start)
        return 0;
    pthread_mutex_lock(&e->lock);
    size_t i = upper_bound(e, start);
    int ok = 1;
    if (i > 0 && e->runs[i - 1].start + e->runs[i - 1].n > start)
        ok = 0;
    if (i < e->nruns && start + n > e->runs[i].start)
        ok = 0;
    pthread_mutex_unlock(&e->lock);
    return ok;
}

uint64_t lethe_extents_free_pages(struct lethe_extents *e)
{
    pthread_mutex_lock(&e->lock);
    uint64_t n = e->free_pages;
    pthread_mutex_unlock(&e->lock);
    return n;
}
