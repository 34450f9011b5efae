/* report.c — see report.h. Metric names follow Prometheus conventions: a `lethe_` prefix,
 * base units (seconds, bytes), `_total` on counters. JSON keeps the runtime's own field
 * names and raw units. */
#define _GNU_SOURCE
#include "lethed/report.h"

#include <inttypes.h>
#include <signal.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/lethe.h"
#include "core/log.h"
#include "memnode.h"

enum field_kind { COUNTER, GAUGE };

struct stat_field {
    const char *field;  /* name in struct lethe_stats and in /stats */
    const char *metric; /* Prometheus name */
    enum field_kind kind;
    double scale; /* metric value = raw * scale (1: no conversion) */
    const char *help;
    size_t offset;
};

/* clang-format off */
#define C(f, help) {#f, "lethe_" #f "_total", COUNTER, 1, help, offsetof(struct lethe_stats, f)}
#define G(f, help) {#f, "lethe_" #f, GAUGE, 1, help, offsetof(struct lethe_stats, f)}
/* clang-format on */

static const struct stat_field fields[] = {
    C(faults, "Page faults served."),
    C(demand_zero, "First touches of a page, served with zeros."),
    C(swap_ins, "Pages read back from the memory node."),
    C(soft_hits, "Faults on soft-unmapped resident pages, mapped back (cache hits)."),
    C(fault_waits, "Faults on a page another vCPU was bringing in or out."),
    C(fault_retries, "Faults retried because the program was changing its mappings."),
    C(swap_outs, "Dirty pages written back to the memory node."),
    C(clean_drops, "Clean pages with a valid remote copy, dropped without a write."),
    C(fresh_discards, "Pages never written, discarded at eviction."),
    C(reactive_evictions, "Evictions in the fault path (no free frame)."),
    C(proactive_evictions, "Evictions by the rebalancer to keep the reserve."),
    C(promotions, "Pages moved from the inactive to the active list."),
    C(demotions, "Pages moved from the active to the inactive list (soft-unmapped)."),
    C(released_pages, "Pages the program gave back (free, munmap, madvise)."),
    C(rebalancer_cycles, "Rebalancer cycles run."),
    C(shard_skips, "Shards found busy and skipped by the rebalancer."),
    {"period_us", "lethe_rebalancer_period_seconds", GAUGE, 1e-6,
     "Current period of the rebalancer (AIMD-tuned).", offsetof(struct lethe_stats, period_us)},
    C(pressure_events, "Rebalancer cycles that saw pressure and shortened the period."),
    C(relax_events, "Increases of the rebalancer period after calm cycles."),
    G(frames, "Frames of the local cache (cache size / page size)."),
    G(free_frames, "Frames free now."),
    G(active_pages, "Resident pages on the active lists."),
    G(inactive_pages, "Resident pages on the inactive lists (soft-unmapped)."),
    G(remote_pages, "Pages whose only copy is on the memory node."),
    G(remote_slots_used, "Remote page slots in use."),
    G(region_pages, "Pages of the managed region."),
    {"metadata_bytes", "lethe_metadata_bytes", GAUGE, 1,
     "Bytes of runtime metadata (page table, frames, shards).",
     offsetof(struct lethe_stats, metadata_bytes)},
    {"swap_in_ns_total", "lethe_swap_in_seconds_total", COUNTER, 1e-9,
     "Time spent reading pages back, from the transport's read to the page installed.",
     offsetof(struct lethe_stats, swap_in_ns_total)},
    C(late_writes, "Evictions that found a page written after its dirty scan (written back)."),
    C(prefilled, "Pages zero-filled beside a first touch while frames were plentiful."),
    G(reserve_target, "Free frames the rebalancer aims at now (adaptive, at most the reserve)."),
    C(recycled, "Pages installed into the page an eviction left in their frame (no allocation)."),
    C(held, "Demotions refused: the page is read-only or locked by the program (mprotect, mlock)."),
};

#define N_FIELDS (sizeof(fields) / sizeof(fields[0]))

size_t lethed_stat_field_count(void)
{
    return N_FIELDS;
}

static uint64_t field_value(const struct lethe_stats *st, const struct stat_field *f)
{
    uint64_t v;
    memcpy(&v, (const char *)st + f->offset, sizeof(v));
    return v;
}

static const char *state_name(uint64_t state)
{
    switch (state) {
    case LETHE_STATS_STARTING:
        return "starting";
    case LETHE_STATS_RUNNING:
        return "running";
    case LETHE_STATS_EXITED:
        return "exited";
    case LETHE_STATS_FAILED:
        return "failed";
    }
    return "unknown";
}

static double seconds_between(uint64_t from_ns, uint64_t to_ns)
{
    return to_ns > from_ns ? (double)(to_ns - from_ns) / 1e9 : 0.0;
}

int lethed_health(const struct lethed_session *s, const struct lethe_stats_snapshot *snap,
                  bool have_snap, const char **why)
{
    if (!s->running) {
        *why = s->pid ? "the program has exited" : "the program has not been started";
        return 503;
    }
    if (!have_snap) {
        *why = "no stats from the program";
        return 503;
    }
    if (snap->state == LETHE_STATS_STARTING) {
        *why = "the runtime is starting";
        return 503;
    }
    if (snap->state == LETHE_STATS_FAILED) {
        *why = "the runtime failed to start";
        return 503;
    }
    if (snap->state != LETHE_STATS_RUNNING) {
        *why = "the runtime has stopped publishing";
        return 503;
    }
    if (lethe_monotonic_ns() - snap->updated_ns > LETHE_STATS_FRESH_NS) {
        *why = "the program's stats are stale";
        return 503;
    }
    *why = "ok";
    return 200;
}

void lethed_json_string(FILE *out, const char *s)
{
    fputc('"', out);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        switch (*p) {
        case '"':
            fputs("\\\"", out);
            break;
        case '\\':
            fputs("\\\\", out);
            break;
        case '\n':
            fputs("\\n", out);
            break;
        case '\r':
            fputs("\\r", out);
            break;
        case '\t':
            fputs("\\t", out);
            break;
        default:
            if (*p < 0x20)
                fprintf(out, "\\u%04x", *p);
            else
                fputc(*p, out);
        }
    }
    fputc('"', out);
}

static void json_key_str(FILE *out, const char *key, const char *value, bool comma)
{
    fprintf(out, "%s\"%s\": ", comma ? ", " : "", key);
    lethed_json_string(out, value);
}

static void json_config(FILE *out, const struct lethe_config *c)
{
    char memnodes[LETHE_MAX_MEMNODES * LETHE_ADDR_MAX] = "";
    if (c->memnode_embedded) {
        snprintf(memnodes, sizeof(memnodes), "embedded");
    } else {
        size_t off = 0;
        for (unsigned i = 0; i < c->n_memnodes && off < sizeof(memnodes); i++)
            off += (size_t)snprintf(memnodes + off, sizeof(memnodes) - off, "%s%s", i ? "," : "",
                                    c->memnodes[i]);
    }
    fprintf(out,
            "{\"cache_size\": %" PRIu64 ", \"region_size\": %" PRIu64 ", \"shards\": %u, "
            "\"reclaim\": \"%s\", \"reserve_pct\": %u, \"inactive_pct\": %u, "
            "\"reclaim_batch\": %u, \"fault_delivery\": \"%s\", \"vcpus\": %u, "
            "\"pin_vcpus\": %s, \"mmap_threshold\": %" PRIu64 ", "
            "\"period_min_us\": %" PRIu64 ", \"period_max_us\": %" PRIu64 ", "
            "\"period_initial_us\": %" PRIu64 ", \"transport\": \"%s\", ",
            c->cache_size, c->region_size, c->shards, lethe_reclaim_name(c->reclaim),
            c->reserve_pct, c->inactive_pct, c->reclaim_batch,
            lethe_delivery_name(c->fault_delivery), c->vcpus, c->pin_vcpus ? "true" : "false",
            c->mmap_threshold, c->period_min_us, c->period_max_us, c->period_initial_us,
            lethe_transport_name(c->transport));
    json_key_str(out, "memnode", memnodes, false);
    fprintf(out, ", \"remote_size\": %" PRIu64 ", \"shm_delay_us\": %" PRIu64 ", ", c->remote_size,
            c->shm_delay_us);
    json_key_str(out, "control_listen", c->control_listen, false);
    json_key_str(out, "log_level", lethe_log_level_name((enum lethe_log_level)c->log_level), true);
    json_key_str(out, "summary", c->summary, true);
    fputs("}", out);
}

/* The program's resident memory as lethed last sampled it (account.h); null before. */
static void json_account(FILE *out, const struct lethed_account *a)
{
    if (!a->valid) {
        fputs("null", out);
        return;
    }
    const struct lethed_account_sample *m = &a->last;
    fprintf(out,
            "{\"rss\": %" PRIu64 ", \"rss_peak\": %" PRIu64 ", \"cache_rss\": %" PRIu64
            ", \"node_shm_rss\": %" PRIu64 ", \"outside_cache\": %" PRIu64
            ", \"outside_cache_peak\": %" PRIu64 ", \"anon_outside\": %" PRIu64
            ", \"managed_share\": %.4f, \"largest_unmanaged\": [",
            m->rss - m->node, a->rss_peak, m->cache, m->node, m->outside, a->outside_peak,
            m->anon_outside, a->managed_share);
    for (unsigned i = 0; i < LETHED_ACCOUNT_TOP && m->top[i].rss; i++) {
        fprintf(out,
                "%s{\"start\": %" PRIu64 ", \"end\": %" PRIu64 ", \"rss\": %" PRIu64 ", \"name\": ",
                i ? ", " : "", m->top[i].start, m->top[i].end, m->top[i].rss);
        lethed_json_string(out, m->top[i].name);
        fputc('}', out);
    }
    fputs("]}", out);
}

void lethed_report_json(FILE *out, const struct lethed_session *s,
                        const struct lethe_stats_snapshot *snap, bool have_snap)
{
    uint64_t now = lethe_monotonic_ns();
    fprintf(out, "{\n  \"lethed\": {\"version\": \"%s\", \"pid\": %d, \"uptime_s\": %.3f",
            LETHE_VERSION, (int)getpid(), seconds_between(s->started_ns, now));
    json_key_str(out, "control", s->control_address, true);
    fputs("},\n  \"program\": {", out);
    json_key_str(out, "command", s->command, false);
    fprintf(out, ", \"pid\": %d, \"running\": %s", (int)s->pid, s->running ? "true" : "false");
    if (!s->running && s->pid)
        fprintf(out, ", \"exit_status\": %d", lethed_exit_status(s->wait_status));
    else
        fputs(", \"exit_status\": null", out);
    uint64_t end = s->running ? now : s->exited_ns;
    fprintf(out, ", \"runtime_s\": %.3f", s->pid ? seconds_between(s->launched_ns, end) : 0.0);
    const char *why;
    int health = lethed_health(s, snap, have_snap, &why);
    fprintf(out, ", \"healthy\": %s", health == 200 ? "true" : "false");
    json_key_str(out, "health", why, true);
    fputs("},\n  \"runtime\": {", out);
    if (have_snap) {
        json_key_str(out, "state", state_name(snap->state), false);
        fprintf(out,
                ", \"pid\": %" PRIu64 ", \"publications\": %" PRIu64
                ", \"stats_age_s\": %.3f, \"cache_size\": %" PRIu64,
                snap->pid, snap->seq, seconds_between(snap->updated_ns, now), snap->cache_size);
        json_key_str(out, "paths", snap->paths, true);
        json_key_str(out, "error", snap->error, true);
    } else {
        json_key_str(out, "state", "unknown", false);
    }
    fputs("},\n  \"memory\": ", out);
    json_account(out, &s->account);
    fputs(",\n  \"config\": ", out);
    json_config(out, s->cfg);
    fputs(",\n  \"files\": {", out);
    json_key_str(out, "liblethe", s->preload_path, false);
    json_key_str(out, "config", s->config_path, true);
    json_key_str(out, "token", s->token_path, true);
    json_key_str(out, "run_dir", s->run_dir, true);
    json_key_str(out, "memnode", s->memnode_address, true);
    fprintf(out, ", \"memnode_embedded\": %s}", s->memnode ? "true" : "false");
    if (s->memnode) {
        struct lethe_memnode_stats m;
        lethe_memnode_get_stats(s->memnode, &m);
        fprintf(out,
                ",\n  \"memnode\": {\"clients\": %" PRIu64 ", \"connections\": %" PRIu64
                ", \"capacity\": %" PRIu64 ", \"bytes_lent\": %" PRIu64 ", \"reads\": %" PRIu64
                ", \"writes\": %" PRIu64 ", \"pages_read\": %" PRIu64
                ", \"pages_written\": %" PRIu64 ", \"errors\": %" PRIu64
                ", \"auth_failures\": %" PRIu64 "}",
                m.clients, m.connections, m.capacity, m.bytes_lent, m.reads, m.writes, m.pages_read,
                m.pages_written, m.errors, m.auth_failures);
    }
    if (have_snap && snap->nnodes) {
        const struct lethe_replica_stats *rs = &snap->replicas;
        fprintf(out,
                ",\n  \"replicas\": {\"nodes\": %" PRIu64 ", \"replicas\": %" PRIu64
                ", \"live_nodes\": %" PRIu64 ", \"degraded_chunks\": %" PRIu64
                ", \"lost_chunks\": %" PRIu64 ", \"repaired_pages\": %" PRIu64
                ", \"repair_pages_per_s\": %" PRIu64 ", \"bad_copies\": %" PRIu64 "}",
                rs->nodes, rs->replicas, rs->live_nodes, rs->degraded_chunks, rs->lost_chunks,
                rs->repaired_pages, rs->repair_pages_per_s, rs->bad_copies);
        fputs(",\n  \"nodes\": [", out);
        for (uint64_t i = 0; i < snap->nnodes && i < LETHE_MAX_MEMNODES; i++) {
            const struct lethe_node_stats *n = &snap->nodes[i];
            fprintf(out, "%s\n    {", i ? "," : "");
            json_key_str(out, "address", n->addr, false);
            fprintf(out,
                    ", \"live\": %s, \"granted_pages\": %" PRIu64 ", \"placed_pages\": %" PRIu64
                    ", \"reads\": %" PRIu64 ", \"writes\": %" PRIu64 ", \"failures\": %" PRIu64
                    ", \"bad_copies\": %" PRIu64 ", \"rejoins\": %" PRIu64 "}",
                    n->live ? "true" : "false", n->granted_pages, n->placed_pages, n->reads,
                    n->writes, n->failures, n->bad_copies, n->rejoins);
        }
        fputs("]", out);
    }
    fputs(",\n  \"stats\": {", out);
    for (size_t i = 0; i < N_FIELDS; i++)
        fprintf(out, "%s\"%s\": %" PRIu64, i ? ", " : "", fields[i].field,
                have_snap ? field_value(&snap->stats, &fields[i]) : 0);
    fputs("},\n  \"shards\": [", out);
    if (have_snap) {
        for (uint64_t i = 0; i < snap->nshards; i++) {
            const struct lethe_shard_stats *sh = &snap->shards[i];
            fprintf(out,
                    "%s\n    {\"shard\": %" PRIu64 ", \"faults\": %" PRIu64
                    ", \"free_frames\": %" PRIu64 ", \"active\": %" PRIu64
                    ", \"inactive\": %" PRIu64 "}",
                    i ? "," : "", i, sh->faults, sh->free_frames, sh->active, sh->inactive);
        }
    }
    fputs("]\n}\n", out);
}

static void metric_header(FILE *out, const char *name, const char *type, const char *help)
{
    fprintf(out, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void metric_value(FILE *out, const char *name, double value)
{
    fprintf(out, "%s %.17g\n", name, value);
}

static void metric_u64(FILE *out, const char *name, uint64_t value)
{
    fprintf(out, "%s %" PRIu64 "\n", name, value);
}

struct shard_metric {
    const char *name, *type, *help;
    size_t offset;
};

static const struct shard_metric shard_metrics[] = {
    {"lethe_shard_faults_total", "counter", "Faults served, per shard.",
     offsetof(struct lethe_shard_stats, faults)},
    {"lethe_shard_free_frames", "gauge", "Free frames, per shard.",
     offsetof(struct lethe_shard_stats, free_frames)},
    {"lethe_shard_active_pages", "gauge", "Pages on the active list, per shard.",
     offsetof(struct lethe_shard_stats, active)},
    {"lethe_shard_inactive_pages", "gauge", "Pages on the inactive list, per shard.",
     offsetof(struct lethe_shard_stats, inactive)},
};

void lethed_report_prometheus(FILE *out, const struct lethed_session *s,
                              const struct lethe_stats_snapshot *snap, bool have_snap)
{
    uint64_t now = lethe_monotonic_ns();
    const char *why;
    int health = lethed_health(s, snap, have_snap, &why);
    metric_header(out, "lethe_up", "gauge",
                  "1 while the program runs and its runtime publishes fresh stats.");
    metric_u64(out, "lethe_up", health == 200);
    metric_header(out, "lethe_program_running", "gauge", "1 while the program runs.");
    metric_u64(out, "lethe_program_running", s->running);
    metric_header(out, "lethe_program_runtime_seconds", "gauge",
                  "Time since lethed launched the program.");
    metric_value(out, "lethe_program_runtime_seconds",
                 s->pid ? seconds_between(s->launched_ns, s->running ? now : s->exited_ns) : 0);
    const struct lethed_account *a = &s->account;
    if (a->valid) {
        const struct lethed_account_sample *m = &a->last;
        metric_header(out, "lethe_program_resident_bytes", "gauge",
                      "The program's resident memory (smaps Rss, the memory node's shared "
                      "memory left out), last sampled.");
        metric_u64(out, "lethe_program_resident_bytes", m->rss - m->node);
        metric_header(out, "lethe_program_resident_peak_bytes", "gauge",
                      "Largest resident memory sampled.");
        metric_u64(out, "lethe_program_resident_peak_bytes", a->rss_peak);
        metric_header(out, "lethe_resident_outside_cache_bytes", "gauge",
                      "Resident memory outside Lethe's cache (not managed).");
        metric_u64(out, "lethe_resident_outside_cache_bytes", m->outside);
        metric_header(out, "lethe_managed_anon_ratio", "gauge",
                      "Share of the program's anonymous memory Lethe manages (cache and remote "
                      "pages over those plus anonymous memory outside the region).");
        metric_value(out, "lethe_managed_anon_ratio", a->managed_share);
    }
    if (!have_snap)
        return;
    metric_header(out, "lethe_stats_age_seconds", "gauge",
                  "Age of the last stats the program published.");
    metric_value(out, "lethe_stats_age_seconds", seconds_between(snap->updated_ns, now));
    metric_header(out, "lethe_stats_publications_total", "counter",
                  "Stats snapshots the program published.");
    metric_u64(out, "lethe_stats_publications_total", snap->seq);
    metric_header(out, "lethe_cache_size_bytes", "gauge", "Size of the local page cache.");
    metric_u64(out, "lethe_cache_size_bytes", snap->cache_size);
    for (size_t i = 0; i < N_FIELDS; i++) {
        const struct stat_field *f = &fields[i];
        metric_header(out, f->metric, f->kind == COUNTER ? "counter" : "gauge", f->help);
        uint64_t raw = field_value(&snap->stats, f);
        if (f->scale == 1)
            metric_u64(out, f->metric, raw);
        else
            metric_value(out, f->metric, (double)raw * f->scale);
    }
    metric_header(out, "lethe_shards", "gauge", "Shards of the cache.");
    metric_u64(out, "lethe_shards", snap->nshards);
    for (size_t m = 0; m < sizeof(shard_metrics) / sizeof(shard_metrics[0]); m++) {
        const struct shard_metric *sm = &shard_metrics[m];
        metric_header(out, sm->name, sm->type, sm->help);
        for (uint64_t i = 0; i < snap->nshards; i++) {
            uint64_t v;
            memcpy(&v, (const char *)&snap->shards[i] + sm->offset, sizeof(v));
            fprintf(out, "%s{shard=\"%" PRIu64 "\"} %" PRIu64 "\n", sm->name, i, v);
        }
    }
    if (snap->nnodes) {
        static const struct {
            const char *name, *type, *help;
            size_t offset;
        } node_metrics[] = {
            {"lethe_node_live", "gauge", "1 while the memory node is in use, 0 once lost.",
             offsetof(struct lethe_node_stats, live)},
            {"lethe_node_granted_pages", "gauge", "Page slots the memory node lent.",
             offsetof(struct lethe_node_stats, granted_pages)},
            {"lethe_node_placed_pages", "gauge",
             "Page slots of the node that hold (a copy of) the program's slots.",
             offsetof(struct lethe_node_stats, placed_pages)},
            {"lethe_node_pages_read_total", "counter", "Pages read from the memory node.",
             offsetof(struct lethe_node_stats, reads)},
            {"lethe_node_pages_written_total", "counter", "Pages written to the memory node.",
             offsetof(struct lethe_node_stats, writes)},
            {"lethe_node_failures_total", "counter", "Times the memory node was found lost.",
             offsetof(struct lethe_node_stats, failures)},
            {"lethe_node_bad_copies_total", "counter",
             "Copies read from the node that failed their checksum.",
             offsetof(struct lethe_node_stats, bad_copies)},
        };
        for (size_t m = 0; m < sizeof(node_metrics) / sizeof(node_metrics[0]); m++) {
            metric_header(out, node_metrics[m].name, node_metrics[m].type, node_metrics[m].help);
            for (uint64_t i = 0; i < snap->nnodes && i < LETHE_MAX_MEMNODES; i++) {
                uint64_t v;
                memcpy(&v, (const char *)&snap->nodes[i] + node_metrics[m].offset, sizeof(v));
                fprintf(out, "%s{node=\"", node_metrics[m].name);
                for (const char *c = snap->nodes[i].addr; *c; c++) /* label escaping */
                    fprintf(out, *c == '"' || *c == '\\' ? "\\%c" : "%c", *c);
                fprintf(out, "\"} %" PRIu64 "\n", v);
            }
        }
        const struct lethe_replica_stats *rs = &snap->replicas;
        metric_header(out, "lethe_replicas", "gauge", "Copies of each page (replicas).");
        metric_u64(out, "lethe_replicas", rs->replicas);
        metric_header(out, "lethe_degraded_chunks", "gauge",
                      "Chunks of 64 slots with fewer copies than replicas (at least one).");
        metric_u64(out, "lethe_degraded_chunks", rs->degraded_chunks);
        metric_header(out, "lethe_lost_chunks", "gauge", "Written chunks with no copy left.");
        metric_u64(out, "lethe_lost_chunks", rs->lost_chunks);
        metric_header(out, "lethe_repaired_pages_total", "counter",
                      "Pages copied to re-create the copies of lost nodes.");
        metric_u64(out, "lethe_repaired_pages_total", rs->repaired_pages);
    }
    if (s->memnode) {
        struct lethe_memnode_stats m;
        lethe_memnode_get_stats(s->memnode, &m);
        metric_header(out, "lethe_memnode_bytes_lent", "gauge",
                      "Bytes the embedded memory node lends now.");
        metric_u64(out, "lethe_memnode_bytes_lent", m.bytes_lent);
        metric_header(out, "lethe_memnode_pages_read_total", "counter",
                      "Pages the embedded memory node served to reads.");
        metric_u64(out, "lethe_memnode_pages_read_total", m.pages_read);
        metric_header(out, "lethe_memnode_pages_written_total", "counter",
                      "Pages written to the embedded memory node.");
        metric_u64(out, "lethe_memnode_pages_written_total", m.pages_written);
        metric_header(out, "lethe_memnode_errors_total", "counter",
                      "Error replies and dropped connections of the embedded memory node.");
        metric_u64(out, "lethe_memnode_errors_total", m.errors);
    }
}

int lethed_exit_status(int wait_status)
{
    if (WIFEXITED(wait_status))
        return WEXITSTATUS(wait_status);
    if (WIFSIGNALED(wait_status))
        return 128 + WTERMSIG(wait_status);
    return 1;
}

void lethed_report_final_line(FILE *out, const struct lethed_session *s,
                              const struct lethe_stats_snapshot *snap, bool have_snap)
{
    char how[128];
    if (WIFSIGNALED(s->wait_status))
        snprintf(how, sizeof(how), "was killed by signal %d (%s)", WTERMSIG(s->wait_status),
                 strsignal(WTERMSIG(s->wait_status)));
    else
        snprintf(how, sizeof(how), "exited with status %d", lethed_exit_status(s->wait_status));
    fprintf(out, "lethed: `%s` %s after %.2f s", s->command, how,
            seconds_between(s->launched_ns, s->exited_ns));
    if (have_snap && snap->state != LETHE_STATS_STARTING && snap->state != LETHE_STATS_FAILED)
        fprintf(out,
                "; faults %" PRIu64 ", swap-ins %" PRIu64 ", swap-outs %" PRIu64 ", cache %" PRIu64
                " KiB",
                snap->stats.faults, snap->stats.swap_ins, snap->stats.swap_outs,
                snap->cache_size / 1024);
    if (have_snap && snap->state != LETHE_STATS_STARTING && snap->state != LETHE_STATS_FAILED &&
        snap->replicas.nodes > 1)
        fprintf(out,
                "; %" PRIu64 " of %" PRIu64 " memory nodes live, %" PRIu64 " replica%s, %" PRIu64
                " pages re-replicated, %" PRIu64 " bad copies",
                snap->replicas.live_nodes, snap->replicas.nodes, snap->replicas.replicas,
                snap->replicas.replicas == 1 ? "" : "s", snap->replicas.repaired_pages,
                snap->replicas.bad_copies);
    else if (have_snap && snap->state == LETHE_STATS_FAILED)
        fprintf(out, "; the runtime failed: %s", snap->error);
    if (s->account.valid)
        fprintf(out,
                "; resident peak %" PRIu64 " KiB, %" PRIu64 " KiB outside the cache, %.0f%% of "
                "its anonymous memory managed",
                s->account.rss_peak / 1024, s->account.outside_peak / 1024,
                100.0 * s->account.managed_share);
    fputc('\n', out);
}
