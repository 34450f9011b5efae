/* multi.c — several memory nodes behind one flat slot space, each page on `replicas` of them.
 *
 * Placement. The program's slots are cut into chunks of MULTI_CHUNK (64) slots. Each chunk has
 * `replicas` places, each a chunk of slots on a distinct node. At open every node is asked for
 * an equal share of the copies plus headroom: with more nodes than replicas, the share it would
 * hold after one node is lost (so that the lost copies can be re-created on the others), else
 * the plain share; a node that refuses the larger share for capacity is asked for the plain
 * one. Chunks are then placed one after the other, each copy on the node with the most chunks
 * still free (ties by turn), so nodes fill in proportion to what they lent and consecutive
 * chunks alternate between nodes.
 *
 * A place is one 64-bit word: valid bit, node, the node's generation, the node's chunk. It is
 * usable while its node is live and still in that generation: losing a node invalidates all
 * its places at once (one store), and a node that rejoins starts a new generation, empty.
 *
 * Writes go to every usable place of the page's chunk (grouped per node, one batch each);
 * a write that reaches at least one copy succeeds. Reads take the usable copy on the node
 * with the lowest recent latency; a node that fails is marked lost and the next copy is read.
 * With an expected checksum a copy that fails it is reported, the next copy is read, and the
 * bad copy is rewritten from the good one.
 *
 * Repair. A thread probes the nodes (every 100 ms), marks the ones that went away, tries to
 * reconnect to lost ones (every second; a node that answers rejoins empty, in a new
 * generation), and re-creates copies: for a chunk with fewer usable places than replicas it
 * picks a live node without a copy that has a free chunk, copies the chunk's 64 slots there
 * from a usable copy and publishes the place. Chunks never written are placed without a copy.
 * Copies are limited to repair_rate bytes a second.
 *
 * Why a copy is never stale: writers hold the read side of the chunk's stripe lock (one of
 * MULTI_STRIPES rwlocks, by chunk) from reading the places to the end of the write; the
 * repair copies a chunk and publishes its new place under the write side. A write either
 * finished before the copy read the source, or starts after the place is published and
 * writes the new copy too. Reads need no lock: the place a reader uses was complete when
 * it was published.
 *
 * Channels: a multi channel holds one channel per node, opened by its owner. After a node
 * rejoins (a new transport), the owner opens a channel to it at its next operation; old
 * transports are closed with the multi transport, their channels by their owners.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* pthread_rwlockattr_setkind_np */
#endif
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "core/checksum.h"
#include "core/log.h"
#include "rdma/transport_impl.h"

#define MULTI_CHUNK       64u  /* slots per placement unit */
#define MULTI_STRIPES     64u  /* stripe locks, by chunk */
#define MULTI_RETIRED     64u  /* transports replaced by rejoins, closed at the end */
#define MULTI_REPAIR_VCPU 0xfffu
#define PROBE_NS          (100ull * 1000 * 1000)
#define REJOIN_NS         (1000ull * 1000 * 1000)

/* A place: bit 63 valid, bits 56..59 node, 32..55 generation (24 bits), 0..31 node chunk. */
#define PLACE_VALID (1ull << 63)
static inline uint64_t place_make(unsigned node, uint32_t gen, uint32_t nchunk)
{
    return PLACE_VALID | (uint64_t)node << 56 | (uint64_t)(gen & 0xffffff) << 32 | nchunk;
}
static inline unsigned place_node(uint64_t p) { return (unsigned)(p >> 56) & 0xf; }
static inline uint32_t place_gen(uint64_t p) { return (uint32_t)(p >> 32) & 0xffffff; }
static inline uint32_t place_chunk(uint64_t p) { return (uint32_t)p; }

enum { NODE_LIVE = 1, NODE_LOST = 2 };

struct mnode {
    struct lethe_transport *t;  /* current transport (atomic pointer); NULL before the first */
    uint32_t gen;               /* atomic; bumped when the node rejoins */
    int state;                  /* atomic: NODE_LIVE or NODE_LOST */
    char addr[LETHE_ADDR_MAX];
    char why[160];              /* why it was lost (written before state turns LOST) */
    uint64_t lost_ns;
    uint64_t last_try_ns;
    unsigned away_tries; /* failed rejoins since it was last seen live (repair thread only) */
    /* free chunks of the current generation: a stack, under multi.lock */
    uint32_t *free;
    uint32_t nfree, nchunks;
    /* figures (relaxed atomics) */
    uint64_t reads, writes, failures, bad_copies, rejoins;
    uint64_t lat_ns; /* moving average of a read's time per page */
};

struct multi {
    unsigned n, r;
    uint64_t nchunks; /* the program's chunks */
    uint64_t *places; /* nchunks * r (atomic words) */
    uint64_t *written; /* bit per chunk: ever written (atomic) */
    size_t places_bytes, written_bytes;
    struct mnode node[LETHE_MAX_MEMNODES];
    pthread_rwlock_t stripe[MULTI_STRIPES];
    pthread_mutex_t lock; /* free stacks, node state changes, retired[] */
    struct lethe_transport *retired[MULTI_RETIRED];
    unsigned nretired;
    /* repair */
    pthread_t thread;
    bool thread_started;
    pthread_mutex_t wait_lock;
    pthread_cond_t wait;
    bool stop;
    struct lethe_channel *rch; /* the repair thread's own multi channel */
    void *rbuf;                /* MULTI_CHUNK pages */
    uint64_t repaired_pages, bad_copies, degraded, lost_chunks, repair_rate_pps; /* atomics */
    uint64_t repair_started_ns, repair_pages_at_start;
    bool repairing;
    bool warned_room, warned_lost;
};

struct multi_chan {
    struct lethe_channel *sub[LETHE_MAX_MEMNODES];
    uint32_t sub_gen[LETHE_MAX_MEMNODES];
    unsigned cap; /* max_batch */
    /* per node: the requests of one batch */
    uint64_t *nslots;  /* n * cap */
    void **npages;     /* n * cap */
    unsigned *nidx;    /* n * cap: index into the caller's batch */
    unsigned count[LETHE_MAX_MEMNODES];
    /* per page of a batch */
    uint8_t *tried;    /* bit per replica */
    uint8_t *ok;
    uint8_t *bad;      /* bit per replica whose copy failed its checksum */
    int8_t *from;      /* replica a page was read from */
};

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static inline uint64_t ld(const uint64_t *p) { return __atomic_load_n(p, __ATOMIC_ACQUIRE); }
static inline void add(uint64_t *p, uint64_t v) { __atomic_fetch_add(p, v, __ATOMIC_RELAXED); }

static bool place_usable(const struct multi *m, uint64_t p)
{
    if (!(p & PLACE_VALID))
        return false;
    const struct mnode *nd = &m->node[place_node(p)];
    return __atomic_load_n(&nd->state, __ATOMIC_ACQUIRE) == NODE_LIVE &&
           (__atomic_load_n(&nd->gen, __ATOMIC_ACQUIRE) & 0xffffff) == place_gen(p);
}

static uint64_t *places_of(struct multi *m, uint64_t chunk)
{
    return &m->places[chunk * m->r];
}

/* Marks node i lost (once per generation), saying why. */
static void mark_lost(struct multi *m, unsigned i, uint32_t gen, const char *why)
{
    struct mnode *nd = &m->node[i];
    pthread_mutex_lock(&m->lock);
    if (__atomic_load_n(&nd->state, __ATOMIC_RELAXED) == NODE_LIVE &&
        __atomic_load_n(&nd->gen, __ATOMIC_RELAXED) == gen) {
        snprintf(nd->why, sizeof(nd->why), "%s", why);
        nd->lost_ns = now_ns();
        __atomic_store_n(&nd->last_try_ns, nd->lost_ns, __ATOMIC_RELAXED);
        __atomic_store_n(&nd->state, NODE_LOST, __ATOMIC_RELEASE);
        add(&nd->failures, 1);
        unsigned live = 0;
        for (unsigned k = 0; k < m->n; k++)
            live += __atomic_load_n(&m->node[k].state, __ATOMIC_RELAXED) == NODE_LIVE;
        if (m->r > 1)
            lethe_warn("memnode %s lost: %s; serving from the %u other%s, re-creating its "
                       "copies in the background",
                       nd->addr, why, live, live == 1 ? "" : "s");
        else
            lethe_error("memnode %s lost: %s (replicas = 1: the pages it held are gone)",
                        nd->addr, why);
    }
    pthread_mutex_unlock(&m->lock);
    pthread_mutex_lock(&m->wait_lock);
    pthread_cond_signal(&m->wait);
    pthread_mutex_unlock(&m->wait_lock);
}

/* --- channels --- */

/* The owner's channel to node i in its current generation, or NULL (node lost). */
static struct lethe_channel *sub_of(struct lethe_channel *ch, unsigned i)
{
    struct multi *m = ch->t->priv;
    struct multi_chan *mc = ch->priv;
    struct mnode *nd = &m->node[i];
    if (__atomic_load_n(&nd->state, __ATOMIC_ACQUIRE) != NODE_LIVE)
        return NULL;
    uint32_t gen = __atomic_load_n(&nd->gen, __ATOMIC_ACQUIRE);
    if (mc->sub[i] && mc->sub_gen[i] == gen)
        return mc->sub[i];
    if (mc->sub[i])
        lethe_channel_close(mc->sub[i]);
    mc->sub[i] = NULL;
    struct lethe_transport *t = __atomic_load_n(&nd->t, __ATOMIC_ACQUIRE);
    int rc = lethe_channel_open(t, ch->vcpu, &mc->sub[i]);
    if (rc < 0) {
        mc->sub[i] = NULL;
        char why[128];
        snprintf(why, sizeof(why), "cannot open a channel: %s", strerror(-rc));
        mark_lost(m, i, gen, why);
        return NULL;
    }
    mc->sub_gen[i] = gen;
    return mc->sub[i];
}

static void multi_channel_close(struct lethe_channel *ch)
{
    struct multi *m = ch->t->priv;
    struct multi_chan *mc = ch->priv;
    if (!mc)
        return;
    for (unsigned i = 0; i < m->n; i++)
        if (mc->sub[i])
            lethe_channel_close(mc->sub[i]);
    free(mc->nslots);
    free(mc->npages);
    free(mc->nidx);
    free(mc->tried);
    free(mc->ok);
    free(mc->bad);
    free(mc->from);
    free(mc);
    ch->priv = NULL;
}

static int multi_channel_open(struct lethe_channel *ch)
{
    struct multi *m = ch->t->priv;
    struct multi_chan *mc = calloc(1, sizeof(*mc));
    if (!mc)
        return -ENOMEM;
    ch->priv = mc;
    mc->cap = ch->t->params.max_batch ? ch->t->params.max_batch : MULTI_CHUNK;
    if (mc->cap < MULTI_CHUNK)
        mc->cap = MULTI_CHUNK; /* the repair copies whole chunks */
    size_t per = (size_t)m->n * mc->cap;
    mc->nslots = calloc(per, sizeof(*mc->nslots));
    mc->npages = calloc(per, sizeof(*mc->npages));
    mc->nidx = calloc(per, sizeof(*mc->nidx));
    mc->tried = calloc(mc->cap, 1);
    mc->ok = calloc(mc->cap, 1);
    mc->bad = calloc(mc->cap, 1);
    mc->from = calloc(mc->cap, 1);
    if (!mc->nslots || !mc->npages || !mc->nidx || !mc->tried || !mc->ok || !mc->bad ||
        !mc->from) {
        multi_channel_close(ch);
        return -ENOMEM;
    }
    for (unsigned i = 0; i < m->n; i++)
        (void)sub_of(ch, i); /* a node that cannot be reached now is marked lost */
    return 0;
}

/* --- the data path --- */

static void stripes_of(struct multi *m, const uint64_t *slots, unsigned n, uint64_t *mask)
{
    *mask = 0;
    (void)m;
    for (unsigned k = 0; k < n; k++)
        *mask |= 1ull << ((slots[k] / MULTI_CHUNK) % MULTI_STRIPES);
}

static void stripes_lock(struct multi *m, uint64_t mask)
{
    for (unsigned s = 0; s < MULTI_STRIPES; s++)
        if (mask & (1ull << s))
            pthread_rwlock_rdlock(&m->stripe[s]);
}

static void stripes_unlock(struct multi *m, uint64_t mask)
{
    for (unsigned s = 0; s < MULTI_STRIPES; s++)
        if (mask & (1ull << s))
            pthread_rwlock_unlock(&m->stripe[s]);
}

static void queue(struct multi_chan *mc, unsigned node, uint64_t nslot, void *page, unsigned idx)
{
    unsigned at = node * mc->cap + mc->count[node]++;
    mc->nslots[at] = nslot;
    mc->npages[at] = page;
    mc->nidx[at] = idx;
}

static uint64_t node_slot(uint64_t place, uint64_t slot)
{
    return (uint64_t)place_chunk(place) * MULTI_CHUNK + slot % MULTI_CHUNK;
}

/* Writes the queued requests: posted to every node first, so that the copies travel at
 * once (tcp, verbs), then waited for node by node. A node that fails is marked lost and its
 * pages are not counted. ok[idx] counts the copies written. */
static void flush_writes(struct lethe_channel *ch, uint8_t *okc)
{
    struct multi *m = ch->t->priv;
    struct multi_chan *mc = ch->priv;
    uint32_t posted = 0; /* nodes with a write to wait for */
    for (unsigned i = 0; i < m->n; i++) {
        unsigned cnt = mc->count[i];
        struct lethe_channel *sub = cnt ? sub_of(ch, i) : NULL;
        if (!sub) {
            mc->count[i] = 0;
            continue;
        }
        unsigned at = i * mc->cap;
        lethe_channel_write_post(sub, &mc->nslots[at], (const void *const *)&mc->npages[at], cnt);
        posted |= 1u << i;
    }
    for (unsigned i = 0; i < m->n; i++) {
        if (!(posted & (1u << i)))
            continue;
        struct lethe_channel *sub = mc->sub[i];
        unsigned cnt = mc->count[i], at = i * mc->cap;
        mc->count[i] = 0;
        if (lethe_channel_write_wait(sub) < 0) {
            mark_lost(m, i, mc->sub_gen[i], lethe_channel_error(sub));
            continue;
        }
        add(&m->node[i].writes, cnt);
        for (unsigned k = 0; k < cnt; k++)
            okc[mc->nidx[at + k]]++;
    }
}

static void no_copy_error(struct lethe_channel *ch, uint64_t slot, const char *what)
{
    struct multi *m = ch->t->priv;
    uint64_t *pl = places_of(m, slot / MULTI_CHUNK);
    int len = snprintf(ch->error, sizeof(ch->error), "%s: no live copy %s slot %llu:",
                       ch->t->describe, what, (unsigned long long)slot);
    pthread_mutex_lock(&m->lock); /* the nodes' reasons */
    for (unsigned k = 0; k < m->r && len > 0 && (size_t)len < sizeof(ch->error); k++) {
        uint64_t p = ld(&pl[k]);
        if (!(p & PLACE_VALID))
            continue;
        const struct mnode *nd = &m->node[place_node(p)];
        bool lost = __atomic_load_n(&nd->state, __ATOMIC_ACQUIRE) != NODE_LIVE;
        len += snprintf(ch->error + len, sizeof(ch->error) - (size_t)len, "%s memnode %s %s%s",
                        k ? ";" : "", nd->addr, lost ? "lost: " : "rejoined empty",
                        lost ? nd->why : "");
    }
    pthread_mutex_unlock(&m->lock);
}

static int multi_write_batch(struct lethe_channel *ch, const uint64_t *slots,
                             const void *const *pages, unsigned n)
{
    struct multi *m = ch->t->priv;
    struct multi_chan *mc = ch->priv;
    uint64_t mask;
    stripes_of(m, slots, n, &mask);
    stripes_lock(m, mask);
    memset(mc->ok, 0, n);
    for (unsigned k = 0; k < n; k++) {
        uint64_t chunk = slots[k] / MULTI_CHUNK;
        uint64_t *pl = places_of(m, chunk);
        for (unsigned j = 0; j < m->r; j++) {
            uint64_t p = ld(&pl[j]);
            if (place_usable(m, p))
                queue(mc, place_node(p), node_slot(p, slots[k]), (void *)pages[k], k);
        }
        uint64_t bit = 1ull << (chunk % 64);
        if (!(ld(&m->written[chunk / 64]) & bit))
            __atomic_fetch_or(&m->written[chunk / 64], bit, __ATOMIC_RELEASE);
    }
    flush_writes(ch, mc->ok);
    stripes_unlock(m, mask);
    for (unsigned k = 0; k < n; k++) {
        if (!mc->ok[k]) {
            no_copy_error(ch, slots[k], "to write");
            return -EIO;
        }
    }
    return 0;
}

/* The usable copy of slot's chunk not tried yet on the node with the lowest latency. */
static int pick_copy(struct multi *m, uint64_t slot, uint8_t tried, uint64_t *place)
{
    uint64_t *pl = places_of(m, slot / MULTI_CHUNK);
    int best = -1;
    uint64_t best_lat = UINT64_MAX;
    for (unsigned j = 0; j < m->r; j++) {
        if (tried & (1u << j))
            continue;
        uint64_t p = ld(&pl[j]);
        if (!place_usable(m, p))
            continue;
        uint64_t lat = __atomic_load_n(&m->node[place_node(p)].lat_ns, __ATOMIC_RELAXED);
        if (lat < best_lat) {
            best = (int)j;
            best_lat = lat;
            *place = p;
        }
    }
    return best;
}

/* Rewrites a copy that failed its checksum from the good bytes in page. */
static void repair_copy(struct lethe_channel *ch, uint64_t slot, unsigned bad, const void *page)
{
    struct multi *m = ch->t->priv;
    uint64_t chunk = slot / MULTI_CHUNK;
    pthread_rwlock_rdlock(&m->stripe[chunk % MULTI_STRIPES]);
    uint64_t p = ld(&places_of(m, chunk)[bad]);
    if (place_usable(m, p)) {
        unsigned i = place_node(p);
        struct lethe_channel *sub = sub_of(ch, i);
        if (sub) {
            uint64_t ns = node_slot(p, slot);
            uint32_t gen = ch->priv ? ((struct multi_chan *)ch->priv)->sub_gen[i] : 0;
            if (lethe_channel_write_batch(sub, &ns, &page, 1) < 0)
                mark_lost(m, i, gen, lethe_channel_error(sub));
        }
    }
    pthread_rwlock_unlock(&m->stripe[chunk % MULTI_STRIPES]);
}

static int multi_read_checked(struct lethe_channel *ch, const uint64_t *slots, void *const *pages,
                              const uint64_t *sums, unsigned n)
{
    struct multi *m = ch->t->priv;
    struct multi_chan *mc = ch->priv;
    memset(mc->tried, 0, n);
    memset(mc->ok, 0, n);
    uint8_t *bad = mc->bad; /* no allocation here: this runs in fault handlers (SIGBUS too) */
    memset(bad, 0, n);
    unsigned left = n;
    for (unsigned round = 0; round < m->r && left; round++) {
        for (unsigned k = 0; k < n; k++) {
            if (mc->ok[k])
                continue;
            uint64_t p = 0;
            int j = pick_copy(m, slots[k], mc->tried[k], &p);
            if (j < 0)
                continue;
            mc->tried[k] |= (uint8_t)(1u << j);
            mc->from[k] = (int8_t)j;
            queue(mc, place_node(p), node_slot(p, slots[k]), pages[k], k);
        }
        for (unsigned i = 0; i < m->n; i++) {
            unsigned cnt = mc->count[i];
            mc->count[i] = 0;
            if (!cnt)
                continue;
            struct lethe_channel *sub = sub_of(ch, i);
            if (!sub)
                continue;
            uint32_t gen = mc->sub_gen[i];
            unsigned at = i * mc->cap;
            uint64_t t0 = now_ns();
            int rc = lethe_channel_read_batch(sub, &mc->nslots[at], &mc->npages[at], cnt);
            if (rc < 0) {
                mark_lost(m, i, gen, lethe_channel_error(sub));
                continue;
            }
            struct mnode *nd = &m->node[i];
            uint64_t per = (now_ns() - t0) / cnt;
            uint64_t old = __atomic_load_n(&nd->lat_ns, __ATOMIC_RELAXED);
            __atomic_store_n(&nd->lat_ns, old ? (old * 7 + per) / 8 : per, __ATOMIC_RELAXED);
            add(&nd->reads, cnt);
            for (unsigned q = 0; q < cnt; q++) {
                unsigned k = mc->nidx[at + q];
                if (sums && sums[k] && lethe_page_checksum(pages[k]) != sums[k]) {
                    bad[k] |= (uint8_t)(1u << mc->from[k]);
                    add(&nd->bad_copies, 1);
                    add(&m->bad_copies, 1);
                    lethe_warn("slot %llu: the copy on memnode %s (its slot %llu) fails its "
                               "checksum; reading another copy",
                               (unsigned long long)slots[k], nd->addr,
                               (unsigned long long)mc->nslots[at + q]);
                    continue;
                }
                mc->ok[k] = 1;
                left--;
            }
        }
    }
    int rc = 0;
    for (unsigned k = 0; k < n; k++) {
        if (mc->ok[k]) {
            for (unsigned j = 0; j < m->r; j++)
                if (bad[k] & (1u << j)) {
                    repair_copy(ch, slots[k], j, pages[k]);
                    lethe_warn("slot %llu: bad copy rewritten from a good one",
                               (unsigned long long)slots[k]);
                }
            continue;
        }
        if (bad[k])
            continue; /* every copy read was bad: returned as read, the caller reports it */
        no_copy_error(ch, slots[k], "to read");
        rc = -EIO;
        break;
    }
    return rc;
}

static int multi_read_batch(struct lethe_channel *ch, const uint64_t *slots, void *const *pages,
                            unsigned n)
{
    return multi_read_checked(ch, slots, pages, NULL, n);
}

/* --- placement --- */

/* Takes a free chunk of node i (under m->lock); UINT32_MAX if none. */
static uint32_t take_chunk(struct mnode *nd)
{
    return nd->nfree ? nd->free[--nd->nfree] : UINT32_MAX;
}

/* The live node with the most free chunks that is not in `avoid` (bit per node); -1: none. */
static int roomiest(struct multi *m, unsigned avoid, unsigned turn)
{
    int best = -1;
    uint32_t most = 0;
    for (unsigned q = 0; q < m->n; q++) {
        unsigned i = (q + turn) % m->n;
        struct mnode *nd = &m->node[i];
        if ((avoid & (1u << i)) || __atomic_load_n(&nd->state, __ATOMIC_RELAXED) != NODE_LIVE)
            continue;
        if (nd->nfree > most) {
            most = nd->nfree;
            best = (int)i;
        }
    }
    return best;
}

static int set_free(struct mnode *nd, uint64_t pages)
{
    uint64_t chunks = pages / MULTI_CHUNK;
    if (chunks > UINT32_MAX - 1)
        chunks = UINT32_MAX - 1;
    uint32_t *f = malloc((chunks ? chunks : 1) * sizeof(*f));
    if (!f)
        return -ENOMEM;
    for (uint64_t c = 0; c < chunks; c++)
        f[c] = (uint32_t)(chunks - 1 - c); /* low chunks first */
    free(nd->free);
    nd->free = f;
    nd->nfree = (uint32_t)chunks;
    __atomic_store_n(&nd->nchunks, (uint32_t)chunks, __ATOMIC_RELAXED);
    return 0;
}

/* Node i's transport, with the share asked of it. */
static int open_node(struct lethe_transport *t, unsigned i, uint64_t bytes,
                     struct lethe_transport **out, uint64_t connect_timeout_us)
{
    struct lethe_transport_params p = t->params;
    p.n_nodes = 0;
    p.replicas = 1;
    p.remote_size = bytes;
    if (connect_timeout_us)
        p.connect_timeout_us = connect_timeout_us;
    snprintf(p.node, sizeof(p.node), "%s", t->params.nodes[i]);
    snprintf(p.token, sizeof(p.token), "%s", t->params.tokens[i]);
    return lethe_transport_open_kind(&p, out);
}

static void *repair_main(void *arg);

static void multi_close(struct lethe_transport *t)
{
    struct multi *m = t->priv;
    if (m->thread_started) {
        pthread_mutex_lock(&m->wait_lock);
        m->stop = true;
        pthread_cond_signal(&m->wait);
        pthread_mutex_unlock(&m->wait_lock);
        pthread_join(m->thread, NULL);
    }
    if (m->rch)
        lethe_channel_close(m->rch);
    free(m->rbuf);
    for (unsigned i = 0; i < m->n; i++) {
        if (m->node[i].t)
            lethe_transport_close(m->node[i].t);
        free(m->node[i].free);
    }
    for (unsigned i = 0; i < m->nretired; i++)
        lethe_transport_close(m->retired[i]);
    if (m->places)
        munmap(m->places, m->places_bytes);
    if (m->written)
        munmap(m->written, m->written_bytes);
    for (unsigned s = 0; s < MULTI_STRIPES; s++)
        pthread_rwlock_destroy(&m->stripe[s]);
    pthread_mutex_destroy(&m->lock);
    pthread_mutex_destroy(&m->wait_lock);
    pthread_cond_destroy(&m->wait);
    free(m);
}

static int multi_open(struct lethe_transport *t)
{
    const struct lethe_transport_params *p = &t->params;
    unsigned n = p->n_nodes ? p->n_nodes : 1, r = p->replicas ? p->replicas : 1;
    if (n > LETHE_MAX_MEMNODES || r > 3 || r > n) {
        lethe_error("%s: %u replicas need at least as many memory nodes (%u given, at most %d)",
                    t->describe, r, n, LETHE_MAX_MEMNODES);
        return -EINVAL;
    }
    uint64_t pages = p->remote_size / LETHE_PAGE_SIZE;
    uint64_t nchunks = (pages + MULTI_CHUNK - 1) / MULTI_CHUNK;
    if (nchunks == 0)
        return -EINVAL;
    struct multi *m = calloc(1, sizeof(*m));
    if (!m)
        return -ENOMEM;
    m->n = n;
    m->r = r;
    m->nchunks = nchunks;
    /* writers first: the repair's write side must not starve behind a stream of write-backs */
    pthread_rwlockattr_t ra;
    pthread_rwlockattr_init(&ra);
    pthread_rwlockattr_setkind_np(&ra, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
    for (unsigned s = 0; s < MULTI_STRIPES; s++)
        pthread_rwlock_init(&m->stripe[s], &ra);
    pthread_rwlockattr_destroy(&ra);
    pthread_mutex_init(&m->lock, NULL);
    pthread_mutex_init(&m->wait_lock, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&m->wait, &ca);
    pthread_condattr_destroy(&ca);
    t->priv = m;
    int rc = 0;
    m->places_bytes = (nchunks * r * sizeof(uint64_t) + 4095) & ~4095ull;
    m->written_bytes = (((nchunks + 63) / 64) * 8 + 4095) & ~4095ull;
    m->places = mmap(NULL, m->places_bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
                     -1, 0);
    m->written = mmap(NULL, m->written_bytes, PROT_READ | PROT_WRITE,
                      MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (m->places == MAP_FAILED || m->written == MAP_FAILED) {
        if (m->places == MAP_FAILED)
            m->places = NULL;
        if (m->written == MAP_FAILED)
            m->written = NULL;
        rc = -ENOMEM;
        goto fail;
    }
    /* Each node's share: what it holds with all nodes up, plus room to take its part of a
     * lost node's copies when there is a node to spare. */
    uint64_t plain = (nchunks * r + n - 1) / n;
    uint64_t roomy = n > r ? (nchunks * r + n - 2) / (n - 1) : plain;
    bool short_room = false;
    for (unsigned i = 0; i < n; i++) {
        struct mnode *nd = &m->node[i];
        snprintf(nd->addr, sizeof(nd->addr), "%s", p->nodes[i]);
        struct lethe_transport *sub = NULL;
        rc = open_node(t, i, roomy * MULTI_CHUNK * LETHE_PAGE_SIZE, &sub, 0);
        if (rc == -ENOSPC && roomy > plain) {
            lethe_warn("memnode %s: no room for the copies of a lost node; asking for the plain "
                       "share",
                       nd->addr);
            short_room = true;
            rc = open_node(t, i, plain * MULTI_CHUNK * LETHE_PAGE_SIZE, &sub, 0);
        }
        if (rc < 0) {
            lethe_error("%s: memory node %s cannot serve (logged above); every configured node "
                        "must be up at start",
                        t->describe, nd->addr);
            goto fail;
        }
        nd->t = sub;
        nd->state = NODE_LIVE;
        rc = set_free(nd, lethe_transport_pages(sub));
        if (rc < 0)
            goto fail;
        /* all nodes are of one kind: a child reads them as it would read one */
        t->fork_readable = sub->fork_readable;
        t->fork_reconnect = sub->fork_reconnect;
    }
    for (uint64_t c = 0; c < nchunks; c++) {
        unsigned avoid = 0;
        for (unsigned j = 0; j < r; j++) {
            int i = roomiest(m, avoid, (unsigned)(c + j));
            if (i < 0) {
                lethe_error("%s: the nodes lent too little for remote_size with %u replicas "
                            "(chunk %llu of %llu has no place)",
                            t->describe, r, (unsigned long long)c, (unsigned long long)nchunks);
                rc = -ENOSPC;
                goto fail;
            }
            avoid |= 1u << i;
            m->places[c * r + j] = place_make((unsigned)i, 0, take_chunk(&m->node[i]));
        }
    }
    t->pages = pages;
    m->rbuf = aligned_alloc(LETHE_PAGE_SIZE, MULTI_CHUNK * LETHE_PAGE_SIZE);
    if (!m->rbuf) {
        rc = -ENOMEM;
        goto fail;
    }
    rc = lethe_channel_open(t, MULTI_REPAIR_VCPU, &m->rch);
    if (rc < 0)
        goto fail;
    rc = -pthread_create(&m->thread, NULL, repair_main, t);
    if (rc < 0)
        goto fail;
    m->thread_started = true;
    lethe_info("%s: %llu pages over %u nodes (%s), each page on %u; redundancy after a lost "
               "node: %s",
               t->describe, (unsigned long long)pages, n, p->nodes[0], r,
               r == 1 ? "none (replicas = 1)" : short_room || n == r ? "not restorable" : "restored");
    return 0;
fail:
    multi_close(t);
    t->priv = NULL;
    return rc;
}

/* --- repair --- */

/* Re-creates chunk c's copy j on a node that has none; returns pages copied (0: placed
 * without a copy, the chunk was never written), -1 when no node has room, -2 when the chunk
 * has no copy left to copy from, -3 when the copy failed (a node was lost: the next pass
 * tries again). Runs under the chunk's stripe lock, write side: see the file comment. */
static long recreate(struct lethe_transport *t, uint64_t c, unsigned j)
{
    struct multi *m = t->priv;
    struct lethe_channel *ch = m->rch;
    struct multi_chan *mc = ch->priv;
    uint64_t *pl = places_of(m, c);
    pthread_rwlock_wrlock(&m->stripe[c % MULTI_STRIPES]);
    int src = -1;
    unsigned have = 0;
    for (unsigned k = 0; k < m->r; k++) {
        uint64_t p = ld(&pl[k]);
        if (place_usable(m, p)) {
            have |= 1u << place_node(p);
            if (src < 0)
                src = (int)k;
        }
    }
    bool written = ld(&m->written[c / 64]) & (1ull << (c % 64));
    long done = -2;
    if (src < 0 && written)
        goto out;
    pthread_mutex_lock(&m->lock);
    int i = roomiest(m, have, (unsigned)c);
    uint32_t nc = i >= 0 ? take_chunk(&m->node[i]) : UINT32_MAX;
    uint32_t gen = i >= 0 ? __atomic_load_n(&m->node[i].gen, __ATOMIC_RELAXED) : 0;
    pthread_mutex_unlock(&m->lock);
    done = -1;
    if (i < 0)
        goto out;
    uint64_t np = place_make((unsigned)i, gen, nc);
    done = 0;
    if (!written) {
        __atomic_store_n(&pl[j], np, __ATOMIC_RELEASE);
        goto out;
    }
    uint64_t sp = ld(&pl[src]);
    unsigned from_node = place_node(sp);
    struct lethe_channel *from = sub_of(ch, from_node);
    struct lethe_channel *to = sub_of(ch, (unsigned)i);
    unsigned step = t->params.max_batch && t->params.max_batch < MULTI_CHUNK ? t->params.max_batch
                                                                             : MULTI_CHUNK;
    done = from && to ? 0 : -3;
    for (unsigned q0 = 0; done >= 0 && q0 < MULTI_CHUNK && c * MULTI_CHUNK + q0 < t->pages;
         q0 += step) {
        uint64_t slots[MULTI_CHUNK], dst[MULTI_CHUNK];
        void *pages[MULTI_CHUNK];
        unsigned cnt = 0;
        for (unsigned q = q0; q < q0 + step && q < MULTI_CHUNK && c * MULTI_CHUNK + q < t->pages;
             q++) {
            slots[cnt] = (uint64_t)place_chunk(sp) * MULTI_CHUNK + q;
            dst[cnt] = (uint64_t)nc * MULTI_CHUNK + q;
            pages[cnt] = (char *)m->rbuf + (size_t)q * LETHE_PAGE_SIZE;
            cnt++;
        }
        if (lethe_channel_read_batch(from, slots, pages, cnt) < 0) {
            mark_lost(m, from_node, mc->sub_gen[from_node], lethe_channel_error(from));
            done = -3;
        } else if (lethe_channel_write_batch(to, dst, (const void *const *)pages, cnt) < 0) {
            mark_lost(m, (unsigned)i, mc->sub_gen[i], lethe_channel_error(to));
            done = -3;
        } else {
            add(&m->node[from_node].reads, cnt);
            add(&m->node[i].writes, cnt);
            done += cnt;
        }
    }
    if (done >= 0) {
        __atomic_store_n(&pl[j], np, __ATOMIC_RELEASE);
    } else { /* give the chunk back */
        pthread_mutex_lock(&m->lock);
        if (__atomic_load_n(&m->node[i].gen, __ATOMIC_RELAXED) == gen &&
            m->node[i].nfree < m->node[i].nchunks)
            m->node[i].free[m->node[i].nfree++] = nc;
        pthread_mutex_unlock(&m->lock);
    }
out:
    pthread_rwlock_unlock(&m->stripe[c % MULTI_STRIPES]);
    return done;
}

/* Probes live nodes; tries lost ones again. */
static void check_nodes(struct lethe_transport *t, uint64_t now)
{
    struct multi *m = t->priv;
    for (unsigned i = 0; i < m->n; i++) {
        struct mnode *nd = &m->node[i];
        if (__atomic_load_n(&nd->state, __ATOMIC_ACQUIRE) == NODE_LIVE) {
            nd->away_tries = 0;
            const char *why = lethe_transport_gone(nd->t);
            if (why)
                mark_lost(m, i, __atomic_load_n(&nd->gen, __ATOMIC_RELAXED), why);
            continue;
        }
        if (now - __atomic_load_n(&nd->last_try_ns, __ATOMIC_RELAXED) < REJOIN_NS)
            continue;
        __atomic_store_n(&nd->last_try_ns, now, __ATOMIC_RELAXED);
        struct lethe_transport *old = nd->t;
        uint64_t share = old ? lethe_transport_pages(old) * LETHE_PAGE_SIZE : 0;
        struct lethe_transport *fresh = NULL;
        /* The first failed try says why; the ones after it (every REJOIN_NS) go to debug. */
        if (nd->away_tries)
            lethe_log_cap_thread(LETHE_LOG_DEBUG);
        int rc = open_node(t, i, share, &fresh, 1000000);
        lethe_log_cap_thread(LETHE_LOG_ERROR);
        if (rc < 0) {
            if (nd->away_tries++ == 0)
                lethe_warn("memnode %s is not back (above); trying again every %u ms, logging "
                           "only its return",
                           nd->addr, (unsigned)(REJOIN_NS / 1000000));
            continue;
        }
        pthread_mutex_lock(&m->lock);
        if (m->nretired < MULTI_RETIRED && old)
            m->retired[m->nretired++] = old;
        else if (old)
            lethe_transport_close(old); /* no channel can use it: all saw it lost */
        if (set_free(nd, lethe_transport_pages(fresh)) < 0) {
            pthread_mutex_unlock(&m->lock);
            lethe_transport_close(fresh);
            nd->t = NULL;
            continue;
        }
        __atomic_store_n(&nd->t, fresh, __ATOMIC_RELEASE);
        __atomic_store_n(&nd->gen, (nd->gen + 1) & 0xffffff, __ATOMIC_RELEASE);
        __atomic_store_n(&nd->state, NODE_LIVE, __ATOMIC_RELEASE);
        add(&nd->rejoins, 1);
        pthread_mutex_unlock(&m->lock);
        lethe_warn("memnode %s rejoined, empty (%llu pages); copies are placed on it again",
                   nd->addr, (unsigned long long)lethe_transport_pages(fresh));
    }
}

/* One pass over the chunks, within budget pages; returns pages copied. */
static uint64_t repair_pass(struct lethe_transport *t, uint64_t budget)
{
    struct multi *m = t->priv;
    uint64_t copied = 0, degraded = 0, lost = 0;
    bool no_room = false;
    for (uint64_t c = 0; c < m->nchunks; c++) {
        uint64_t *pl = places_of(m, c);
        unsigned usable = 0;
        int missing = -1;
        for (unsigned j = 0; j < m->r; j++) {
            if (place_usable(m, ld(&pl[j])))
                usable++;
            else if (missing < 0)
                missing = (int)j;
        }
        if (missing < 0)
            continue;
        if (!m->repairing) {
            m->repairing = true;
            m->repair_started_ns = 0; /* set by the first copy */
            m->repair_pages_at_start = ld(&m->repaired_pages);
        }
        bool written = ld(&m->written[c / 64]) & (1ull << (c % 64));
        if (usable == 0 && written) {
            lost++;
            continue;
        }
        if (copied >= budget || no_room) {
            degraded++;
            continue;
        }
        if (!m->repair_started_ns)
            m->repair_started_ns = now_ns();
        long rc = recreate(t, c, (unsigned)missing);
        if (rc == -1)
            no_room = true;
        if (rc > 0)
            copied += (uint64_t)rc;
        else if (!copied && ld(&m->repaired_pages) == m->repair_pages_at_start)
            m->repair_started_ns = 0; /* the clock starts with the first copy */
        if (rc < 0 || !place_usable(m, ld(&pl[missing])) || usable + 1 < m->r)
            degraded++;
    }
    __atomic_store_n(&m->degraded, degraded, __ATOMIC_RELAXED);
    __atomic_store_n(&m->lost_chunks, lost, __ATOMIC_RELAXED);
    add(&m->repaired_pages, copied);
    if (lost && !m->warned_lost) {
        m->warned_lost = true;
        lethe_error("%s: %llu written chunks (%u slots each) have no copy left on a live node",
                    t->describe, (unsigned long long)lost, MULTI_CHUNK);
    }
    if (no_room && !m->warned_room) {
        m->warned_room = true;
        unsigned live = 0;
        for (unsigned i = 0; i < m->n; i++)
            live += __atomic_load_n(&m->node[i].state, __ATOMIC_ACQUIRE) == NODE_LIVE;
        if (live < m->r)
            lethe_warn("%s: %llu chunks have fewer than %u copies: %u live node%s for %u "
                       "replicas (waiting for a node to rejoin)",
                       t->describe, (unsigned long long)degraded, m->r, live,
                       live == 1 ? "" : "s", m->r);
        else
            lethe_warn("%s: cannot restore redundancy of %llu chunks: no live node without a "
                       "copy has room",
                       t->describe, (unsigned long long)degraded);
    }
    if (!no_room)
        m->warned_room = false;
    uint64_t now = now_ns();
    if (m->repairing && !degraded && !lost) {
        m->repairing = false;
        uint64_t pages = ld(&m->repaired_pages) - m->repair_pages_at_start;
        double secs = m->repair_started_ns ? (double)(now - m->repair_started_ns) / 1e9 : 0;
        uint64_t pps = secs > 0 ? (uint64_t)((double)pages / secs) : pages;
        __atomic_store_n(&m->repair_rate_pps, pps, __ATOMIC_RELAXED);
        if (m->r > 1)
                lethe_warn("%s: redundancy restored: %llu pages copied in %.2f s (%llu pages/s)",
                       t->describe, (unsigned long long)pages, secs, (unsigned long long)pps);
    }
    return copied;
}

static void *repair_main(void *arg)
{
    struct lethe_transport *t = arg;
    struct multi *m = t->priv;
    lethe_log_set_role("repair");
    uint64_t rate_pages = t->params.repair_rate / LETHE_PAGE_SIZE;
    if (rate_pages == 0)
        rate_pages = 1;
    uint64_t last = now_ns();
    double credit = 0;
    pthread_mutex_lock(&m->wait_lock);
    while (!m->stop) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        ts.tv_nsec += (long)PROBE_NS;
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&m->wait, &m->wait_lock, &ts);
        if (m->stop)
            break;
        pthread_mutex_unlock(&m->wait_lock);
        uint64_t now = now_ns();
        check_nodes(t, now);
        credit += (double)(now - last) / 1e9 * (double)rate_pages;
        if (credit > (double)rate_pages)
            credit = (double)rate_pages; /* at most a second's worth at once */
        last = now;
        uint64_t budget = credit > 0 ? (uint64_t)credit : 0;
        uint64_t used = repair_pass(t, budget);
        credit -= (double)used;
        pthread_mutex_lock(&m->wait_lock);
    }
    pthread_mutex_unlock(&m->wait_lock);
    return NULL;
}

/* --- figures --- */

static unsigned multi_node_stats(const struct lethe_transport *t, struct lethe_node_stats *out,
                                 unsigned max, struct lethe_replica_stats *rs)
{
    struct multi *m = t->priv;
    uint64_t placed[LETHE_MAX_MEMNODES] = {0};
    for (uint64_t c = 0; c < m->nchunks * m->r; c++) {
        uint64_t p = ld(&m->places[c]);
        if (place_usable(m, p))
            placed[place_node(p)] += MULTI_CHUNK;
    }
    unsigned live = 0;
    for (unsigned i = 0; i < m->n; i++) {
        const struct mnode *nd = &m->node[i];
        bool up = __atomic_load_n(&nd->state, __ATOMIC_ACQUIRE) == NODE_LIVE;
        live += up;
        if (i >= max)
            continue;
        struct lethe_node_stats *s = &out[i];
        memset(s, 0, sizeof(*s));
        snprintf(s->addr, sizeof(s->addr), "%s", nd->addr);
        s->live = up;
        s->granted_pages = up ? (uint64_t)__atomic_load_n(&nd->nchunks, __ATOMIC_RELAXED) *
                                    MULTI_CHUNK
                              : 0;
        s->placed_pages = placed[i];
        s->reads = __atomic_load_n(&nd->reads, __ATOMIC_RELAXED);
        s->writes = __atomic_load_n(&nd->writes, __ATOMIC_RELAXED);
        s->failures = __atomic_load_n(&nd->failures, __ATOMIC_RELAXED);
        s->bad_copies = __atomic_load_n(&nd->bad_copies, __ATOMIC_RELAXED);
        s->rejoins = __atomic_load_n(&nd->rejoins, __ATOMIC_RELAXED);
    }
    if (rs) {
        rs->nodes = m->n;
        rs->replicas = m->r;
        rs->live_nodes = live;
        rs->degraded_chunks = __atomic_load_n(&m->degraded, __ATOMIC_RELAXED);
        rs->lost_chunks = __atomic_load_n(&m->lost_chunks, __ATOMIC_RELAXED);
        rs->repaired_pages = __atomic_load_n(&m->repaired_pages, __ATOMIC_RELAXED);
        rs->repair_pages_per_s = __atomic_load_n(&m->repair_rate_pps, __ATOMIC_RELAXED);
        rs->bad_copies = __atomic_load_n(&m->bad_copies, __ATOMIC_RELAXED);
    }
    return m->n;
}

const struct lethe_transport_ops lethe_transport_multi_ops = {
    .name = "multi",
    .open = multi_open,
    .close = multi_close,
    .channel_open = multi_channel_open,
    .channel_close = multi_channel_close,
    .read_batch = multi_read_batch,
    .write_batch = multi_write_batch,
    .read_checked = multi_read_checked,
    .node_stats = multi_node_stats,
};
