/* memnode.h — the memory node as a library: lends DRAM to Lethe clients over a Unix socket
 * (shm: the region's memfd is handed over), TCP (docs/PROTOCOL.md) and RDMA CM (verbs).
 * The `memnode` program is a thin main() around it; lethed and the tests embed it.
 *
 * Contract:
 *  - lethe_memnode_start() loads (or creates) the token file, binds every listener the
 *    config enables (a TCP port of 0 picks a free port: read it back with
 *    lethe_memnode_tcp_address()), then serves on its own thread, a libevent loop. It
 *    returns 0, or a negative errno after logging why (port in use, socket path held by a
 *    live node, no RDMA device for rdma_listen, unreadable token file, a capacity that an
 *    RDMA device without on-demand paging would need pinned and the machine cannot hold...).
 *    With such a device it allocates and locks the whole capacity first (slow: seconds per
 *    GiB on small machines), so that no client waits for it later.
 *  - Each client gets its own region, sized by its ALLOC and bounded by the capacity left and
 *    by max_clients; a client reaches only its own region. A region lives as long as the
 *    connection that allocated it: when that connection closes, the region's other
 *    connections are closed and its memory and capacity are returned. The node keeps no data
 *    across connections: a client that reconnects gets a new, zeroed region.
 *  - lethe_memnode_stop() closes every connection, unlinks the Unix socket, logs the final
 *    stats and frees everything. Call it once, from any thread but the node's own.
 *  - Stats may be read from any thread at any time.
 *
 * The node thread blocks every signal; a SIGPIPE from a dead peer cannot kill the process.
 */
#ifndef LETHE_MEMNODE_H
#define LETHE_MEMNODE_H

#include <stdint.h>

#include "core/config.h"

struct lethe_memnode;

struct lethe_memnode_stats {
    uint64_t clients;       /* clients holding a region now */
    uint64_t clients_total; /* regions lent since start */
    uint64_t connections;   /* open connections of every kind */
    uint64_t capacity;      /* bytes the node may lend */
    uint64_t bytes_lent;    /* bytes held by clients now */
    uint64_t reads;         /* READ requests served (tcp, unix) */
    uint64_t writes;        /* WRITE requests served */
    uint64_t pages_read;
    uint64_t pages_written;
    uint64_t errors;        /* error replies and connections dropped for protocol errors */
    uint64_t auth_failures; /* wrong token, refused ATTACH or RDMA connection */
    uint64_t rdma_channels; /* RDMA CM connections established now */
};

int lethe_memnode_start(const struct lethe_memnode_config *cfg, struct lethe_memnode **out);
void lethe_memnode_stop(struct lethe_memnode *n);
void lethe_memnode_get_stats(const struct lethe_memnode *n, struct lethe_memnode_stats *s);
/* Logs the stats at `level` (enum lethe_log_level) in one line, prefixed by `when`. */
void lethe_memnode_log_stats(const struct lethe_memnode *n, int level, const char *when);

/* Where clients reach this node: "127.0.0.1:41877" (the port actually bound) or "" when TCP
 * is off; the Unix socket path or "" when off; the RDMA CM address or "" when off. */
const char *lethe_memnode_tcp_address(const struct lethe_memnode *n);
const char *lethe_memnode_unix_path(const struct lethe_memnode *n);
const char *lethe_memnode_rdma_address(const struct lethe_memnode *n);

#endif
