/* account.c — see account.h. */
#define _GNU_SOURCE
#include "lethed/account.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "core/log.h"

#define NODE_PREFIX "/memfd:lethe-region"

static uint64_t monotonic_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

enum kind { OUTSIDE, CACHE, NODE };

static void keep_top(struct lethed_account_sample *out, const struct lethed_mapping *m)
{
    for (unsigned i = 0; i < LETHED_ACCOUNT_TOP; i++) {
        if (m->rss > out->top[i].rss) {
            memmove(&out->top[i + 1], &out->top[i],
                    (LETHED_ACCOUNT_TOP - 1 - i) * sizeof(out->top[0]));
            out->top[i] = *m;
            return;
        }
    }
}

/* The end of one mapping's block: adds it up. */
static void close_mapping(struct lethed_account_sample *out, enum kind k,
                          const struct lethed_mapping *m, uint64_t anon)
{
    out->rss += m->rss;
    if (k == CACHE) {
        out->cache += m->rss;
        return;
    }
    if (k == NODE) {
        out->node += m->rss;
        return;
    }
    out->outside += m->rss;
    out->anon_outside += anon;
    keep_top(out, m);
}

int lethed_account_parse(FILE *smaps, uint64_t region, uint64_t region_size, uint64_t park,
                         uint64_t park_size, struct lethed_account_sample *out)
{
    memset(out, 0, sizeof(*out));
    char line[512];
    bool open = false;
    enum kind k = OUTSIDE;
    struct lethed_mapping m;
    uint64_t anon = 0;
    unsigned mappings = 0;
    while (fgets(line, sizeof(line), smaps)) {
        uint64_t lo, hi, kb;
        int name_at = 0;
        if (sscanf(line, "%" SCNx64 "-%" SCNx64 " %*s %*s %*s %*s %n", &lo, &hi, &name_at) == 2 &&
            name_at > 0) {
            if (open)
                close_mapping(out, k, &m, anon);
            open = true;
            mappings++;
            memset(&m, 0, sizeof(m));
            m.start = lo;
            m.end = hi;
            const char *name = line + name_at;
            size_t len = strcspn(name, "\n");
            snprintf(m.name, sizeof(m.name), "%.*s", (int)(len ? len : 6), len ? name : "[anon]");
            anon = 0;
            bool in_region = region_size && lo >= region && hi <= region + region_size;
            bool in_park = park_size && lo >= park && hi <= park + park_size;
            k = in_region || in_park                                   ? CACHE
                : strncmp(name, NODE_PREFIX, strlen(NODE_PREFIX)) == 0 ? NODE
                                                                       : OUTSIDE;
            continue;
        }
        if (!open)
            continue;
        if (sscanf(line, "Rss: %" SCNu64 " kB", &kb) == 1)
            m.rss = kb * 1024;
        else if (sscanf(line, "Anonymous: %" SCNu64 " kB", &kb) == 1)
            anon = kb * 1024;
    }
    if (open)
        close_mapping(out, k, &m, anon);
    return mappings ? 0 : -EINVAL;
}

static void warn_once(struct lethed_account *a, const char *command)
{
    const struct lethed_account_sample *s = &a->last;
    uint64_t own = s->rss - s->node;
    /* A program starting up holds little but its interpreter or loader: what is outside
     * then says nothing about where its memory will be. */
    if (a->warned || s->outside * 2 <= own || s->outside < LETHED_ACCOUNT_WARN_FLOOR ||
        a->sampled_ns - a->first_ns < LETHED_ACCOUNT_INTERVAL_NS)
        return;
    a->warned = true;
    char top[3 * 160] = "";
    size_t used = 0;
    for (unsigned i = 0; i < LETHED_ACCOUNT_TOP && s->top[i].rss; i++)
        used += (size_t)snprintf(
            top + used, sizeof(top) - used, "%s%#" PRIx64 "-%#" PRIx64 " %s (%" PRIu64 " MiB)",
            i ? ", " : "", s->top[i].start, s->top[i].end, s->top[i].name, s->top[i].rss >> 20);
    lethe_warn("`%s`: %" PRIu64 " of its %" PRIu64 " MiB resident are outside Lethe's cache, "
               "not managed; largest: %s (which mappings Lethe manages: docs/PRELOAD.md)",
               command, s->outside >> 20, own >> 20, top);
}

void lethed_account_update(struct lethed_account *a, int pid,
                           const struct lethe_stats_snapshot *snap, const char *command, bool force)
{
    uint64_t now = monotonic_ns();
    if (pid <= 0 || (!force && a->valid && now - a->sampled_ns < LETHED_ACCOUNT_INTERVAL_NS))
        return;
    char path[64];
    snprintf(path, sizeof(path), "/proc/%d/smaps", pid);
    FILE *f = fopen(path, "re");
    if (!f)
        return; /* the program is gone: the last sample stands */
    struct lethed_account_sample s;
    int rc = lethed_account_parse(f, snap ? snap->region_base : 0, snap ? snap->region_size : 0,
                                  snap ? snap->park_base : 0, snap ? snap->park_size : 0, &s);
    fclose(f);
    if (rc < 0)
        return;
    a->last = s;
    if (!a->valid)
        a->first_ns = now;
    a->valid = true;
    a->sampled_ns = now;
    if (s.rss - s.node > a->rss_peak)
        a->rss_peak = s.rss - s.node;
    if (s.outside > a->outside_peak)
        a->outside_peak = s.outside;
    double remote = snap ? (double)snap->stats.remote_pages * 4096.0 : 0;
    double managed = (double)s.cache + remote;
    a->managed_share =
        managed + (double)s.anon_outside > 0 ? managed / (managed + (double)s.anon_outside) : 0;
    warn_once(a, command);
}
