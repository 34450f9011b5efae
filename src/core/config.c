/* config.c — lethe.conf and memnode.conf: one table-driven reader for both (see config.h).
 *
 * Every key is one row of a table: section, name, kind (size, duration, enum, ...), the
 * offset and size of its field, and its allowed range. Loading a file, lethe_config_set() and
 * lethe_config_print() all walk the same rows, so a key exists in exactly one place.
 *
 * libinih splits the lines; we hand it the lines ourselves through ini_parse_stream() with a
 * reader that counts them, because Debian's libinih does not pass line numbers to the handler.
 * The reader also classifies each line (blank, comment, [section], key line) so that lines
 * inih rejects without calling the handler are reported too, strips leading whitespace (so
 * an indented key is a key, never a continuation of the previous value), and remembers the
 * current section itself (inih does not trim "[ cache ]").
 *
 * Problems are collected, not fatal: every one in the file is reported, then the cross-key
 * rules run over the keys that parsed, each reported against the line of the last key it
 * involves (line 0 for keys left at their defaults).
 */
#include "core/config.h"

#include <ctype.h>
#include <errno.h>
#include <ini.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/log.h"

/* ---- the key tables ---------------------------------------------------------------------- */

enum key_kind {
    K_SIZE,     /* uint64_t bytes: lethe_parse_size */
    K_DURATION, /* uint64_t microseconds: lethe_parse_duration */
    K_PERCENT,  /* unsigned 0..100 */
    K_UINT,     /* unsigned, plain digits */
    K_BOOL,     /* bool */
    K_ENUM,     /* enum stored as an int: index into choices */
    K_FRACTION, /* double, strictly between 0 and 1 */
    K_STRING,   /* char[size] */
    K_LISTEN,   /* char[size]: host:port or "off" */
    K_SOCKET,   /* char[size]: a Unix socket path or "off" */
    K_MEMNODES, /* struct lethe_config's memnode_embedded, n_memnodes and memnodes */
};

enum key_flags {
    F_PAGES = 1,    /* a size must be a whole number of pages */
    F_NONEMPTY = 2, /* a string may not be empty */
};

struct key_spec {
    const char *section;
    const char *name;
    enum key_kind kind;
    unsigned flags;
    size_t offset;
    size_t size;
    uint64_t min, max;          /* K_SIZE, K_DURATION, K_PERCENT, K_UINT */
    const char *const *choices; /* K_ENUM, NULL-terminated; the index is the stored value */
};

struct schema {
    const struct key_spec *keys;
    size_t n_keys;
};

#define KB  (1ULL << 10)
#define MB  (1ULL << 20)
#define TB  (1ULL << 40)
#define MS  1000ULL
#define SEC 1000000ULL

/* The longest key table: bounds the per-key line bookkeeping of a load. */
#define MAX_KEYS 48
/* sun_path holds 108 bytes with the terminating NUL. */
#define SOCKET_PATH_MAX 107

static const char *const delivery_names[] = {"thread", "signal", NULL};
static const char *const parking_names[] = {"batch", "move", NULL};
static const char *const reclaim_names[] = {"rebalancer", "direct", NULL};
static const char *const transport_names[] = {"local", "shm", "tcp", "verbs", NULL};
static const char *const level_names[] = {"debug", "info", "warn", "error", NULL};

_Static_assert(sizeof(enum lethe_delivery) == sizeof(unsigned), "enums are stored as ints");
_Static_assert(sizeof(enum lethe_parking) == sizeof(unsigned), "enums are stored as ints");
_Static_assert(sizeof(enum lethe_reclaim) == sizeof(unsigned), "enums are stored as ints");
_Static_assert(sizeof(enum lethe_transport_kind) == sizeof(unsigned), "enums are stored as ints");

// clang-format off
#define FIELD(type, f) offsetof(struct type, f), sizeof(((struct type *)0)->f)
#define L(sec, key, kind, flags, f, lo, hi, ch)                                                    \
    {sec, key, kind, flags, FIELD(lethe_config, f), lo, hi, ch}
#define M(sec, key, kind, flags, f, lo, hi, ch)                                                    \
    {sec, key, kind, flags, FIELD(lethe_memnode_config, f), lo, hi, ch}
// clang-format on

/* lethe.conf, in the order lethe_config_print() writes it. */
static const struct key_spec lethe_keys[] = {
    L("cache", "cache_size", K_SIZE, F_PAGES, cache_size, 64 * KB, 64 * TB, NULL),
    L("cache", "region_size", K_SIZE, F_PAGES, region_size, 64 * KB, 64 * TB, NULL),
    L("cache", "shards", K_UINT, 0, shards, 0, LETHE_MAX_SHARDS, NULL),
    L("cache", "reclaim", K_ENUM, 0, reclaim, 0, 0, reclaim_names),
    L("cache", "reserve", K_PERCENT, 0, reserve_pct, 0, 100, NULL),
    L("cache", "inactive_ratio", K_PERCENT, 0, inactive_pct, 0, 100, NULL),
    L("cache", "reclaim_batch", K_UINT, 0, reclaim_batch, 1, 4096, NULL),
    L("fault", "fault_delivery", K_ENUM, 0, fault_delivery, 0, 0, delivery_names),
    L("fault", "vcpus", K_UINT, 0, vcpus, 0, LETHE_MAX_VCPUS, NULL),
    L("fault", "pin_vcpus", K_BOOL, 0, pin_vcpus, 0, 0, NULL),
    L("fault", "mmap_threshold", K_SIZE, 0, mmap_threshold, 0, 64 * TB, NULL),
    L("fault", "fault_around", K_UINT, 0, fault_around, 0, 64, NULL),
    L("fault", "parking", K_ENUM, 0, parking, 0, 0, parking_names),
    L("rebalancer", "period_min", K_DURATION, 0, period_min_us, 100, 60 * SEC, NULL),
    L("rebalancer", "period_max", K_DURATION, 0, period_max_us, 100, 60 * SEC, NULL),
    L("rebalancer", "period_initial", K_DURATION, 0, period_initial_us, 100, 60 * SEC, NULL),
    L("rebalancer", "additive_increase", K_DURATION, 0, additive_increase_us, 0, 60 * SEC, NULL),
    L("rebalancer", "multiplicative_decrease", K_FRACTION, 0, multiplicative_decrease, 0, 0, NULL),
    L("rebalancer", "pressure_threshold", K_UINT, 0, pressure_threshold, 0, 1000000, NULL),
    L("rebalancer", "cooldown", K_UINT, 0, cooldown, 0, 10000, NULL),
    L("transport", "transport", K_ENUM, 0, transport, 0, 0, transport_names),
    L("transport", "memnode", K_MEMNODES, 0, memnodes, 0, 0, NULL),
    L("transport", "embedded_nodes", K_UINT, 0, embedded_nodes, 1, LETHE_MAX_MEMNODES, NULL),
    L("transport", "remote_size", K_SIZE, F_PAGES, remote_size, 64 * KB, 64 * TB, NULL),
    L("transport", "replicas", K_UINT, 0, replicas, 1, 3, NULL),
    L("transport", "token_file", K_STRING, 0, token_file, 0, 0, NULL),
    L("transport", "shm_delay", K_DURATION, 0, shm_delay_us, 0, 1 * SEC, NULL),
    L("transport", "connect_timeout", K_DURATION, 0, connect_timeout_us, 1 * MS, 3600 * SEC, NULL),
    L("transport", "node_timeout", K_DURATION, 0, node_timeout_us, 1 * MS, 3600 * SEC, NULL),
    L("transport", "repair_rate", K_SIZE, 0, repair_rate, 4 * KB, 64 * TB, NULL),
    L("control", "listen", K_LISTEN, 0, control_listen, 0, 0, NULL),
    L("log", "level", K_ENUM, 0, log_level, 0, 0, level_names),
    L("log", "summary", K_STRING, F_NONEMPTY, summary, 0, 0, NULL),
    L("app", "command", K_STRING, 0, command, 0, 0, NULL),
};

/* memnode.conf */
static const struct key_spec memnode_keys[] = {
    M("memnode", "capacity", K_SIZE, F_PAGES, capacity, 64 * KB, 64 * TB, NULL),
    M("memnode", "tcp_listen", K_LISTEN, 0, tcp_listen, 0, 0, NULL),
    M("memnode", "rdma_listen", K_LISTEN, 0, rdma_listen, 0, 0, NULL),
    M("memnode", "unix_socket", K_SOCKET, 0, unix_socket, 0, 0, NULL),
    M("memnode", "max_clients", K_UINT, 0, max_clients, 1, 4096, NULL),
    M("memnode", "token_file", K_STRING, F_NONEMPTY, token_file, 0, 0, NULL),
    M("log", "level", K_ENUM, 0, log_level, 0, 0, level_names),
};

#define N_KEYS(t) (sizeof(t) / sizeof((t)[0]))
static const struct schema lethe_schema = {lethe_keys, N_KEYS(lethe_keys)};
static const struct schema memnode_schema = {memnode_keys, N_KEYS(memnode_keys)};
_Static_assert(N_KEYS(lethe_keys) <= MAX_KEYS, "raise MAX_KEYS");
_Static_assert(N_KEYS(memnode_keys) <= MAX_KEYS, "raise MAX_KEYS");

/* ---- defaults ------------------------------------------------------------------------------ */

void lethe_config_defaults(struct lethe_config *c)
{
    memset(c, 0, sizeof(*c));
    c->cache_size = 512 * MB;
    c->region_size = 16ULL << 30;
    c->shards = 0;
    c->reclaim = LETHE_RECLAIM_DIRECT;
    c->reserve_pct = 20;
    c->inactive_pct = 2;
    c->reclaim_batch = 4;
    c->fault_delivery = LETHE_DELIVERY_THREAD;
    c->vcpus = 0;
    c->pin_vcpus = true;
    c->mmap_threshold = 256 * KB;
    c->fault_around = 64;
    c->parking = LETHE_PARKING_BATCH;
    c->period_min_us = 10 * MS;
    c->period_max_us = 2000 * MS;
    c->period_initial_us = 100 * MS;
    c->additive_increase_us = 10 * MS;
    c->multiplicative_decrease = 0.5;
    c->pressure_threshold = 3;
    c->cooldown = 6;
    c->transport = LETHE_TRANSPORT_SHM;
    c->memnode_embedded = true;
    c->n_memnodes = 0;
    c->embedded_nodes = 1;
    c->remote_size = 4ULL << 30;
    c->replicas = 1;
    c->shm_delay_us = 0;
    c->connect_timeout_us = 5 * SEC;
    c->node_timeout_us = 10 * SEC;
    c->repair_rate = 64 * MB;
    snprintf(c->control_listen, sizeof(c->control_listen), "127.0.0.1:7070");
    c->log_level = LETHE_LOG_INFO;
    snprintf(c->summary, sizeof(c->summary), "stderr");
}

void lethe_memnode_config_defaults(struct lethe_memnode_config *c)
{
    memset(c, 0, sizeof(*c));
    c->capacity = 8ULL << 30;
    snprintf(c->tcp_listen, sizeof(c->tcp_listen), "127.0.0.1:7400");
    snprintf(c->rdma_listen, sizeof(c->rdma_listen), "off");
    snprintf(c->unix_socket, sizeof(c->unix_socket), "/tmp/lethe-memnode.sock");
    c->max_clients = 64;
    snprintf(c->token_file, sizeof(c->token_file), "/tmp/lethe-memnode.token");
    c->log_level = LETHE_LOG_INFO;
}

const char *lethe_delivery_name(enum lethe_delivery d)
{
    return (unsigned)d < 2 ? delivery_names[d] : "?";
}

const char *lethe_parking_name(enum lethe_parking p)
{
    return (unsigned)p < 2 ? parking_names[p] : "?";
}

const char *lethe_reclaim_name(enum lethe_reclaim r)
{
    return (unsigned)r < 2 ? reclaim_names[r] : "?";
}

const char *lethe_transport_name(enum lethe_transport_kind t)
{
    return (unsigned)t < 4 ? transport_names[t] : "?";
}

/* ---- one value ----------------------------------------------------------------------------- */

static void store_uint(void *field, size_t size, uint64_t v)
{
    if (size == sizeof(uint64_t)) {
        memcpy(field, &v, sizeof(v));
    } else {
        unsigned u = (unsigned)v;
        memcpy(field, &u, sizeof(u));
    }
}

static uint64_t load_uint(const void *field, size_t size)
{
    if (size == sizeof(uint64_t)) {
        uint64_t v;
        memcpy(&v, field, sizeof(v));
        return v;
    }
    unsigned u;
    memcpy(&u, field, sizeof(u));
    return u;
}

/* Writes `v` as the key's kind writes it: "512M", "10ms", "20%", "16". */
static void format_number(const struct key_spec *k, uint64_t v, char *buf, size_t len)
{
    switch (k->kind) {
    case K_SIZE:
        lethe_format_size(v, buf, len);
        break;
    case K_DURATION:
        lethe_format_duration(v, buf, len);
        break;
    case K_PERCENT:
        snprintf(buf, len, "%llu%%", (unsigned long long)v);
        break;
    default:
        snprintf(buf, len, "%llu", (unsigned long long)v);
        break;
    }
}

static int fail(char *err, size_t errlen, const struct key_spec *k, int rc, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));

/* Fills err with "KEY: REASON" and returns rc. */
static int fail(char *err, size_t errlen, const struct key_spec *k, int rc, const char *fmt, ...)
{
    if (err && errlen) {
        int n = snprintf(err, errlen, "%s: ", k->name);
        if (n >= 0 && (size_t)n < errlen) {
            va_list ap;
            va_start(ap, fmt);
            vsnprintf(err + n, errlen - (size_t)n, fmt, ap);
            va_end(ap);
        }
    }
    return rc;
}

static bool all_digits(const char *s)
{
    if (!*s)
        return false;
    for (; *s; s++) {
        if (*s < '0' || *s > '9')
            return false;
    }
    return true;
}

/* Digits only, into a uint64_t; -EINVAL or -ERANGE otherwise. */
static int parse_count(const char *s, uint64_t *v)
{
    if (!all_digits(s))
        return -EINVAL;
    errno = 0;
    unsigned long long x = strtoull(s, NULL, 10);
    if (errno == ERANGE)
        return -ERANGE;
    *v = x;
    return 0;
}

/* host:port with a non-empty host and a port in min_port..65535. */
static bool is_host_port(const char *s, unsigned min_port)
{
    const char *colon = strrchr(s, ':');
    if (!colon || colon == s)
        return false;
    uint64_t port;
    if (parse_count(colon + 1, &port) != 0)
        return false;
    return port >= min_port && port <= 65535;
}

static int parse_number(const struct key_spec *k, const char *value, uint64_t *v, char *err,
                        size_t errlen)
{
    int rc;
    unsigned pct;
    switch (k->kind) {
    case K_SIZE:
        rc = lethe_parse_size(value, v);
        break;
    case K_DURATION:
        rc = lethe_parse_duration(value, v);
        break;
    case K_PERCENT:
        rc = lethe_parse_percent(value, &pct);
        *v = pct;
        break;
    default:
        rc = parse_count(value, v);
        break;
    }
    if (rc == -EINVAL) {
        if (value[0] == '-')
            return fail(err, errlen, k, rc, "'%s' is negative", value);
        switch (k->kind) {
        case K_SIZE:
            return fail(err, errlen, k, rc, "'%s' is not a size (use K, M or G)", value);
        case K_DURATION:
            if (all_digits(value))
                return fail(err, errlen, k, rc, "'%s' has no unit (use us, ms or s)", value);
            return fail(err, errlen, k, rc, "'%s' is not a duration (use us, ms or s)", value);
        case K_PERCENT:
            return fail(err, errlen, k, rc, "'%s' is not a percentage", value);
        default:
            return fail(err, errlen, k, rc, "'%s' is not a number", value);
        }
    }
    if (rc == 0 && (*v < k->min || *v > k->max))
        rc = -ERANGE;
    if (rc == -ERANGE) {
        char lo[32], hi[32];
        format_number(k, k->min, lo, sizeof(lo));
        format_number(k, k->max, hi, sizeof(hi));
        return fail(err, errlen, k, rc, "'%s' is out of range (%s..%s)", value, lo, hi);
    }
    if ((k->flags & F_PAGES) && *v % LETHE_PAGE_SIZE != 0)
        return fail(err, errlen, k, -EINVAL, "'%s' is not a multiple of the page size (4K)", value);
    return 0;
}

static int parse_memnodes(const struct key_spec *k, struct lethe_config *c, const char *value,
                          char *err, size_t errlen)
{
    if (strcmp(value, "embedded") == 0) {
        c->memnode_embedded = true;
        c->n_memnodes = 0;
        memset(c->memnodes, 0, sizeof(c->memnodes));
        return 0;
    }
    char list[LETHE_MAX_MEMNODES][LETHE_ADDR_MAX];
    memset(list, 0, sizeof(list)); /* copied whole: no stack garbage in the config */
    unsigned n = 0;
    const char *p = value;
    for (;;) {
        const char *end = strchr(p, ',');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        while (len && isspace((unsigned char)*p)) {
            p++;
            len--;
        }
        while (len && isspace((unsigned char)p[len - 1]))
            len--;
        if (len == 0)
            return fail(err, errlen, k, -EINVAL, "'%s' has an empty address", value);
        if (len == 8 && strncmp(p, "embedded", 8) == 0)
            return fail(err, errlen, k, -EINVAL, "'%s': embedded cannot be combined with addresses",
                        value);
        if (n == LETHE_MAX_MEMNODES)
            return fail(err, errlen, k, -ERANGE, "'%s' lists more than %d memory nodes", value,
                        LETHE_MAX_MEMNODES);
        if (len >= LETHE_ADDR_MAX)
            return fail(err, errlen, k, -ERANGE, "'%.*s' is longer than %d characters", (int)len, p,
                        LETHE_ADDR_MAX - 1);
        for (size_t i = 0; i < len; i++) {
            if (isspace((unsigned char)p[i]))
                return fail(err, errlen, k, -EINVAL, "'%.*s' contains a space", (int)len, p);
        }
        memcpy(list[n], p, len);
        list[n][len] = '\0';
        n++;
        if (!end)
            break;
        p = end + 1;
    }
    c->memnode_embedded = false;
    c->n_memnodes = n;
    memset(c->memnodes, 0, sizeof(c->memnodes));
    memcpy(c->memnodes, list, n * sizeof(list[0]));
    return 0;
}

/* Parses value into k's field of the struct at base. Returns 0, or -EINVAL / -ERANGE with
 * "KEY: REASON" in err; the field is left as it was on error. */
static int apply_value(const struct key_spec *k, void *base, const char *value, char *err,
                       size_t errlen)
{
    char *field = (char *)base + k->offset;
    if (!*value && !(k->kind == K_STRING && !(k->flags & F_NONEMPTY)))
        return fail(err, errlen, k, -EINVAL, "empty value");

    switch (k->kind) {
    case K_SIZE:
    case K_DURATION:
    case K_PERCENT:
    case K_UINT: {
        uint64_t v;
        int rc = parse_number(k, value, &v, err, errlen);
        if (rc)
            return rc;
        store_uint(field, k->size, v);
        return 0;
    }
    case K_BOOL: {
        bool b;
        if (lethe_parse_bool(value, &b) != 0)
            return fail(err, errlen, k, -EINVAL, "'%s' is not a boolean (use yes or no)", value);
        memcpy(field, &b, sizeof(b));
        return 0;
    }
    case K_ENUM: {
        for (unsigned i = 0; k->choices[i]; i++) {
            if (strcasecmp(value, k->choices[i]) == 0) {
                store_uint(field, k->size, i);
                return 0;
            }
        }
        char names[256] = "";
        size_t off = 0;
        for (unsigned i = 0; k->choices[i] && off < sizeof(names); i++)
            off += (size_t)snprintf(names + off, sizeof(names) - off, "%s%s", i ? ", " : "",
                                    k->choices[i]);
        return fail(err, errlen, k, -EINVAL, "'%s' is not one of %s", value, names);
    }
    case K_FRACTION: {
        char *end;
        errno = 0;
        double d = strtod(value, &end);
        bool numeric = (value[0] >= '0' && value[0] <= '9') || value[0] == '.' || value[0] == '-' ||
                       value[0] == '+';
        if (!numeric || *end != '\0' || errno == ERANGE)
            return fail(err, errlen, k, -EINVAL, "'%s' is not a number", value);
        if (!(d > 0.0 && d < 1.0))
            return fail(err, errlen, k, -ERANGE, "'%s' is not between 0 and 1 (exclusive)", value);
        memcpy(field, &d, sizeof(d));
        return 0;
    }
    case K_LISTEN:
    case K_SOCKET:
    case K_STRING: {
        size_t len = strlen(value);
        if (len >= k->size)
            return fail(err, errlen, k, -ERANGE, "'%.40s...' is longer than %zu characters", value,
                        k->size - 1);
        if (k->kind == K_LISTEN && strcmp(value, "off") != 0 && !is_host_port(value, 0))
            return fail(err, errlen, k, -EINVAL, "'%s' is not host:port or off", value);
        if (k->kind == K_SOCKET && len > SOCKET_PATH_MAX)
            return fail(err, errlen, k, -ERANGE,
                        "'%s' is longer than %d characters (the limit of a Unix socket path)",
                        value, SOCKET_PATH_MAX);
        memcpy(field, value, len + 1);
        return 0;
    }
    case K_MEMNODES:
        return parse_memnodes(k, base, value, err, errlen);
    }
    return fail(err, errlen, k, -EINVAL, "unsupported key kind");
}

static const struct key_spec *find_key(const struct schema *s, const char *section,
                                       const char *name)
{
    for (size_t i = 0; i < s->n_keys; i++) {
        if ((!section || strcmp(s->keys[i].section, section) == 0) &&
            strcmp(s->keys[i].name, name) == 0)
            return &s->keys[i];
    }
    return NULL;
}

static bool known_section(const struct schema *s, const char *section)
{
    for (size_t i = 0; i < s->n_keys; i++) {
        if (strcmp(s->keys[i].section, section) == 0)
            return true;
    }
    return false;
}

int lethe_config_set(struct lethe_config *c, const char *section, const char *key,
                     const char *value, char *err, size_t errlen)
{
    const struct key_spec *k = find_key(&lethe_schema, section, key);
    if (!k) {
        if (err && errlen)
            snprintf(err, errlen, "%s: unknown key", key);
        return -ENOENT;
    }
    return apply_value(k, c, value, err, errlen);
}

/* ---- loading a file ------------------------------------------------------------------------ */

struct load_state {
    const struct schema *schema;
    void *base;
    const char *path;
    FILE *errors;
    FILE *in;
    int problems;
    unsigned line;         /* the line the reader handed out last */
    bool line_expects_key; /* it is neither blank, comment nor section header */
    bool line_got_key;     /* the handler ran for it */
    char section[64];      /* the current section, trimmed */
    bool section_unknown;  /* keys in it are not reported one by one */
    char *buf;             /* getline's buffer */
    size_t bufcap;
    char long_key[64];           /* the key of an over-long line, for the report */
    int read_errno;              /* why reading stopped early, 0 at end of file */
    unsigned key_line[MAX_KEYS]; /* where each key was set, 0: not set */
    bool key_bad[MAX_KEYS];      /* its value was rejected */
};

static void report(struct load_state *st, unsigned line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void report(struct load_state *st, unsigned line, const char *fmt, ...)
{
    st->problems++;
    if (!st->errors)
        return;
    va_list ap;
    va_start(ap, fmt);
    fprintf(st->errors, "%s:%u: ", st->path, line);
    vfprintf(st->errors, fmt, ap);
    fputc('\n', st->errors);
    va_end(ap);
}

static char *trim(char *s)
{
    while (isspace((unsigned char)*s))
        s++;
    size_t len = strlen(s);
    while (len && isspace((unsigned char)s[len - 1]))
        s[--len] = '\0';
    return s;
}

/* Called when the reader moves past a line: a key line inih did not hand us is malformed. */
static void finish_line(struct load_state *st)
{
    if (st->line_expects_key && !st->line_got_key) {
        char *text = trim(st->buf);
        report(st, st->line, "%s: expected KEY = VALUE", text);
    }
    st->line_expects_key = false;
    st->line_got_key = false;
}

/* Looks at one line before inih does: sections, and what inih will silently reject. */
static void classify_line(struct load_state *st, char *s)
{
    if (*s == '\0' || *s == ';' || *s == '#')
        return;
    if (*s == '[') {
        char *close = strchr(s, ']');
        if (!close) {
            report(st, st->line, "%s: missing ']'", trim(s));
            return;
        }
        size_t len = (size_t)(close - s - 1);
        char name[sizeof(st->section)];
        snprintf(name, sizeof(name), "%.*s", (int)len, s + 1);
        snprintf(st->section, sizeof(st->section), "%s", trim(name));
        st->section_unknown = !known_section(st->schema, st->section);
        if (st->section_unknown)
            report(st, st->line, "[%s]: unknown section", st->section);
        return;
    }
    st->line_expects_key = true;
}

static char *read_line(char *str, int num, void *stream)
{
    struct load_state *st = stream;
    if (st->line)
        finish_line(st);
    errno = 0;
    ssize_t n = getline(&st->buf, &st->bufcap, st->in);
    if (n < 0) {
        st->read_errno = ferror(st->in) ? (errno ? errno : EIO) : 0;
        return NULL;
    }
    st->line++;
    char *s = st->buf;
    if (st->line == 1 && strncmp(s, "\xEF\xBB\xBF", 3) == 0)
        s += 3;
    while (isspace((unsigned char)*s))
        s++;
    size_t len = strlen(s);
    if (len >= (size_t)num) { /* inih's buffer holds num - 1 characters, '\n' included */
        /* Too long for inih's buffer: report it here (unless it is a comment) and hand inih a
         * blank line instead. */
        snprintf(str, (size_t)num, "\n");
        if (*s == ';' || *s == '#')
            return str;
        size_t key_len = strcspn(s, "=:");
        snprintf(st->long_key, sizeof(st->long_key), "%.*s", (int)key_len, s);
        report(st, st->line, "%s: line is longer than %d characters", trim(st->long_key), num - 2);
        return str;
    }
    memcpy(str, s, len + 1);
    char probe[len + 1];
    memcpy(probe, s, len + 1);
    classify_line(st, trim(probe));
    return str;
}

static int handle_key(void *user, const char *inih_section, const char *name, const char *value)
{
    struct load_state *st = user;
    st->line_got_key = true;
    if (!*name) {
        report(st, st->line, "%s: expected KEY = VALUE", trim(st->buf));
        return 1;
    }
    if (st->section_unknown)
        return 1; /* the section was reported once */
    const struct key_spec *k = find_key(st->schema, st->section, name);
    if (!k) {
        const struct key_spec *elsewhere = find_key(st->schema, NULL, name);
        if (!st->section[0] && elsewhere)
            report(st, st->line, "%s: outside any section (it belongs in [%s])", name,
                   elsewhere->section);
        else if (!st->section[0])
            report(st, st->line, "%s: outside any section", name);
        else if (elsewhere)
            report(st, st->line, "%s: unknown key in [%s] (it belongs in [%s])", name, st->section,
                   elsewhere->section);
        else
            report(st, st->line, "%s: unknown key", name);
        return 1;
    }
    size_t idx = (size_t)(k - st->schema->keys);
    if (st->key_line[idx]) {
        report(st, st->line, "%s: set twice (first on line %u)", name, st->key_line[idx]);
        return 1;
    }
    st->key_line[idx] = st->line;
    char err[512];
    if (apply_value(k, st->base, value, err, sizeof(err)) != 0) {
        st->key_bad[idx] = true;
        report(st, st->line, "%s", err);
    }
    return 1;
}

/* Returns the number of problems, or -errno when the file cannot be read. */
static int load_file(struct load_state *st)
{
    st->in = fopen(st->path, "r");
    if (!st->in)
        return -errno;
    /* Debian's libinih takes the line limit at run time; [app] command may be long. */
    if (ini_max_line < LETHE_COMMAND_MAX + 256)
        ini_max_line = LETHE_COMMAND_MAX + 256;
    int rc = ini_parse_stream(read_line, st, handle_key, st);
    if (st->line)
        finish_line(st);
    fclose(st->in);
    free(st->buf);
    st->buf = NULL;
    if (rc == -2)
        return -ENOMEM;
    if (st->read_errno)
        return -st->read_errno;
    return st->problems;
}

/* ---- cross-key rules ----------------------------------------------------------------------- */

struct rule_ctx {
    struct load_state *st; /* carries the key lines; st->path is the name reported */
    const struct schema *schema;
};

/* The line of the last of the named keys set in the file (0: all defaults), or -1 when one of
 * them had a bad value (its rule would judge a value the user did not write). */
static int rule_line(const struct rule_ctx *r, const char *const *names)
{
    int line = 0;
    for (; *names; names++) {
        const struct key_spec *k = find_key(r->schema, NULL, *names);
        size_t idx = (size_t)(k - r->schema->keys);
        if (r->st->key_bad[idx])
            return -1;
        if ((int)r->st->key_line[idx] > line)
            line = (int)r->st->key_line[idx];
    }
    return line;
}

#define KEYS(...) ((const char *const[]){__VA_ARGS__, NULL})

static void rule_report(const struct rule_ctx *r, const char *const *names, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Reports "NAME:LINE: FIRST_KEY: ..." unless one of the keys had a bad value. */
static void rule_report(const struct rule_ctx *r, const char *const *names, const char *fmt, ...)
{
    int line = rule_line(r, names);
    if (line < 0)
        return;
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    report(r->st, (unsigned)line, "%s: %s", names[0], msg);
}

static void validate_lethe(const struct rule_ctx *r, const struct lethe_config *c)
{
    char a[32], b[32], d[32];
    if (c->reserve_pct >= 100)
        rule_report(r, KEYS("reserve"), "%u%% leaves no frames to use (must be below 100%%)",
                    c->reserve_pct);
    if (c->cache_size > c->region_size) {
        lethe_format_size(c->cache_size, a, sizeof(a));
        lethe_format_size(c->region_size, b, sizeof(b));
        rule_report(r, KEYS("cache_size", "region_size"), "%s is larger than region_size %s", a, b);
    }
    uint64_t frames = c->cache_size / LETHE_PAGE_SIZE;
    if (c->shards > frames) {
        lethe_format_size(c->cache_size, a, sizeof(a));
        rule_report(r, KEYS("shards", "cache_size"),
                    "%u shards but only %llu frames (cache_size %s)", c->shards,
                    (unsigned long long)frames, a);
    }
    if (c->period_min_us > c->period_max_us) {
        lethe_format_duration(c->period_min_us, a, sizeof(a));
        lethe_format_duration(c->period_max_us, b, sizeof(b));
        rule_report(r, KEYS("period_min", "period_max"), "%s is above period_max %s", a, b);
    } else if (c->period_initial_us < c->period_min_us || c->period_initial_us > c->period_max_us) {
        lethe_format_duration(c->period_initial_us, a, sizeof(a));
        lethe_format_duration(c->period_min_us, b, sizeof(b));
        lethe_format_duration(c->period_max_us, d, sizeof(d));
        rule_report(r, KEYS("period_initial", "period_min", "period_max"),
                    "%s is outside period_min %s .. period_max %s", a, b, d);
    }
    if (c->transport == LETHE_TRANSPORT_LOCAL && !c->memnode_embedded) {
        rule_report(r, KEYS("memnode", "transport"),
                    "transport local keeps pages in-process and takes no addresses "
                    "(use memnode = embedded)");
    } else if (!c->memnode_embedded) {
        if (c->embedded_nodes > 1)
            rule_report(r, KEYS("embedded_nodes", "memnode"),
                        "%u embedded nodes, but memnode lists addresses (use memnode = embedded)",
                        c->embedded_nodes);
        unsigned tokens = 0;
        if (c->token_file[0]) {
            tokens = 1;
            for (const char *q = c->token_file; *q; q++)
                tokens += *q == ',';
        }
        if (tokens > 1 && tokens != c->n_memnodes)
            rule_report(r, KEYS("token_file", "memnode"),
                        "%u token files for %u memory nodes (give one for all, or one per node)",
                        tokens, c->n_memnodes);
        for (unsigned i = 0; i < c->n_memnodes; i++) {
            const char *addr = c->memnodes[i];
            if (c->transport == LETHE_TRANSPORT_SHM) {
                if (!strchr(addr, '/'))
                    rule_report(r, KEYS("memnode", "transport"),
                                "'%s' is not a Unix socket path (transport shm)", addr);
                else if (strlen(addr) > SOCKET_PATH_MAX)
                    rule_report(r, KEYS("memnode", "transport"),
                                "'%s' is longer than %d characters (transport shm)", addr,
                                SOCKET_PATH_MAX);
            } else if (!is_host_port(addr, 1)) {
                rule_report(r, KEYS("memnode", "transport"), "'%s' is not host:port (transport %s)",
                            addr, lethe_transport_name(c->transport));
            }
        }
    }
}

static void validate_replicas(const struct rule_ctx *r, const struct lethe_config *c)
{
    unsigned nodes = c->memnode_embedded ? c->embedded_nodes : c->n_memnodes;
    if (c->transport == LETHE_TRANSPORT_LOCAL && (c->replicas > 1 || c->embedded_nodes > 1))
        rule_report(r, KEYS("replicas", "embedded_nodes", "transport"),
                    "transport local has no memory nodes to replicate over");
    else if (c->replicas > nodes)
        rule_report(r, KEYS("replicas", c->memnode_embedded ? "embedded_nodes" : "memnode"),
                    "%u replicas need at least %u memory nodes (%u configured)", c->replicas,
                    c->replicas, nodes);
}

static void validate_memnode(const struct rule_ctx *r, const struct lethe_memnode_config *c)
{
    if (strcmp(c->tcp_listen, "off") == 0 && strcmp(c->rdma_listen, "off") == 0 &&
        strcmp(c->unix_socket, "off") == 0)
        rule_report(r, KEYS("unix_socket", "tcp_listen", "rdma_listen"),
                    "tcp_listen, rdma_listen and unix_socket are all off: no client can connect");
}

int lethe_config_validate(const struct lethe_config *c, const char *name, FILE *errors)
{
    struct load_state st = {.schema = &lethe_schema, .path = name, .errors = errors};
    struct rule_ctx r = {&st, &lethe_schema};
    validate_lethe(&r, c);
    validate_replicas(&r, c);
    return st.problems;
}

int lethe_config_load(struct lethe_config *c, const char *path, FILE *errors)
{
    struct load_state st = {.schema = &lethe_schema, .base = c, .path = path, .errors = errors};
    int rc = load_file(&st);
    if (rc < 0)
        return rc;
    struct rule_ctx r = {&st, &lethe_schema};
    validate_lethe(&r, c);
    validate_replicas(&r, c);
    return st.problems;
}

int lethe_memnode_config_load(struct lethe_memnode_config *c, const char *path, FILE *errors)
{
    struct load_state st = {.schema = &memnode_schema, .base = c, .path = path, .errors = errors};
    int rc = load_file(&st);
    if (rc < 0)
        return rc;
    struct rule_ctx r = {&st, &memnode_schema};
    validate_memnode(&r, c);
    return st.problems;
}

/* ---- printing ------------------------------------------------------------------------------ */

static void print_value(const struct key_spec *k, const void *base, FILE *out)
{
    const char *field = (const char *)base + k->offset;
    char buf[64];
    switch (k->kind) {
    case K_SIZE:
    case K_DURATION:
    case K_PERCENT:
    case K_UINT:
        format_number(k, load_uint(field, k->size), buf, sizeof(buf));
        fputs(buf, out);
        break;
    case K_BOOL: {
        bool b;
        memcpy(&b, field, sizeof(b));
        fputs(b ? "yes" : "no", out);
        break;
    }
    case K_ENUM: {
        uint64_t v = load_uint(field, k->size);
        unsigned n = 0;
        while (k->choices[n])
            n++;
        fputs(v < n ? k->choices[v] : "?", out);
        break;
    }
    case K_FRACTION: {
        double d, back;
        memcpy(&d, field, sizeof(d));
        /* The shortest text that reads back as the same double. */
        for (int prec = 1; prec <= 17; prec++) {
            snprintf(buf, sizeof(buf), "%.*g", prec, d);
            back = strtod(buf, NULL);
            if (back == d)
                break;
        }
        fputs(buf, out);
        break;
    }
    case K_LISTEN:
    case K_SOCKET:
    case K_STRING:
        fputs(field, out);
        break;
    case K_MEMNODES: {
        const struct lethe_config *c = base;
        if (c->memnode_embedded) {
            fputs("embedded", out);
            break;
        }
        for (unsigned i = 0; i < c->n_memnodes; i++)
            fprintf(out, "%s%s", i ? "," : "", c->memnodes[i]);
        break;
    }
    }
}

static void print_schema(const struct schema *s, const void *base, FILE *out)
{
    const char *section = NULL;
    for (size_t i = 0; i < s->n_keys; i++) {
        const struct key_spec *k = &s->keys[i];
        if (!section || strcmp(section, k->section) != 0) {
            fprintf(out, "%s[%s]\n", section ? "\n" : "", k->section);
            section = k->section;
        }
        bool is_string = k->kind == K_STRING || k->kind == K_LISTEN || k->kind == K_SOCKET;
        if (is_string && *((const char *)base + k->offset) == '\0') {
            fprintf(out, "%s =\n", k->name); /* no trailing space */
            continue;
        }
        fprintf(out, "%s = ", k->name);
        print_value(k, base, out);
        fputc('\n', out);
    }
}

void lethe_config_print(const struct lethe_config *c, FILE *out)
{
    fputs("# Lethe: effective configuration (lethe.conf)\n", out);
    print_schema(&lethe_schema, c, out);
}

void lethe_memnode_config_print(const struct lethe_memnode_config *c, FILE *out)
{
    fputs("# Lethe memory node: effective configuration (memnode.conf)\n", out);
    print_schema(&memnode_schema, c, out);
}
