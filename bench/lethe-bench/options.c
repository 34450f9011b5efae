/* options.c — parsing lethe-bench's command line (see options.h for the contract).
 *
 * getopt_long() does the splitting; every value is checked here, so a typo is an error with
 * the option's name rather than a zero. Resetting optind to 0 makes glibc reinitialise its
 * scanner, which lets the tests parse several command lines in one process.
 */
#include "options.h"

#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "zipf.h"

void bench_options_defaults(struct bench_options *o)
{
    memset(o, 0, sizeof(*o));
    o->threads = 1;
    o->keys = BENCH_DEFAULT_KEYS;
    o->ops = BENCH_DEFAULT_OPS;
    o->dist = BENCH_DIST_ZIPFIAN;
    o->theta = BENCH_ZIPF_THETA;
    o->workload = 'A';
    o->mode = BENCH_MODE_DIRECT;
    o->cache_bytes = BENCH_DEFAULT_CACHE_MB << 20;
    o->transport = LETHE_TRANSPORT_SHM;
    o->reclaim = LETHE_RECLAIM_REBALANCER;
    o->delivery = LETHE_DELIVERY_THREAD;
    o->port = BENCH_DEFAULT_PORT;
    o->progress = true;
    o->seed = 1;
    o->sample_every = 16;
    o->final_check = true;
}

const char *bench_mode_name(enum bench_mode m)
{
    return m == BENCH_MODE_PLAIN ? "plain" : "direct";
}

const char *bench_dist_name(enum bench_dist d)
{
    return d == BENCH_DIST_UNIFORM ? "uniform" : "zipfian";
}

void bench_usage(FILE *out)
{
    fprintf(out,
            "usage: lethe-bench [options]\n"
            "YCSB-like key-value benchmark: loads keys into a hash map, runs a workload,\n"
            "reports throughput and latency; in direct mode the map lives on Lethe's heap.\n"
            "\n"
            "workload (the reference client's flags):\n"
            "  -t, --threads N        worker threads (default 1)\n"
            "  -k, --keys N           keys to load (default 60m; k/m/g = 10^3/10^6/10^9)\n"
            "  -o, --ops N            operations to run (default 20m)\n"
            "  -d, --dist D           uniform | zipfian (default zipfian, theta 0.99)\n"
            "  -w, --workload W       A 50/50 read/update, B 95/5 read/update, C read only,\n"
            "                         D 95/5 read/insert, reads of the latest keys (default A)\n"
            "  -m, --cache-mb N       Lethe's local cache in MiB (default 1850)\n"
            "  -c, --cache-gb N       Lethe's local cache in GiB (decimals allowed)\n"
            "  -a, --addr ADDR        memory node: host (tcp) or Unix socket path (shm)\n"
            "  -p, --port N           memory node's TCP port (default 7400)\n"
            "\n"
            "Lethe (direct mode):\n"
            "      --mode M           direct (link Lethe, default) | plain (malloc: kernel\n"
            "                         swap, or under lethed with liblethe.so preloaded)\n"
            "  -C, --config FILE      lethe.conf to start from (flags override it)\n"
            "      --transport T      local | shm | tcp | verbs (default shm)\n"
            "      --memnode ADDR     host:port or socket path (wins over -a/-p); without\n"
            "                         one, shm and tcp start an embedded memory node\n"
            "      --token-file FILE  the memory node's shared secret\n"
            "      --reclaim R        rebalancer | direct (default rebalancer)\n"
            "      --delivery D       thread | signal (default thread)\n"
            "      --shm-delay US     injected delay per shm operation, microseconds\n"
            "\n"
            "output and control:\n"
            "      --json             machine-readable result on stdout\n"
            "      --seed N           random seed (default 1)\n"
            "      --theta X          Zipfian constant in (0, 1) (default 0.99)\n"
            "      --sample N         time one operation in N, a power of two (default 16)\n"
            "      --no-progress      no progress bar on stderr\n"
            "      --no-final-check   skip the closing scan that checks every key's version\n"
            "      --print-size       print the working set (bytes) for these flags, exit\n"
            "  -h, --help             this text\n"
            "\n"
            "exit status: 0 ok, 1 error, 2 bad usage, 3 verification failed (wrong value)\n");
}

int bench_parse_count(const char *s, uint64_t *out)
{
    if (!s || !*s)
        return -EINVAL;
    uint64_t v = 0;
    size_t n = 0;
    bool overflow = false;
    while (s[n] >= '0' && s[n] <= '9') {
        unsigned d = (unsigned)(s[n] - '0');
        if (v > (UINT64_MAX - d) / 10)
            overflow = true;
        else
            v = v * 10 + d;
        n++;
    }
    if (n == 0)
        return -EINVAL;
    uint64_t mult = 1;
    switch (s[n]) {
    case '\0':
        break;
    case 'k':
    case 'K':
        mult = 1000;
        break;
    case 'm':
    case 'M':
        mult = 1000000;
        break;
    case 'g':
    case 'G':
        mult = 1000000000;
        break;
    default:
        return -EINVAL;
    }
    if (mult != 1 && s[n + 1] != '\0')
        return -EINVAL;
    if (overflow || v > UINT64_MAX / mult)
        return -ERANGE;
    *out = v * mult;
    return 0;
}

static int bad(FILE *err, const char *opt, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int bad(FILE *err, const char *opt, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(err, "lethe-bench: %s: ", opt);
    vfprintf(err, fmt, ap);
    fputc('\n', err);
    va_end(ap);
    return -EINVAL;
}

static int parse_positive(FILE *err, const char *opt, const char *arg, uint64_t max, uint64_t *v)
{
    int rc = bench_parse_count(arg, v);
    if (rc == -ERANGE || (rc == 0 && *v > max))
        return bad(err, opt, "'%s' is too large (at most %llu)", arg, (unsigned long long)max);
    if (rc < 0)
        return bad(err, opt, "'%s' is not a count (digits, optional k/m/g)", arg);
    if (*v == 0)
        return bad(err, opt, "must be at least 1");
    return 0;
}

static int copy_string(FILE *err, const char *opt, const char *arg, char *dst, size_t len)
{
    if (!*arg)
        return bad(err, opt, "is empty");
    if (strlen(arg) >= len)
        return bad(err, opt, "'%s' is too long (at most %zu characters)", arg, len - 1);
    strcpy(dst, arg);
    return 0;
}

enum {
    OPT_MODE = 256,
    OPT_TRANSPORT,
    OPT_MEMNODE,
    OPT_TOKEN_FILE,
    OPT_RECLAIM,
    OPT_DELIVERY,
    OPT_SHM_DELAY,
    OPT_JSON,
    OPT_SEED,
    OPT_THETA,
    OPT_SAMPLE,
    OPT_NO_PROGRESS,
    OPT_NO_FINAL_CHECK,
    OPT_PRINT_SIZE,
};

static const struct option long_options[] = {
    {"threads", required_argument, NULL, 't'},
    {"keys", required_argument, NULL, 'k'},
    {"ops", required_argument, NULL, 'o'},
    {"dist", required_argument, NULL, 'd'},
    {"workload", required_argument, NULL, 'w'},
    {"cache-mb", required_argument, NULL, 'm'},
    {"cache-gb", required_argument, NULL, 'c'},
    {"addr", required_argument, NULL, 'a'},
    {"port", required_argument, NULL, 'p'},
    {"config", required_argument, NULL, 'C'},
    {"help", no_argument, NULL, 'h'},
    {"mode", required_argument, NULL, OPT_MODE},
    {"transport", required_argument, NULL, OPT_TRANSPORT},
    {"memnode", required_argument, NULL, OPT_MEMNODE},
    {"token-file", required_argument, NULL, OPT_TOKEN_FILE},
    {"reclaim", required_argument, NULL, OPT_RECLAIM},
    {"delivery", required_argument, NULL, OPT_DELIVERY},
    {"shm-delay", required_argument, NULL, OPT_SHM_DELAY},
    {"json", no_argument, NULL, OPT_JSON},
    {"seed", required_argument, NULL, OPT_SEED},
    {"theta", required_argument, NULL, OPT_THETA},
    {"sample", required_argument, NULL, OPT_SAMPLE},
    {"no-progress", no_argument, NULL, OPT_NO_PROGRESS},
    {"no-final-check", no_argument, NULL, OPT_NO_FINAL_CHECK},
    {"print-size", no_argument, NULL, OPT_PRINT_SIZE},
    {NULL, 0, NULL, 0},
};

/* The option as the user would recognise it, for messages. */
static const char *option_name(int c)
{
    for (const struct option *lo = long_options; lo->name; lo++)
        if (lo->val == c)
            return lo->name;
    return "?";
}

static int parse_one(struct bench_options *o, int c, const char *arg, FILE *err)
{
    char opt[40];
    snprintf(opt, sizeof(opt), "--%s", option_name(c));
    uint64_t v;
    char *end;

    switch (c) {
    case 't':
        if (parse_positive(err, opt, arg, BENCH_MAX_THREADS, &v) < 0)
            return -EINVAL;
        o->threads = (unsigned)v;
        return 0;
    case 'k':
        /* 2^40 keys: far beyond any machine, and it keeps the byte counts in 64 bits */
        return parse_positive(err, opt, arg, 1ULL << 40, &o->keys);
    case 'o':
        return parse_positive(err, opt, arg, 1ULL << 48, &o->ops);
    case 'd':
        if (!strcasecmp(arg, "uniform"))
            o->dist = BENCH_DIST_UNIFORM;
        else if (!strcasecmp(arg, "zipfian") || !strcasecmp(arg, "zipf"))
            o->dist = BENCH_DIST_ZIPFIAN;
        else
            return bad(err, opt, "'%s' is not uniform or zipfian", arg);
        return 0;
    case 'w':
        if (strlen(arg) != 1 || !strchr("ABCDabcd", arg[0]))
            return bad(err, opt, "'%s' is not one of A, B, C, D", arg);
        o->workload = (char)(arg[0] & ~0x20);
        return 0;
    case 'm':
        if (parse_positive(err, opt, arg, 1ULL << 30, &v) < 0)
            return -EINVAL;
        o->cache_bytes = v << 20;
        o->cache_given = true;
        return 0;
    case 'c': {
        errno = 0;
        double gb = strtod(arg, &end);
        if (errno || end == arg || *end || !(gb > 0.0) || gb > 1048576.0)
            return bad(err, opt, "'%s' is not a size in GiB (e.g. 2 or 1.5)", arg);
        uint64_t bytes = (uint64_t)llround(gb * 1073741824.0);
        o->cache_bytes = bytes & ~(LETHE_PAGE_SIZE - 1);
        if (o->cache_bytes == 0)
            return bad(err, opt, "'%s' is less than a page", arg);
        o->cache_given = true;
        return 0;
    }
    case 'a':
        return copy_string(err, opt, arg, o->addr, sizeof(o->addr));
    case 'p':
        if (bench_parse_count(arg, &v) < 0 || v == 0 || v > 65535 || strpbrk(arg, "kKmMgG"))
            return bad(err, opt, "'%s' is not a port (1..65535)", arg);
        o->port = (unsigned)v;
        o->port_given = true;
        return 0;
    case 'C':
        return copy_string(err, opt, arg, o->config_file, sizeof(o->config_file));
    case OPT_MODE:
        if (!strcmp(arg, "direct"))
            o->mode = BENCH_MODE_DIRECT;
        else if (!strcmp(arg, "plain"))
            o->mode = BENCH_MODE_PLAIN;
        else
            return bad(err, opt, "'%s' is not direct or plain", arg);
        o->mode_given = true;
        return 0;
    case OPT_TRANSPORT:
        if (!strcmp(arg, "local"))
            o->transport = LETHE_TRANSPORT_LOCAL;
        else if (!strcmp(arg, "shm"))
            o->transport = LETHE_TRANSPORT_SHM;
        else if (!strcmp(arg, "tcp"))
            o->transport = LETHE_TRANSPORT_TCP;
        else if (!strcmp(arg, "verbs") || !strcmp(arg, "rdma"))
            o->transport = LETHE_TRANSPORT_VERBS;
        else
            return bad(err, opt, "'%s' is not local, shm, tcp or verbs", arg);
        o->transport_given = true;
        return 0;
    case OPT_MEMNODE:
        return copy_string(err, opt, arg, o->memnode, sizeof(o->memnode));
    case OPT_TOKEN_FILE:
        return copy_string(err, opt, arg, o->token_file, sizeof(o->token_file));
    case OPT_RECLAIM:
        if (!strcmp(arg, "rebalancer"))
            o->reclaim = LETHE_RECLAIM_REBALANCER;
        else if (!strcmp(arg, "direct"))
            o->reclaim = LETHE_RECLAIM_DIRECT;
        else
            return bad(err, opt, "'%s' is not rebalancer or direct", arg);
        o->reclaim_given = true;
        return 0;
    case OPT_DELIVERY:
        if (!strcmp(arg, "thread"))
            o->delivery = LETHE_DELIVERY_THREAD;
        else if (!strcmp(arg, "signal"))
            o->delivery = LETHE_DELIVERY_SIGNAL;
        else
            return bad(err, opt, "'%s' is not thread or signal", arg);
        o->delivery_given = true;
        return 0;
    case OPT_SHM_DELAY:
        if (bench_parse_count(arg, &o->shm_delay_us) < 0 || strpbrk(arg, "kKmMgG") ||
            o->shm_delay_us > 1000000)
            return bad(err, opt, "'%s' is not a delay in microseconds (0..1000000)", arg);
        o->shm_delay_given = true;
        return 0;
    case OPT_JSON:
        o->json = true;
        return 0;
    case OPT_SEED:
        errno = 0;
        o->seed = strtoull(arg, &end, 0);
        if (errno || end == arg || *end || arg[0] == '-')
            return bad(err, opt, "'%s' is not a number", arg);
        return 0;
    case OPT_THETA:
        errno = 0;
        o->theta = strtod(arg, &end);
        if (errno || end == arg || *end || !(o->theta > 0.0 && o->theta < 1.0))
            return bad(err, opt, "'%s' is not a number in (0, 1)", arg);
        return 0;
    case OPT_SAMPLE:
        if (bench_parse_count(arg, &v) < 0 || v == 0 || v > 65536 || (v & (v - 1)))
            return bad(err, opt, "'%s' is not a power of two from 1 to 65536", arg);
        o->sample_every = (unsigned)v;
        return 0;
    case OPT_NO_PROGRESS:
        o->progress = false;
        return 0;
    case OPT_NO_FINAL_CHECK:
        o->final_check = false;
        return 0;
    case OPT_PRINT_SIZE:
        o->print_size = true;
        return 0;
    }
    return -EINVAL;
}

int bench_options_parse(struct bench_options *o, int argc, char **argv, FILE *out, FILE *err)
{
    int problems = 0;
    optind = 0; /* glibc: full reinitialisation, so repeated parses work */
    opterr = 0; /* our own messages */
    for (;;) {
        int c = getopt_long(argc, argv, ":t:k:o:d:w:m:c:a:p:C:h", long_options, NULL);
        if (c == -1)
            break;
        if (c == 'h') {
            bench_usage(out);
            return 1;
        }
        if (c == '?') {
            const char *arg = argv[optind - 1];
            if (optopt)
                fprintf(err, "lethe-bench: -%c: unknown option (see --help)\n", optopt);
            else
                fprintf(err, "lethe-bench: %s: unknown option (see --help)\n", arg);
            problems++;
            continue;
        }
        if (c == ':') {
            fprintf(err, "lethe-bench: %s: needs a value\n", argv[optind - 1]);
            problems++;
            continue;
        }
        if (parse_one(o, c, optarg, err) < 0)
            problems++;
    }
    if (optind < argc) {
        fprintf(err, "lethe-bench: %s: unexpected argument (see --help)\n", argv[optind]);
        problems++;
    }
    if (problems == 0 && o->mode == BENCH_MODE_PLAIN &&
        (o->transport_given || o->reclaim_given || o->delivery_given || o->memnode[0] ||
         o->config_file[0])) {
        fprintf(err, "lethe-bench: --transport, --reclaim, --delivery, --memnode and --config "
                     "apply to --mode direct (under lethed, set them in lethe.conf)\n");
        problems++;
    }
    return problems ? -EINVAL : 0;
}
