/* stats_shm.h — the shared stats segment between a program running under Lethe and lethed.
 *
 * lethed creates the segment (a memfd) before it launches the program and hands it over in
 * the environment (LETHE_STATS_SHM=fd:N; a POSIX shm name "/name" works too). liblethe.so
 * maps it in its constructor; its stats thread publishes a snapshot every ~100 ms and once
 * more at exit. Stats never travel through the fault path: the fault path only bumps its
 * per-vCPU counters, and the stats thread sums them with lethe_get_stats().
 *
 * Two channels live in the segment:
 *  - the snapshot: written by the program (one writer at a time: the stats thread, or the
 *    thread running exit), read by lethed. A seqlock: the sequence word is odd while a
 *    writer is inside; a reader copies, then retries if the sequence moved. Every word is
 *    accessed atomically (relaxed, ordered by fences), so there is no data race even though
 *    the two sides never share a lock. (No fences: ThreadSanitizer checks it as it is.)
 *  - the command slot: lethed asks for a new cache size (request), the program's stats thread
 *    applies it and answers (reply). One request in flight; a request carries a ticket that
 *    its reply echoes, so a late answer to an older request is never mistaken for a new one.
 *
 * The segment has a fixed layout (magic, version, size first): both sides are built from the
 * same sources, and a mismatch is refused at attach time.
 */
#ifndef LETHE_STATS_SHM_H
#define LETHE_STATS_SHM_H

#include <stdbool.h>
#include <stdint.h>

#include "core/config.h"
#include "core/lethe.h"
#include "rdma/transport.h"

#define LETHE_STATS_SHM_MAGIC   0x3154535348544c45ULL /* "ELTHSST1" little endian */
#define LETHE_STATS_SHM_VERSION 3u
/* Snapshots older than this (monotonic clock) count as stale for /health. */
#define LETHE_STATS_FRESH_NS (2ULL * 1000 * 1000 * 1000)

enum lethe_stats_state {
    LETHE_STATS_STARTING = 0, /* segment created, runtime not (yet) up */
    LETHE_STATS_RUNNING = 1,  /* the runtime publishes */
    LETHE_STATS_EXITED = 2,   /* final snapshot written at exit */
    LETHE_STATS_FAILED = 3,   /* the runtime could not start: see `error` */
};

/* What one publication carries. The shard array is only valid up to nshards. */
struct lethe_stats_snapshot {
    uint64_t state;      /* enum lethe_stats_state */
    uint64_t pid;        /* the program's pid */
    uint64_t seq;        /* publications so far (set by the publisher) */
    uint64_t updated_ns; /* CLOCK_MONOTONIC at publication (set by the publisher) */
    uint64_t started_ns; /* CLOCK_MONOTONIC when the runtime came up */
    uint64_t cache_size; /* bytes of local cache now */
    uint64_t nshards;
    /* the region and the parking area (lethed reads the program's smaps against them) */
    uint64_t region_base, region_size, park_base, park_size;
    struct lethe_stats stats;
    char paths[256]; /* lethe_paths() */
    char error[256]; /* why the runtime failed (state FAILED) */
    /* the memory nodes (lethe_get_node_stats) */
    uint64_t nnodes;
    struct lethe_replica_stats replicas;
    struct lethe_node_stats nodes[LETHE_MAX_MEMNODES];
    struct lethe_shard_stats shards[LETHE_MAX_SHARDS];
};

struct lethe_stats_shm;

/* Bytes the segment takes (a multiple of the page size). */
uint64_t lethe_stats_shm_size(void);

/* lethed: creates an initialised segment in a memfd (close-on-exec). Returns 0 or -errno. */
int lethe_stats_shm_create(struct lethe_stats_shm **out, int *fd_out);
/* The program: maps the segment named by spec ("fd:N" or "/shm-name") and checks its
 * header. A "fd:N" descriptor is closed once mapped. Returns 0, -EINVAL (bad spec or header)
 * or another -errno. */
int lethe_stats_shm_attach(const char *spec, struct lethe_stats_shm **out);
void lethe_stats_shm_detach(struct lethe_stats_shm *s);

/* Writer side, once at attach time: the caller is now the only writer, so a sequence left
 * odd by a writer that died inside publish (an exec or a kill of the previous program image)
 * is made even again. */
void lethe_stats_shm_claim_writer(struct lethe_stats_shm *s);
/* Writer side. Publishes snap (its seq and updated_ns are filled in). Writers exclude each
 * other; a second writer waits for the first to finish. */
void lethe_stats_shm_publish(struct lethe_stats_shm *s, struct lethe_stats_snapshot *snap);
/* Reader side. Copies a consistent snapshot; returns 0, or -EAGAIN when no consistent copy
 * could be taken in a bounded number of tries (a writer is stuck inside). */
int lethe_stats_shm_read(const struct lethe_stats_shm *s, struct lethe_stats_snapshot *out);

/* Command slot, lethed side: posts a cache size request (bytes, a multiple of the page size)
 * and returns its ticket (> 0). */
uint64_t lethe_stats_shm_request_cache_size(struct lethe_stats_shm *s, uint64_t bytes);
/* true once the request with this ticket has been answered: *result is 0 or -errno, *value
 * the cache size in effect afterwards. */
bool lethe_stats_shm_poll_reply(const struct lethe_stats_shm *s, uint64_t ticket, int *result,
                                uint64_t *value);
/* Command slot, program side: true when a request is waiting (its ticket and size). */
bool lethe_stats_shm_take_request(const struct lethe_stats_shm *s, uint64_t *ticket,
                                  uint64_t *bytes);
void lethe_stats_shm_reply(struct lethe_stats_shm *s, uint64_t ticket, int result, uint64_t value);

/* CLOCK_MONOTONIC in nanoseconds (what updated_ns and started_ns are measured in). */
uint64_t lethe_monotonic_ns(void);

#endif
