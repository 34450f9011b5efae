/* node_impl.h — the memory node's internals, shared by node.c (lifecycle, listeners, stats),
 * region.c (client regions), session.c (one connection's protocol), rdma.c (RDMA CM) and
 * arena.c (the memory an RDMA node without on-demand paging takes at start-up).
 *
 * Thread model: everything here is touched only by the node thread (the libevent loop),
 * except `st` (atomic counters, read by any thread) and the fields set before the thread
 * starts and never changed afterwards (cfg, token, addresses). lethe_memnode_stop() joins
 * the thread before it frees anything. The arena's populating and zeroing helpers are
 * threads of the call that needs them (start-up, a region's release), joined before it
 * returns.
 */
#ifndef LETHE_MEMNODE_IMPL_H
#define LETHE_MEMNODE_IMPL_H

#include <event2/event.h>
#include <event2/listener.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "arena.h"
#include "memnode.h"
#include "rdma/auth.h"

/* Connections that have not bound to a region yet (authenticating, or authenticated and
 * about to ALLOC/ATTACH); more are turned away at accept. */
#define MN_MAX_PENDING 256
/* Connections that may share one region: a control connection plus one per vCPU. */
#define MN_MAX_REGION_CONNS (LETHE_MAX_VCPUS + 2)
/* Seconds a connection has to authenticate and bind to a region. */
#define MN_AUTH_TIMEOUT_S 10
/* Output queued for one connection above which the node stops reading its requests. */
#define MN_OUT_HIGH (4u << 20)
#define MN_OUT_LOW  (1u << 20)
/* Period of the debug-level stats line. */
#define MN_STATS_PERIOD_S 10

struct mn_region;
struct mn_rdma;

enum mn_conn_state {
    MN_AUTH,   /* HELLO sent, waiting for AUTH */
    MN_AUTHED, /* token proven; may ALLOC, ATTACH or ask for STATS */
    MN_BOUND,  /* holds (owner) or shares (attached) a region */
};

struct mn_conn {
    struct lethe_memnode *node;
    struct bufferevent *bev;
    enum mn_conn_state state;
    bool is_unix;
    bool closing;   /* no more requests: free once the output is flushed */
    bool throttled; /* reading paused until the output drains */
    bool owner;     /* this connection allocated its region */
    uint64_t id;    /* connection number, for the log */
    unsigned errors_logged;
    struct mn_region *region;
    struct mn_conn *prev, *next;   /* node->conns */
    struct mn_conn *rprev, *rnext; /* region->conns */
    uint8_t ns[LETHE_NONCE_LEN];
    uint8_t nc[LETHE_NONCE_LEN];
    char peer[64];
};

struct mn_region {
    uint64_t id;
    uint64_t bytes;
    uint64_t pages;
    int memfd;                  /* -1 for a region cut from the arena */
    uint8_t *base;              /* the node's MAP_SHARED view of memfd, or the span's pages */
    struct mn_arena_span *span; /* the region's pages in the arena, or NULL */
    uint8_t key[LETHE_REGION_KEY_LEN];
    unsigned nconns;
    struct mn_conn *conns;
    struct mn_region *prev, *next;
    void *rdma;           /* rdma.c's per-region state (PD, MR, channels), or NULL */
    uint64_t rdma_reg_ns; /* how long registering its MR took */
    uint64_t verbs_seq;   /* highest RDMA CM sequence number accepted */
};

struct mn_stats {
    uint64_t clients, clients_total, connections, bytes_lent;
    uint64_t reads, writes, pages_read, pages_written, errors, auth_failures, rdma_channels;
};

struct lethe_memnode {
    struct lethe_memnode_config cfg;
    char token[LETHE_TOKEN_MAX + 1];
    struct event_base *base;
    struct evconnlistener *tcp_listener;
    struct evconnlistener *unix_listener;
    struct event *stop_ev;
    struct event *stats_ev;
    int stop_fd; /* eventfd: lethe_memnode_stop() wakes the loop */
    pthread_t thread;
    bool thread_started;
    bool unix_bound; /* we created cfg.unix_socket: unlink it at stop */

    struct mn_conn *conns;
    unsigned npending;
    uint64_t next_conn_id;
    struct mn_region *regions;
    unsigned nregions;
    uint64_t next_region_id;

    struct mn_rdma *rdma;
    uint16_t rdma_port;
    struct mn_arena *arena; /* with rdma_listen on a device without ODP; else NULL */
    bool stopping;          /* node_free(): released regions need no zeroing */

    char tcp_address[LETHE_ADDR_MAX];
    char unix_path[LETHE_PATH_MAX];
    char rdma_address[LETHE_ADDR_MAX];

    struct mn_stats st; /* atomics: see mn_count() */
};

static inline void mn_count(uint64_t *counter, int64_t delta)
{
    __atomic_fetch_add(counter, (uint64_t)delta, __ATOMIC_RELAXED);
}

/* session.c */
void mn_conn_accept(struct lethe_memnode *n, int fd, const char *peer, bool is_unix);
/* Closes at once (no flush). Safe on connections of the region being destroyed. */
void mn_conn_free(struct mn_conn *c);

/* region.c */
/* flags: the ALLOC's (LETHE_F_ALLOC_SHM, LETHE_F_ALLOC_RDMA). A region with ALLOC_RDMA is
 * registered for RDMA before this returns; one without ALLOC_SHM is cut from the arena when
 * there is one. */
int mn_region_create(struct lethe_memnode *n, uint64_t bytes, uint16_t flags,
                     struct mn_region **out, char *why, size_t whylen);
/* Closes the region's other connections, releases its RDMA state, memory and capacity. */
void mn_region_destroy(struct lethe_memnode *n, struct mn_region *r);
struct mn_region *mn_region_find(struct lethe_memnode *n, uint64_t id);
uint64_t mn_capacity_left(const struct lethe_memnode *n);

/* rdma.c */
/* Binds rdma_listen, picks the device, and creates n->arena when it has no ODP. */
int mn_rdma_start(struct lethe_memnode *n);
void mn_rdma_stop(struct lethe_memnode *n);
/* Gives the region its PD and an MR over its pages (r->rdma); a sentence in why on failure. */
int mn_rdma_region_register(struct lethe_memnode *n, struct mn_region *r, char *why, size_t whylen);
/* Disconnects the region's channels, deregisters its MR, frees its PD. */
void mn_rdma_region_release(struct lethe_memnode *n, struct mn_region *r);

#endif
