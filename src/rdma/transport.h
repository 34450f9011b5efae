/* transport.h — remote memory behind one interface: local, shm, tcp and verbs.
 *
 * A transport connects this process to its memory node(s) and holds one remote region of
 * `remote_size` bytes there, seen as an array of page slots 0 .. remote_pages-1. Slot
 * allocation is the core's business; the transport only moves pages. Each vCPU opens its
 * own channel (its own socket, QP or shm mapping view, its own buffers), so channels need no
 * locking between vCPUs; a channel is used by one thread at a time.
 *
 * Errors are negative errnos. When an operation fails, lethe_channel_error() describes why
 * in words that name the node ("memnode 127.0.0.1:7400: connection closed by peer while
 * reading slot 812"); the core adds the page and stops the program. A transport never
 * returns a page it did not verifiably read: short reads, wrong request ids, out-of-range
 * replies are errors, not zeros.
 *
 * Kinds:
 *  - local: remote memory is an anonymous mapping in this process (tests, overhead runs).
 *  - shm:   the memory node hands over its region as a memfd on its Unix socket; reads and
 *           writes are memcpy, no memory-node CPU in the data path. shm_delay adds a busy
 *           wait per operation to stand in for a NIC's latency.
 *  - tcp:   docs/PROTOCOL.md; one connection per channel, pipelined batches.
 *  - verbs: RDMA CM connection per channel, one-sided READ/WRITE from registered staging.
 */
#ifndef LETHE_TRANSPORT_H
#define LETHE_TRANSPORT_H

#include <stdbool.h>
#include <stdint.h>

#include "core/config.h"

struct lethe_transport;
struct lethe_channel;

struct lethe_transport_params {
    enum lethe_transport_kind kind;
    /* Node address: host:port for tcp and verbs, a Unix socket path for shm; unused by local. */
    char node[LETHE_ADDR_MAX];
    uint64_t remote_size;          /* bytes of slots the program gets (of each node: one node) */
    char token[128];               /* shared secret, NUL-terminated; may be empty for local */
    uint64_t shm_delay_us;
    uint64_t connect_timeout_us;
    /* A node that answers nothing for this long is dead (tcp); 0: 30 s. */
    uint64_t node_timeout_us;
    unsigned max_batch;            /* largest batch a channel will be given (pages) */
    /* Several nodes (multi.c): with n_nodes > 1 or replicas > 1 the slots are spread over
     * nodes[0 .. n_nodes-1], each page on `replicas` distinct ones; node and token above are
     * then unused. n_nodes 0 means the one node above. */
    unsigned n_nodes;
    unsigned replicas;             /* 0 or 1: one copy */
    uint64_t repair_rate;          /* bytes/s of copies re-created after a node is lost */
    char nodes[LETHE_MAX_MEMNODES][LETHE_ADDR_MAX];
    char tokens[LETHE_MAX_MEMNODES][128];
};

/* Connects (authenticating) and obtains the remote region. Fails with a logged reason when
 * the node is unreachable, refuses the token, or has too little capacity left; for verbs,
 * when there is no RDMA device ("no RDMA device found (ibv_get_device_list returned none)").
 */
int lethe_transport_open(const struct lethe_transport_params *p, struct lethe_transport **out);
void lethe_transport_close(struct lethe_transport *t);
uint64_t lethe_transport_pages(const struct lethe_transport *t);
/* "shm /tmp/lethe-memnode.sock", "tcp 127.0.0.1:7400", "local", ... */
const char *lethe_transport_describe(const struct lethe_transport *t);
/* Whether a forked child can read the remote slots: through this process's channels (local,
 * shm: the remote memory is mapped here), or, with *own_channel set, through a channel it
 * opens itself (tcp: a connection cannot be shared, a new one attaches to the region).
 * verbs: no (an RDMA connection and its registered memory do not survive a fork). */
bool lethe_transport_fork_readable(const struct lethe_transport *t, bool *own_channel);

int lethe_channel_open(struct lethe_transport *t, unsigned vcpu, struct lethe_channel **out);
void lethe_channel_close(struct lethe_channel *ch);

/* One page between remote slot and local memory (page-aligned, outside the region). */
int lethe_channel_read(struct lethe_channel *ch, uint64_t slot, void *page);
/* A read whose bytes must have checksum `sum` (checksum.h; 0: unknown, not checked here).
 * With replicas, a copy that fails it is reported, read from another copy and repaired; a
 * single copy is returned as read (the caller checks it). */
int lethe_channel_read_checked(struct lethe_channel *ch, uint64_t slot, void *page, uint64_t sum);
int lethe_channel_write(struct lethe_channel *ch, uint64_t slot, const void *page);
/* n pages at once (n <= max_batch); all succeed or the call fails. */
int lethe_channel_read_batch(struct lethe_channel *ch, const uint64_t *slots, void *const *pages,
                             unsigned n);
int lethe_channel_write_batch(struct lethe_channel *ch, const uint64_t *slots,
                              const void *const *pages, unsigned n);
/* lethe_channel_write_batch in two halves: post sends the pages and returns without waiting
 * where the transport can (tcp, verbs), wait finishes and returns what write_batch would
 * have. Elsewhere the whole write happens in post. Every post is followed by one wait, which
 * also reports a failure that post already returned; between them the pages stay as they
 * are and the channel takes no other operation. */
int lethe_channel_write_post(struct lethe_channel *ch, const uint64_t *slots,
                             const void *const *pages, unsigned n);
int lethe_channel_write_wait(struct lethe_channel *ch);
/* Why the last operation on this channel failed, naming the node. */
const char *lethe_channel_error(const struct lethe_channel *ch);

/* What each memory node holds and how it fares (for /stats, /metrics and the summary). */
struct lethe_node_stats {
    char addr[LETHE_ADDR_MAX];
    uint64_t live;          /* 1 while in use, 0 once lost (until it rejoins) */
    uint64_t granted_pages; /* slots the node lent us */
    uint64_t placed_pages;  /* of those, slots holding (a copy of) program slots */
    uint64_t reads, writes; /* pages */
    uint64_t failures;      /* times the node was found lost */
    uint64_t bad_copies;    /* copies read from it that failed their checksum */
    uint64_t rejoins;
};
struct lethe_replica_stats {
    uint64_t nodes, replicas, live_nodes;
    uint64_t degraded_chunks; /* chunks (64 slots) with fewer copies than replicas, at least 1 */
    uint64_t lost_chunks;     /* written chunks with no copy left */
    uint64_t repaired_pages;  /* pages copied to re-create lost copies */
    uint64_t repair_pages_per_s; /* rate of the last completed re-replication (0: none yet) */
    uint64_t bad_copies;      /* copies found bad by their checksum and rewritten */
};
/* Fills up to max entries (one per configured node) and, if rs, the totals; returns the
 * number of nodes. Safe to call from any thread while the transport is open. */
unsigned lethe_transport_node_stats(const struct lethe_transport *t, struct lethe_node_stats *out,
                                    unsigned max, struct lethe_replica_stats *rs);

#endif
