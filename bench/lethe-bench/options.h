/* options.h — lethe-bench's command line.
 *
 * The reference client's flags (-t -k -o -d -w -m -c -a -p, with their long forms) and its
 * defaults (1 thread, 60M keys, 20M operations, zipfian, workload A, 1850 MB cache), plus
 * Lethe's: --mode, --transport, --memnode, --reclaim, --delivery, -C/--config, --json,
 * --seed, --no-progress and a few more (bench_usage() lists them all).
 *
 * Counts (-k, -o) take an optional k, m or g suffix meaning 10^3, 10^6, 10^9, since YCSB
 * sizes are decimal: "-k 60m" is 60,000,000 keys. -m is whole megabytes (MiB), -c gigabytes
 * (GiB, decimals allowed: "-c 1.5").
 *
 * bench_options_parse() is reentrant in the sense the tests need (it resets getopt), prints
 * each problem as "lethe-bench: OPTION: REASON" to `err`, and never exits.
 */
#ifndef BENCH_OPTIONS_H
#define BENCH_OPTIONS_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "core/config.h"

enum bench_mode {
    BENCH_MODE_DIRECT = 0, /* link Lethe, lethe_start(), map on lethe_extent_alloc() */
    BENCH_MODE_PLAIN = 1,  /* malloc: kernel swap, or liblethe.so preloaded by lethed */
};

enum bench_dist {
    BENCH_DIST_UNIFORM = 0,
    BENCH_DIST_ZIPFIAN = 1, /* scrambled Zipfian; "latest" for workload D */
};

#define BENCH_DEFAULT_KEYS     60000000ULL
#define BENCH_DEFAULT_OPS      20000000ULL
#define BENCH_DEFAULT_CACHE_MB 1850ULL
#define BENCH_DEFAULT_PORT     7400u
#define BENCH_MAX_THREADS      256u

struct bench_options {
    unsigned threads;
    uint64_t keys;
    uint64_t ops;
    enum bench_dist dist;
    double theta;  /* Zipfian constant, 0.99 */
    char workload; /* 'A' .. 'D' */
    enum bench_mode mode;
    bool mode_given;

    /* direct mode: Lethe's settings. *_given says the flag was on the command line, so it
     * overrides the config file (-C); otherwise the file's value, or the bench default. */
    uint64_t cache_bytes;
    bool cache_given;
    enum lethe_transport_kind transport;
    bool transport_given;
    enum lethe_reclaim reclaim;
    bool reclaim_given;
    enum lethe_delivery delivery;
    bool delivery_given;
    char addr[LETHE_ADDR_MAX]; /* -a: host for tcp, socket path for shm */
    unsigned port;             /* -p */
    bool port_given;
    char memnode[LETHE_ADDR_MAX]; /* --memnode: host:port or socket path, wins over -a/-p */
    char token_file[LETHE_PATH_MAX];
    char config_file[LETHE_PATH_MAX];
    uint64_t shm_delay_us;
    bool shm_delay_given;

    /* output and run control */
    bool json;
    bool progress; /* false with --no-progress */
    uint64_t seed;
    unsigned sample_every; /* time 1 operation in N (power of two), 16 */
    bool final_check;      /* scan the whole map at the end (false with --no-final-check) */
    bool print_size;       /* print the working set for these flags and exit */
};

void bench_options_defaults(struct bench_options *o);
/* Returns 0 to run, 1 when --help printed the usage to `out`, or -EINVAL (reported). */
int bench_options_parse(struct bench_options *o, int argc, char **argv, FILE *out, FILE *err);
void bench_usage(FILE *out);

/* Parses a count with an optional k/m/g (10^3/10^6/10^9) suffix. 0, -EINVAL or -ERANGE. */
int bench_parse_count(const char *s, uint64_t *out);

const char *bench_mode_name(enum bench_mode m);
const char *bench_dist_name(enum bench_dist d);

#endif
