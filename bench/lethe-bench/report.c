/* report.c — text and JSON output of lethe-bench (see report.h for the contract).
 *
 * The JSON writer is a small streaming emitter: it tracks only whether the current object
 * already has a member, so it needs no allocation and cannot produce a trailing comma.
 */
#include "report.h"

#include <inttypes.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "core/lethe.h"

/* ---- process counters ---------------------------------------------------------------- */

static uint64_t status_kib(const char *field)
{
    FILE *f = fopen("/proc/self/status", "r");
    if (!f)
        return 0;
    char line[256];
    size_t len = strlen(field);
    uint64_t v = 0;
    while (fgets(line, sizeof(line), f)) {
        if (!strncmp(line, field, len) && line[len] == ':') {
            v = strtoull(line + len + 1, NULL, 10);
            break;
        }
    }
    fclose(f);
    return v;
}

void bench_process_sample(struct bench_process *p)
{
    struct rusage ru;
    memset(p, 0, sizeof(*p));
    if (getrusage(RUSAGE_SELF, &ru) == 0) {
        p->max_rss_bytes = (uint64_t)ru.ru_maxrss * 1024;
        p->major_faults = (uint64_t)ru.ru_majflt;
        p->minor_faults = (uint64_t)ru.ru_minflt;
    }
    p->rss_bytes = status_kib("VmRSS") * 1024;
    p->swap_bytes = status_kib("VmSwap") * 1024;
}

/* ---- JSON emitter -------------------------------------------------------------------- */

struct json {
    FILE *out;
    int depth;
    bool has_member[16];
};

static void j_key(struct json *j, const char *key)
{
    if (j->has_member[j->depth])
        fputc(',', j->out);
    j->has_member[j->depth] = true;
    fprintf(j->out, "\n%*s", 2 * j->depth, "");
    if (key)
        fprintf(j->out, "\"%s\": ", key);
}

static void j_open(struct json *j, const char *key)
{
    if (key || j->depth > 0)
        j_key(j, key);
    fputc('{', j->out);
    j->depth++;
    j->has_member[j->depth] = false;
}

static void j_close(struct json *j)
{
    j->depth--;
    fprintf(j->out, "\n%*s}", 2 * j->depth, "");
}

static void j_u64(struct json *j, const char *key, uint64_t v)
{
    j_key(j, key);
    fprintf(j->out, "%" PRIu64, v);
}

static void j_num(struct json *j, const char *key, double v)
{
    j_key(j, key);
    fprintf(j->out, "%.6g", v);
}

static void j_bool(struct json *j, const char *key, bool v)
{
    j_key(j, key);
    fputs(v ? "true" : "false", j->out);
}

static void j_str(struct json *j, const char *key, const char *s)
{
    j_key(j, key);
    fputc('"', j->out);
    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch == '"' || ch == '\\')
            fprintf(j->out, "\\%c", ch);
        else if (ch < 0x20)
            fprintf(j->out, "\\u%04x", ch);
        else
            fputc(ch, j->out);
    }
    fputc('"', j->out);
}

/* ---- shared figures ------------------------------------------------------------------ */

static double rate(uint64_t n, double s)
{
    return s > 0 ? (double)n / s : 0.0;
}

static uint64_t map_bytes(const struct bench_ctx *c)
{
    uint64_t buckets = c->map.nbuckets * sizeof(void *);
    return buckets + bench_map_count(&c->map) * sizeof(struct bench_node);
}

static void j_latency(struct json *j, const char *key, const struct bench_hist *h)
{
    j_open(j, key);
    j_u64(j, "samples", h->count);
    j_num(j, "mean", bench_hist_mean(h));
    j_u64(j, "p50", bench_hist_percentile(h, 50.0));
    j_u64(j, "p99", bench_hist_percentile(h, 99.0));
    j_u64(j, "p999", bench_hist_percentile(h, 99.9));
    j_u64(j, "max", h->count ? h->max : 0);
    j_close(j);
}

static void j_lethe(struct json *j, struct lethe *l)
{
    struct lethe_stats s;
    lethe_get_stats(l, &s);
    j_open(j, "lethe");
#define STAT(field) j_u64(j, #field, s.field)
    STAT(faults);
    STAT(demand_zero);
    STAT(swap_ins);
    STAT(soft_hits);
    STAT(fault_waits);
    STAT(fault_retries);
    STAT(swap_outs);
    STAT(clean_drops);
    STAT(fresh_discards);
    STAT(reactive_evictions);
    STAT(proactive_evictions);
    STAT(promotions);
    STAT(demotions);
    STAT(released_pages);
    STAT(rebalancer_cycles);
    STAT(shard_skips);
    STAT(period_us);
    STAT(pressure_events);
    STAT(relax_events);
    STAT(frames);
    STAT(free_frames);
    STAT(active_pages);
    STAT(inactive_pages);
    STAT(remote_pages);
    STAT(remote_slots_used);
    STAT(region_pages);
    STAT(metadata_bytes);
    STAT(swap_in_ns_total);
    STAT(late_writes);
    STAT(prefilled);
    STAT(reserve_target);
    STAT(recycled);
    STAT(held);
#undef STAT
    j_num(j, "swap_in_mean_ns", s.swap_ins ? (double)s.swap_in_ns_total / s.swap_ins : 0.0);
    const char *paths = lethe_paths(l);
    j_str(j, "paths", paths ? paths : "");
    j_close(j);
}

void bench_report_json(FILE *out, const struct bench_options *o, struct bench_ctx *c,
                       const struct bench_result *r, const struct bench_process *p)
{
    struct json js = {.out = out};
    struct json *j = &js;
    struct bench_heap *h = c->heap;
    uint64_t entries = bench_map_count(&c->map);
    char wl[2] = {o->workload, 0};

    j_open(j, NULL);
    j_str(j, "bench", "lethe-bench");
    j_str(j, "version", LETHE_VERSION);
    j_str(j, "mode", bench_mode_name(o->mode));
    j_str(j, "heap", bench_heap_describe(h));
    j_bool(j, "preloaded", bench_heap_preloaded(h));
    if (o->mode == BENCH_MODE_DIRECT) {
        j_str(j, "transport", bench_heap_transport(h));
        j_bool(j, "embedded_memnode", bench_heap_embedded_memnode(h));
        j_str(j, "reclaim", bench_heap_reclaim(h));
        j_str(j, "delivery", bench_heap_delivery(h));
        j_u64(j, "cache_bytes", bench_heap_cache_bytes(h));
    }
    j_str(j, "workload", wl);
    j_str(j, "dist", bench_dist_name(o->dist));
    j_num(j, "theta", o->theta);
    j_u64(j, "threads", o->threads);
    j_u64(j, "keys", o->keys);
    j_u64(j, "ops", o->ops);
    j_u64(j, "seed", o->seed);
    j_u64(j, "working_set_bytes", bench_heap_allocated(h));
    j_u64(j, "map_bytes", map_bytes(c));
    j_num(j, "bytes_per_entry", entries ? (double)map_bytes(c) / (double)entries : 0.0);

    j_open(j, "load");
    j_u64(j, "keys", r->loaded);
    j_num(j, "seconds", r->load_s);
    j_num(j, "ops_per_sec", rate(r->loaded, r->load_s));
    j_close(j);

    j_open(j, "run");
    j_u64(j, "ops", r->ops_done);
    j_num(j, "seconds", r->run_s);
    j_num(j, "ops_per_sec", rate(r->ops_done, r->run_s));
    j_u64(j, "reads", r->counts[BENCH_OP_READ]);
    j_u64(j, "updates", r->counts[BENCH_OP_UPDATE]);
    j_u64(j, "inserts", r->counts[BENCH_OP_INSERT]);
    j_open(j, "latency_ns");
    j_u64(j, "sample_every", o->sample_every);
    j_latency(j, "all", &r->all);
    for (unsigned k = 0; k < BENCH_OP_KINDS; k++)
        if (r->hist[k].count)
            j_latency(j, bench_op_name((enum bench_op)k), &r->hist[k]);
    j_close(j);
    j_close(j);

    j_open(j, "verify");
    j_bool(j, "ok", bench_result_ok(r));
    j_u64(j, "not_found", r->not_found);
    j_u64(j, "bad_value", r->bad_value);
    j_u64(j, "bad_node", r->bad_node);
    j_open(j, "final_check");
    j_bool(j, "done", r->checked);
    if (r->checked) {
        j_num(j, "seconds", r->check_s);
        j_u64(j, "nodes", r->scan.nodes);
        j_u64(j, "expected_nodes", r->expected_nodes);
        j_u64(j, "version_sum", r->scan.version_sum);
        j_u64(j, "expected_version_sum", r->updates_applied);
        j_u64(j, "bad_nodes", r->scan.bad);
    }
    j_close(j);
    j_close(j);

    j_open(j, "process");
    j_u64(j, "max_rss_bytes", p->max_rss_bytes);
    j_u64(j, "rss_bytes", p->rss_bytes);
    j_u64(j, "swap_bytes", p->swap_bytes);
    j_u64(j, "major_faults", p->major_faults);
    j_u64(j, "minor_faults", p->minor_faults);
    j_close(j);

    if (bench_heap_lethe(h))
        j_lethe(j, bench_heap_lethe(h));
    j_close(j);
    fputc('\n', out);
}

/* ---- text ---------------------------------------------------------------------------- */

static void human_bytes(uint64_t b, char *buf, size_t len)
{
    const char *units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    double v = (double)b;
    unsigned u = 0;
    while (v >= 1024.0 && u < 4) {
        v /= 1024.0;
        u++;
    }
    snprintf(buf, len, u ? "%.2f %s" : "%.0f %s", v, units[u]);
}

static void text_latency(FILE *out, const char *name, const struct bench_hist *h)
{
    if (!h->count)
        return;
    fprintf(out, "  %-7s p50 %8.2f  p99 %8.2f  p99.9 %8.2f  max %9.2f us  (%" PRIu64 " samples)\n",
            name, bench_hist_percentile(h, 50.0) / 1e3, bench_hist_percentile(h, 99.0) / 1e3,
            bench_hist_percentile(h, 99.9) / 1e3, (double)h->max / 1e3, h->count);
}

void bench_report_text(FILE *out, const struct bench_options *o, struct bench_ctx *c,
                       const struct bench_result *r, const struct bench_process *p)
{
    struct bench_heap *h = c->heap;
    char ws[32], mb[32], rss[32], swp[32];
    uint64_t entries = bench_map_count(&c->map);
    human_bytes(bench_heap_allocated(h), ws, sizeof(ws));
    human_bytes(map_bytes(c), mb, sizeof(mb));
    human_bytes(p->max_rss_bytes, rss, sizeof(rss));
    human_bytes(p->swap_bytes, swp, sizeof(swp));

    fprintf(out,
            "lethe-bench %s: workload %c (%s), %s, %u thread%s, %" PRIu64 " keys, %" PRIu64
            " ops, seed %" PRIu64 "\n",
            LETHE_VERSION, o->workload, c->w->describe,
            o->dist == BENCH_DIST_ZIPFIAN
                ? (o->workload == 'D' ? "latest (zipfian)" : "scrambled zipfian")
                : "uniform",
            o->threads, o->threads == 1 ? "" : "s", o->keys, o->ops, o->seed);
    fprintf(out, "heap:      %s\n", bench_heap_describe(h));
    fprintf(out,
            "working set: %s on the heap (map %s: %.1f B per entry = 48 B node + %.1f B "
            "of bucket array)\n",
            ws, mb, entries ? (double)map_bytes(c) / (double)entries : 0.0,
            entries ? (double)(c->map.nbuckets * 8) / (double)entries : 0.0);
    fprintf(out, "load:      %" PRIu64 " keys in %.3f s: %.0f ops/s\n", r->loaded, r->load_s,
            rate(r->loaded, r->load_s));
    fprintf(out,
            "run:       %" PRIu64 " ops in %.3f s: %.0f ops/s (%" PRIu64 " reads, %" PRIu64
            " updates, %" PRIu64 " inserts)\n",
            r->ops_done, r->run_s, rate(r->ops_done, r->run_s), r->counts[BENCH_OP_READ],
            r->counts[BENCH_OP_UPDATE], r->counts[BENCH_OP_INSERT]);
    fprintf(out, "latency (1 op in %u timed):\n", o->sample_every);
    text_latency(out, "all", &r->all);
    for (unsigned k = 0; k < BENCH_OP_KINDS; k++)
        text_latency(out, bench_op_name((enum bench_op)k), &r->hist[k]);
    if (bench_result_ok(r)) {
        if (r->checked)
            fprintf(out,
                    "verify:    ok (every value checked; final scan: %" PRIu64
                    " nodes intact, versions add up to %" PRIu64 " updates, %.2f s)\n",
                    r->scan.nodes, r->scan.version_sum, r->check_s);
        else
            fprintf(out, "verify:    ok (every value checked; final scan skipped)\n");
    } else {
        fprintf(out,
                "verify:    FAILED: %" PRIu64 " not found, %" PRIu64 " bad values, %" PRIu64
                " bad nodes",
                r->not_found, r->bad_value, r->bad_node);
        if (r->checked)
            fprintf(out,
                    "; final scan: %" PRIu64 " nodes (expected %" PRIu64 "), %" PRIu64
                    " bad (first key %" PRIu64 "), version sum %" PRIu64 " (expected %" PRIu64 ")",
                    r->scan.nodes, r->expected_nodes, r->scan.bad, r->scan.first_bad_key,
                    r->scan.version_sum, r->updates_applied);
        fputc('\n', out);
    }
    fprintf(out, "process:   max RSS %s, swap %s, %" PRIu64 " major faults\n", rss, swp,
            p->major_faults);
    struct lethe *l = bench_heap_lethe(h);
    if (l) {
        const char *paths = lethe_paths(l);
        if (paths)
            fprintf(out, "lethe:     %s\n", paths);
        lethe_print_summary(l, out);
    }
}
