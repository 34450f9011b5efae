/* list.h — the frame table and the intrusive lists threaded through it (internal).
 *
 * A frame is one page of local cache. Its entry (16 bytes) holds the links of the one list it
 * is on — a shard's freelist, active list or inactive list — as 32-bit frame numbers, not
 * pointers, plus the vpn of the page it holds and a tag naming the list. A frame taken off
 * every list by the thread working on it is ISOLATED; a frame given back by a cache shrink is
 * RETIRED. Every operation is O(1). The lists do no locking: the caller holds the lock of the
 * shard that owns the list (see shard.h).
 */
#ifndef LETHE_LIST_H
#define LETHE_LIST_H

#include <stdint.h>

#define LETHE_NIL UINT32_MAX

enum lethe_frame_list {
    LETHE_FL_NONE = 0, /* never used (above the high-water mark) */
    LETHE_FL_FREE = 1,
    LETHE_FL_ACTIVE = 2,
    LETHE_FL_INACTIVE = 3,
    LETHE_FL_ISOLATED = 4, /* owned by one thread, on no list */
    LETHE_FL_RETIRED = 5,  /* given back by lethe_set_cache_size */
};

#define LETHE_FRAME_VPN_MASK ((1ULL << 56) - 1)

struct lethe_frame {
    uint32_t prev, next;
    uint64_t info; /* bits 0..55 vpn, bits 56..63 enum lethe_frame_list */
};

_Static_assert(sizeof(struct lethe_frame) == 16, "a frame entry is 16 bytes");

struct lethe_list {
    uint32_t head, tail;
    uint32_t count; /* written under the shard lock, read racily for statistics */
};

static inline uint64_t lethe_frame_vpn(const struct lethe_frame *f)
{
    return f->info & LETHE_FRAME_VPN_MASK;
}

static inline unsigned lethe_frame_list(const struct lethe_frame *f)
{
    return (unsigned)(f->info >> 56);
}

static inline void lethe_frame_set(struct lethe_frame *f, uint64_t vpn, unsigned list)
{
    f->info = (vpn & LETHE_FRAME_VPN_MASK) | ((uint64_t)list << 56);
}

static inline void lethe_frame_set_list(struct lethe_frame *f, unsigned list)
{
    f->info = (f->info & LETHE_FRAME_VPN_MASK) | ((uint64_t)list << 56);
}

static inline void lethe_list_init(struct lethe_list *l)
{
    l->head = l->tail = LETHE_NIL;
    l->count = 0;
}

static inline uint32_t lethe_list_count(const struct lethe_list *l)
{
    return __atomic_load_n(&l->count, __ATOMIC_RELAXED);
}

static inline void lethe_list_set_count(struct lethe_list *l, uint32_t n)
{
    __atomic_store_n(&l->count, n, __ATOMIC_RELAXED);
}

/* Puts frame f at the head of list l and tags it `tag`. */
static inline void lethe_list_push_head(struct lethe_frame *ft, struct lethe_list *l, uint32_t f,
                                        unsigned tag)
{
    struct lethe_frame *e = &ft[f];
    e->prev = LETHE_NIL;
    e->next = l->head;
    if (l->head != LETHE_NIL)
        ft[l->head].prev = f;
    else
        l->tail = f;
    l->head = f;
    lethe_frame_set_list(e, tag);
    lethe_list_set_count(l, l->count + 1);
}

/* Puts frame f at the tail of list l and tags it `tag`. */
static inline void lethe_list_push_tail(struct lethe_frame *ft, struct lethe_list *l, uint32_t f,
                                        unsigned tag)
{
    struct lethe_frame *e = &ft[f];
    e->next = LETHE_NIL;
    e->prev = l->tail;
    if (l->tail != LETHE_NIL)
        ft[l->tail].next = f;
    else
        l->head = f;
    l->tail = f;
    lethe_frame_set_list(e, tag);
    lethe_list_set_count(l, l->count + 1);
}

/* Takes frame f off list l (it must be on it) and tags it ISOLATED. */
static inline void lethe_list_remove(struct lethe_frame *ft, struct lethe_list *l, uint32_t f)
{
    struct lethe_frame *e = &ft[f];
    if (e->prev != LETHE_NIL)
        ft[e->prev].next = e->next;
    else
        l->head = e->next;
    if (e->next != LETHE_NIL)
        ft[e->next].prev = e->prev;
    else
        l->tail = e->prev;
    e->prev = e->next = LETHE_NIL;
    lethe_frame_set_list(e, LETHE_FL_ISOLATED);
    lethe_list_set_count(l, l->count - 1);
}

/* Takes the head of l off the list; LETHE_NIL when empty. */
static inline uint32_t lethe_list_pop_head(struct lethe_frame *ft, struct lethe_list *l)
{
    uint32_t f = l->head;
    if (f != LETHE_NIL)
        lethe_list_remove(ft, l, f);
    return f;
}

/* Moves f from list `from` to the head of list `to`. */
static inline void lethe_list_move_head(struct lethe_frame *ft, struct lethe_list *from,
                                        struct lethe_list *to, uint32_t f, unsigned tag)
{
    lethe_list_remove(ft, from, f);
    lethe_list_push_head(ft, to, f, tag);
}

#endif
