/* report.h — lethe-bench's results: human-readable text, or one JSON object (--json).
 *
 * Both carry the same facts: the run's parameters, the heap (mode, transport, cache), the
 * working set in bytes and per entry, load and run throughput, sampled latency percentiles
 * per operation kind, the verification verdict, the process's memory counters (RSS, swap,
 * major faults: the kernel baseline's proof that it swapped) and, in direct mode, Lethe's
 * counters and active kernel paths. Lethe's own summary (lethe_print_summary) follows the
 * text on stdout, or goes to stderr with --json so stdout stays one JSON document.
 */
#ifndef BENCH_REPORT_H
#define BENCH_REPORT_H

#include <stdio.h>

#include "heap.h"
#include "options.h"
#include "runner.h"

struct bench_process {
    uint64_t max_rss_bytes;
    uint64_t rss_bytes;
    uint64_t swap_bytes;
    uint64_t major_faults;
    uint64_t minor_faults;
};

void bench_process_sample(struct bench_process *p);

void bench_report_text(FILE *out, const struct bench_options *o, struct bench_ctx *c,
                       const struct bench_result *r, const struct bench_process *p);
void bench_report_json(FILE *out, const struct bench_options *o, struct bench_ctx *c,
                       const struct bench_result *r, const struct bench_process *p);

#endif
