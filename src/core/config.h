/* config.h — Lethe's configuration: lethe.conf for the compute side, memnode.conf for the
 * memory node. Both are INI files parsed with libinih.
 *
 * Contract:
 *  - lethe_config_defaults() fills every field with its documented default (the values in
 *    conf/lethe.conf are these defaults unless that file says otherwise).
 *  - lethe_config_load() parses a file over the current values and validates the result.
 *    Every problem in the file is reported, one line each, in the form
 *        FILE:LINE: KEY: REASON
 *    e.g. `lethe.conf:12: cache_size: '12X' is not a size (use K, M or G)`; problems that
 *    involve several keys (cache_size > region_size, ...) are reported against the line of
 *    the last of those keys set in the file (or line 0 when all are defaults).
 *    It returns the number of problems (0: the config is usable) or a negative errno when
 *    the file cannot be read.
 *  - lethe_config_set() applies one key=value from elsewhere (the environment lethed hands
 *    to liblethe.so, the control port); it validates the value, not the whole config.
 *  - lethe_config_print() writes the effective configuration back as a valid INI file.
 *
 * Units: sizes take K, M, G or T (powers of 1024; a bare number is bytes), durations take
 * us, ms or s, percentages take an optional '%'. Booleans are yes/no/true/false/on/off/1/0.
 */
#ifndef LETHE_CONFIG_H
#define LETHE_CONFIG_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#define LETHE_PAGE_SHIFT 12
#define LETHE_PAGE_SIZE  (1UL << LETHE_PAGE_SHIFT)

#define LETHE_MAX_VCPUS    256
#define LETHE_MAX_SHARDS   4096
#define LETHE_MAX_MEMNODES 16
#define LETHE_ADDR_MAX     256
#define LETHE_PATH_MAX     512
#define LETHE_COMMAND_MAX  4096

enum lethe_delivery {
    LETHE_DELIVERY_THREAD = 0, /* one handler thread per vCPU reads the userfaultfd */
    LETHE_DELIVERY_SIGNAL = 1, /* UFFD_FEATURE_SIGBUS: the faulting thread serves itself */
};

enum lethe_parking {
    LETHE_PARKING_BATCH = 0, /* demotion unmaps a batch with one TLB flush; pages come back by copy */
    LETHE_PARKING_MOVE = 1,  /* one UFFDIO_MOVE per page each way (a TLB flush each) */
};

enum lethe_reclaim {
    LETHE_RECLAIM_REBALANCER = 0, /* background thread, AIMD period, proactive reserve */
    LETHE_RECLAIM_DIRECT = 1,     /* the fault path reclaims a batch when no frame is free */
};

enum lethe_transport_kind {
    LETHE_TRANSPORT_LOCAL = 0, /* in-process buffer: tests and overhead measurements */
    LETHE_TRANSPORT_SHM = 1,   /* same-host memory node, memfd shared over a Unix socket */
    LETHE_TRANSPORT_TCP = 2,   /* binary protocol over TCP, one connection per vCPU */
    LETHE_TRANSPORT_VERBS = 3, /* one-sided RDMA READ/WRITE through libibverbs + librdmacm */
};

/* lethe.conf */
struct lethe_config {
    /* [cache] */
    uint64_t cache_size;          /* bytes of local page cache (frames), default 512M */
    uint64_t region_size;         /* bytes of managed virtual range, default 16G */
    unsigned shards;              /* independently locked cache partitions, default 16 */
    enum lethe_reclaim reclaim;   /* default rebalancer */
    unsigned reserve_pct;         /* free frames the rebalancer keeps, % of frames, default 20 */
    unsigned inactive_pct;        /* target share of the inactive list, % of resident, def. 30 */
    unsigned reclaim_batch;       /* pages per eviction batch, default 32 */

    /* [fault] */
    enum lethe_delivery fault_delivery; /* default thread */
    unsigned vcpus;                     /* 0 = one per usable CPU (the default) */
    bool pin_vcpus;                     /* pin vCPU i to the (i mod n)-th usable CPU, yes */
    uint64_t mmap_threshold;            /* private anon mmaps >= this go in the region, 1M;
                                           0 = never */
    unsigned fault_around;              /* a first touch zero-fills up to this many pages of
                                           its aligned block while frames are plentiful, 64;
                                           0 or 1 = off */
    enum lethe_parking parking;         /* default batch (move where the kernel lacks it) */

    /* [rebalancer] the AIMD controller of the reference design */
    uint64_t period_min_us;       /* 10ms */
    uint64_t period_max_us;       /* 2000ms */
    uint64_t period_initial_us;   /* 100ms */
    uint64_t additive_increase_us; /* +10ms after `cooldown` calm cycles */
    double multiplicative_decrease; /* x0.5 on pressure */
    unsigned pressure_threshold;  /* reactive evictions per cycle above which: pressure, 3 */
    unsigned cooldown;            /* calm cycles before an increase, 6 */

    /* [transport] */
    enum lethe_transport_kind transport; /* default shm */
    bool memnode_embedded;               /* memnode = embedded (the default) */
    unsigned n_memnodes;                 /* addresses when not embedded */
    char memnodes[LETHE_MAX_MEMNODES][LETHE_ADDR_MAX]; /* host:port, or a Unix socket path */
    unsigned embedded_nodes;             /* embedded nodes lethed starts, 1 */
    uint64_t remote_size;                /* bytes of remote slots the program gets, 4G */
    unsigned replicas;                   /* copies of each page on distinct nodes, 1 */
    char token_file[LETHE_PATH_MAX];     /* shared secret(s): one file, or one per node
                                            (comma-separated); empty: lethed makes one for
                                            the embedded node(s) */
    uint64_t shm_delay_us;               /* injected per-operation delay for shm, default 0 */
    uint64_t connect_timeout_us;         /* 5s */
    uint64_t node_timeout_us;            /* a node silent this long is lost, 10s */
    uint64_t repair_rate;                /* bytes/s of lost copies re-created, 64M */

    /* [control] */
    char control_listen[LETHE_ADDR_MAX]; /* 127.0.0.1:7070, or "off" */

    /* [log] */
    int log_level;                       /* enum lethe_log_level, default info */
    char summary[LETHE_PATH_MAX];        /* "stderr" (default), "off", or a file path */

    /* [app] */
    char command[LETHE_COMMAND_MAX];     /* the program to run when none is given on the
                                            command line (split like a shell, no expansion) */
};

/* memnode.conf */
struct lethe_memnode_config {
    /* [memnode] */
    uint64_t capacity;                   /* bytes of DRAM lent out in all, default 8G */
    char tcp_listen[LETHE_ADDR_MAX];     /* 127.0.0.1:7400, or "off" */
    char rdma_listen[LETHE_ADDR_MAX];    /* "off" (default), or addr:port for RDMA CM */
    char unix_socket[LETHE_PATH_MAX];    /* /tmp/lethe-memnode.sock, or "off" */
    unsigned max_clients;                /* 64 */
    char token_file[LETHE_PATH_MAX];     /* shared secret, created (0600, random) if absent */
    /* [log] */
    int log_level;
};

void lethe_config_defaults(struct lethe_config *c);
int lethe_config_load(struct lethe_config *c, const char *path, FILE *errors);
int lethe_config_set(struct lethe_config *c, const char *section, const char *key,
                     const char *value, char *err, size_t errlen);
/* Cross-key checks only; reports as FILE:0: KEY: REASON with the given name. */
int lethe_config_validate(const struct lethe_config *c, const char *name, FILE *errors);
void lethe_config_print(const struct lethe_config *c, FILE *out);

void lethe_memnode_config_defaults(struct lethe_memnode_config *c);
int lethe_memnode_config_load(struct lethe_memnode_config *c, const char *path, FILE *errors);
void lethe_memnode_config_print(const struct lethe_memnode_config *c, FILE *out);

/* Unit parsers shared by the config, the control port and the command-line tools.
 * Each returns 0, or -EINVAL for text that is not of its kind, -ERANGE on overflow. */
int lethe_parse_size(const char *s, uint64_t *bytes);
int lethe_parse_duration(const char *s, uint64_t *usec);
int lethe_parse_percent(const char *s, unsigned *pct);
int lethe_parse_bool(const char *s, bool *out);
/* Writes a size with the largest unit that divides it ("512M", "4096", "16G"). */
void lethe_format_size(uint64_t bytes, char *buf, size_t len);
void lethe_format_duration(uint64_t usec, char *buf, size_t len);

const char *lethe_delivery_name(enum lethe_delivery d);
const char *lethe_parking_name(enum lethe_parking p);
const char *lethe_reclaim_name(enum lethe_reclaim r);
const char *lethe_transport_name(enum lethe_transport_kind t);

#endif
