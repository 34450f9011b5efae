/* progress.h — a progress bar on stderr while a phase runs.
 *
 * A background thread redraws one line four times a second: phase, bar, percentage, count
 * and current rate. It reads the workers' counters (relaxed atomic loads of per-worker
 * counters that the workers bump every few hundred operations) and never writes to them.
 * bench_progress_start() does nothing, and starts no thread, when the bar is disabled
 * (--no-progress, or stderr is not a terminal); callers need not check.
 */
#ifndef BENCH_PROGRESS_H
#define BENCH_PROGRESS_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

/* One worker's counter, on its own cache line. */
struct bench_counter {
    _Atomic uint64_t done;
} __attribute__((aligned(64)));

struct bench_progress {
    bool enabled;
    const char *phase;
    uint64_t total;
    struct bench_counter *counters;
    unsigned ncounters;
    pthread_t thread;
    bool running;
    pthread_mutex_t lock;
    pthread_cond_t wake;
    bool stop;
};

/* enabled: the user's wish (false with --no-progress); stderr must also be a terminal. */
void bench_progress_start(struct bench_progress *p, bool enabled, const char *phase, uint64_t total,
                          struct bench_counter *counters, unsigned n);
/* Stops the thread and clears the line. */
void bench_progress_stop(struct bench_progress *p);

#endif
