/* transport_impl.h — what a transport kind implements (internal to src/rdma).
 *
 * transport.c owns the public objects and dispatches to one ops table per kind. A kind keeps
 * its own state behind `priv` pointers. A kind that is not built in (or not yet written) has
 * a NULL table and lethe_transport_open() fails with -ENOTSUP and a message saying so.
 */
#ifndef LETHE_TRANSPORT_IMPL_H
#define LETHE_TRANSPORT_IMPL_H

#include "rdma/transport.h"

struct lethe_transport {
    const struct lethe_transport_ops *ops;
    struct lethe_transport_params params;
    uint64_t pages;      /* remote slots granted by the node */
    char describe[LETHE_ADDR_MAX + 16];
    bool fork_readable, fork_reconnect; /* from ops; multi.c sets them from its nodes' kind */
    void *priv;
};

struct lethe_channel {
    struct lethe_transport *t;
    unsigned vcpu;
    char error[256];     /* why the last operation failed, naming the node */
    void *priv;
    int posted_rc;       /* lethe_channel_write_post without the ops: the write's result */
};

struct lethe_transport_ops {
    const char *name;
    /* How a forked child reads the parent's slots: through the parent's channels, since the
     * remote memory is mapped in the process (local, shm: fork_readable), or through a
     * channel of its own, a new connection bound to the same region (tcp: fork_reconnect).
     * Neither: it cannot (verbs). */
    bool fork_readable;
    bool fork_reconnect;
    /* Connect, authenticate, obtain the region; set t->pages and t->priv. */
    int (*open)(struct lethe_transport *t);
    void (*close)(struct lethe_transport *t);
    int (*channel_open)(struct lethe_channel *ch);
    void (*channel_close)(struct lethe_channel *ch);
    /* Slots are checked against t->pages by transport.c before these run. */
    int (*read_batch)(struct lethe_channel *ch, const uint64_t *slots, void *const *pages,
                      unsigned n);
    int (*write_batch)(struct lethe_channel *ch, const uint64_t *slots, const void *const *pages,
                       unsigned n);
    /* Optional, together: write_batch in two halves, so that multi.c has the writes to
     * every copy on the wire at once. write_post sends and returns; write_wait collects the
     * replies. Between them the pages stay as they are and the channel takes nothing else. */
    int (*write_post)(struct lethe_channel *ch, const uint64_t *slots, const void *const *pages,
                      unsigned n);
    int (*write_wait)(struct lethe_channel *ch);
    /* Optional. With expected checksums (sums[i] 0: unknown): multi.c's replicas. */
    int (*read_checked)(struct lethe_channel *ch, const uint64_t *slots, void *const *pages,
                        const uint64_t *sums, unsigned n);
    /* Optional: NULL while the node is there, else why not; never blocks (multi.c polls). */
    const char *(*gone)(struct lethe_transport *t);
    /* Optional: per-node figures (multi.c). */
    unsigned (*node_stats)(const struct lethe_transport *t, struct lethe_node_stats *out,
                           unsigned max, struct lethe_replica_stats *rs);
};

extern const struct lethe_transport_ops lethe_transport_local_ops;
/* Several nodes, replicas (multi.c): built over the kind's own table. */
extern const struct lethe_transport_ops lethe_transport_multi_ops;
/* Defined by shm.c, tcp.c, verbs.c; weak so the runtime links while a kind is missing. */
extern const struct lethe_transport_ops lethe_transport_shm_ops __attribute__((weak));
extern const struct lethe_transport_ops lethe_transport_tcp_ops __attribute__((weak));
extern const struct lethe_transport_ops lethe_transport_verbs_ops __attribute__((weak));

/* Opens one node's transport of the kind p->kind (no multi). */
int lethe_transport_open_kind(const struct lethe_transport_params *p, struct lethe_transport **out);
/* NULL while t's node is there, else why not (kinds without a probe: always NULL). */
const char *lethe_transport_gone(struct lethe_transport *t);

/* Records why the last operation failed (printf-style), prefixed by the node's description. */
void lethe_channel_set_error(struct lethe_channel *ch, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

#endif
