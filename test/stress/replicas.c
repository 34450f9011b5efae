/* replicas.c — the several-node transport (src/rdma/multi.c) under concurrent writers and
 * readers while nodes are lost and copies re-created: a plain program, so that it runs under
 * ThreadSanitizer too.
 *
 * Three memory nodes embedded in this process (shm), two replicas. Each of WORKERS threads
 * owns its own channel and its own slots (as a page's owner does in the core), and writes
 * versions to them and reads them back, checking every byte against the version and the
 * checksum it passes. Meanwhile the main thread stops node 0 (its connections close: the
 * copies it held are re-created on the other two by the repair thread, which copies chunks
 * under the stripe locks that the writers hold shared) and later node 1 (what is left must
 * then be the re-created copies). Exit status 0 when every read was right and the redundancy
 * was restored after the first loss, 1 otherwise. LETHE_STRESS_SECONDS sets the time. */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "core/checksum.h"
#include "core/log.h"
#include "memnode.h"
#include "rdma/auth.h"
#include "rdma/transport.h"

#ifdef LETHE_TSAN
#define DEFAULT_SECONDS 3.0
#else
#define DEFAULT_SECONDS 1.5
#endif

#define NODES    3
#define WORKERS  4
#define PER      256u /* slots per worker: 4 chunks */
#define PG       4096u

static struct lethe_transport *tr;
static atomic_bool stop;
static atomic_ulong mismatches, ops;

static void fill(uint64_t *w, uint64_t slot, uint64_t ver)
{
    for (unsigned i = 0; i < PG / 8; i++)
        w[i] = (slot << 40) ^ (ver << 8) ^ i;
}

static unsigned check(const uint64_t *w, uint64_t slot, uint64_t ver)
{
    unsigned bad = 0;
    for (unsigned i = 0; i < PG / 8; i++)
        bad += w[i] != ((slot << 40) ^ (ver << 8) ^ i);
    return bad;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void *worker(void *arg)
{
    unsigned id = (unsigned)(uintptr_t)arg;
    struct lethe_channel *ch = NULL;
    if (lethe_channel_open(tr, id, &ch) < 0) {
        atomic_fetch_add(&mismatches, 1);
        return NULL;
    }
    uint64_t *page = aligned_alloc(PG, PG);
    uint64_t ver[PER] = {0}, sum[PER] = {0};
    uint64_t rnd = 0x9e3779b97f4a7c15ull * (id + 1);
    while (!atomic_load(&stop)) {
        rnd ^= rnd << 13;
        rnd ^= rnd >> 7;
        rnd ^= rnd << 17;
        unsigned k = (unsigned)(rnd % PER);
        uint64_t slot = (uint64_t)id * PER + k;
        if (ver[k] && (rnd >> 32) % 2) {
            int rc = lethe_channel_read_checked(ch, slot, page, sum[k]);
            if (rc < 0 || check(page, slot, ver[k])) {
                fprintf(stderr, "replicas: worker %u slot %llu version %llu: %s\n", id,
                        (unsigned long long)slot, (unsigned long long)ver[k],
                        rc < 0 ? lethe_channel_error(ch) : "wrong bytes");
                atomic_fetch_add(&mismatches, 1);
            }
        } else {
            fill(page, slot, ++ver[k]);
            sum[k] = lethe_page_checksum(page);
            if (lethe_channel_write(ch, slot, page) < 0) {
                fprintf(stderr, "replicas: worker %u write of slot %llu: %s\n", id,
                        (unsigned long long)slot, lethe_channel_error(ch));
                atomic_fetch_add(&mismatches, 1);
            }
        }
        atomic_fetch_add(&ops, 1);
    }
    /* every slot holds its last version */
    for (unsigned k = 0; k < PER; k++) {
        uint64_t slot = (uint64_t)id * PER + k;
        if (ver[k] && (lethe_channel_read_checked(ch, slot, page, sum[k]) < 0 ||
                       check(page, slot, ver[k]))) {
            fprintf(stderr, "replicas: final read of slot %llu wrong\n", (unsigned long long)slot);
            atomic_fetch_add(&mismatches, 1);
        }
    }
    free(page);
    lethe_channel_close(ch);
    return NULL;
}

static void sleep_s(double s)
{
    struct timespec ts = {(time_t)s, (long)((s - (double)(time_t)s) * 1e9)};
    nanosleep(&ts, NULL);
}

int main(void)
{
    lethe_log_init("stress-replicas");
    lethe_log_set_level(LETHE_LOG_WARN);
    const char *env = getenv("LETHE_STRESS_SECONDS");
    double seconds = env ? atof(env) : DEFAULT_SECONDS;
    char dir[] = "/tmp/lethe-replicas-XXXXXX";
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        return 1;
    }
    struct lethe_memnode *node[NODES];
    struct lethe_transport_params p;
    memset(&p, 0, sizeof(p));
    p.kind = LETHE_TRANSPORT_SHM;
    p.remote_size = (uint64_t)WORKERS * PER * PG;
    p.connect_timeout_us = 2000000;
    p.max_batch = 64;
    p.n_nodes = NODES;
    p.replicas = 2;
    p.repair_rate = 64ull << 20;
    for (unsigned i = 0; i < NODES; i++) {
        struct lethe_memnode_config mc;
        lethe_memnode_config_defaults(&mc);
        mc.capacity = 64ull << 20;
        mc.log_level = LETHE_LOG_WARN;
        snprintf(mc.tcp_listen, sizeof(mc.tcp_listen), "off");
        snprintf(mc.rdma_listen, sizeof(mc.rdma_listen), "off");
        snprintf(mc.unix_socket, sizeof(mc.unix_socket), "%s/node%u.sock", dir, i);
        snprintf(mc.token_file, sizeof(mc.token_file), "%s/token", dir);
        char err[128];
        if (lethe_token_load(mc.token_file, true, p.tokens[i], sizeof(p.tokens[i]), NULL, err,
                             sizeof(err)) < 0 ||
            lethe_memnode_start(&mc, &node[i]) < 0) {
            fprintf(stderr, "replicas: cannot start node %u\n", i);
            return 1;
        }
        snprintf(p.nodes[i], sizeof(p.nodes[i]), "%s", lethe_memnode_unix_path(node[i]));
    }
    if (lethe_transport_open(&p, &tr) < 0) {
        fprintf(stderr, "replicas: cannot open the transport\n");
        return 1;
    }
    pthread_t t[WORKERS];
    for (unsigned i = 0; i < WORKERS; i++)
        pthread_create(&t[i], NULL, worker, (void *)(uintptr_t)i);
    sleep_s(seconds / 3);
    lethe_memnode_stop(node[0]);
    node[0] = NULL;
    /* the copies of node 0 re-created while the workers go on */
    struct lethe_replica_stats rs;
    struct lethe_node_stats ns[NODES];
    double until = now_s() + 10;
    bool restored = false;
    do {
        sleep_s(0.02);
        lethe_transport_node_stats(tr, ns, NODES, &rs);
        restored = rs.live_nodes == 2 && rs.degraded_chunks == 0 && rs.repaired_pages > 0;
    } while (!restored && now_s() < until);
    sleep_s(seconds / 3);
    lethe_memnode_stop(node[1]);
    node[1] = NULL;
    sleep_s(seconds / 3);
    atomic_store(&stop, true);
    for (unsigned i = 0; i < WORKERS; i++)
        pthread_join(t[i], NULL);
    lethe_transport_node_stats(tr, ns, NODES, &rs);
    lethe_transport_close(tr);
    lethe_memnode_stop(node[2]);
    char path[64];
    snprintf(path, sizeof(path), "%s/token", dir);
    unlink(path);
    rmdir(dir);
    printf("replicas: %lu operations, %lu wrong, %llu pages re-replicated, redundancy %s after "
           "the first loss\n",
           atomic_load(&ops), atomic_load(&mismatches), (unsigned long long)rs.repaired_pages,
           restored ? "restored" : "NOT restored");
    return atomic_load(&mismatches) == 0 && restored && atomic_load(&ops) > 1000 ? 0 : 1;
}
