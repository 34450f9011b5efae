/* main.c — lethe-bench: the YCSB-like client of the reference design.
 *
 * Parses the flags, opens the heap (Lethe in direct mode, malloc in plain mode), loads the
 * keys, runs the workload, checks the map, and reports. Exit status: 0 ok, 1 error, 2 bad
 * usage, 3 verification failed (a wrong or missing value: the swapper lost or mixed up data).
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/lethe.h"
#include "core/log.h"
#include "heap.h"
#include "options.h"
#include "report.h"
#include "runner.h"

enum {
    EXIT_OK = 0,
    EXIT_ERROR = 1,
    EXIT_USAGE = 2,
    EXIT_VERIFY = 3,
};

int main(int argc, char **argv)
{
    lethe_log_init("lethe-bench");
    struct bench_options o;
    bench_options_defaults(&o);
    int rc = bench_options_parse(&o, argc, argv, stdout, stderr);
    if (rc == 1)
        return EXIT_OK;
    if (rc < 0)
        return EXIT_USAGE;

    if (o.print_size) {
        printf("%" PRIu64 "\n", bench_working_set_estimate(&o));
        return EXIT_OK;
    }

    /* under lethed, liblethe.so already swaps this process: a second Lethe inside it
     * would only compete with it, so plain mode is what the user meant */
    const char *preload = getenv("LD_PRELOAD");
    if (preload && strstr(preload, "liblethe")) {
        if (!o.mode_given) {
            o.mode = BENCH_MODE_PLAIN;
            fprintf(stderr, "lethe-bench: liblethe.so is preloaded (under lethed): plain mode, "
                            "the map is on the preloaded Lethe's heap\n");
        } else if (o.mode == BENCH_MODE_DIRECT) {
            fprintf(stderr, "lethe-bench: warning: --mode direct with liblethe.so preloaded: "
                            "two swappers in one process\n");
        }
    }
    if (o.mode == BENCH_MODE_PLAIN && o.cache_given)
        fprintf(stderr, "lethe-bench: note: --cache-mb/--cache-gb apply to direct mode; in "
                        "plain mode the limit comes from lethed's config or a cgroup\n");

    struct bench_heap *heap;
    rc = bench_heap_open(&o, bench_working_set_estimate(&o), &heap);
    if (rc < 0)
        return rc == -EINVAL ? EXIT_USAGE : EXIT_ERROR;

    struct bench_ctx ctx;
    rc = bench_ctx_init(&ctx, &o, heap);
    if (rc < 0) {
        bench_heap_close(heap);
        return EXIT_ERROR;
    }

    struct bench_result res;
    memset(&res, 0, sizeof(res));
    rc = bench_load(&ctx, &res);
    if (rc == 0)
        rc = bench_run(&ctx, &res);
    if (rc == 0 && o.final_check)
        bench_check(&ctx, &res);

    struct bench_process proc;
    bench_process_sample(&proc);
    if (rc == 0) {
        if (o.json) {
            bench_report_json(stdout, &o, &ctx, &res, &proc);
            fflush(stdout);
            if (bench_heap_lethe(heap))
                lethe_print_summary(bench_heap_lethe(heap), stderr);
        } else {
            bench_report_text(stdout, &o, &ctx, &res, &proc);
        }
    }
    bool ok = bench_result_ok(&res);
    if (!ok && o.json)
        fprintf(stderr, "lethe-bench: verification FAILED (see \"verify\" in the JSON)\n");

    bench_ctx_destroy(&ctx);
    bench_heap_close(heap);
    if (rc < 0)
        return EXIT_ERROR;
    return ok ? EXIT_OK : EXIT_VERIFY;
}
