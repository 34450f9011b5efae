/* progress.c — the progress bar of progress.h.
 *
 * The drawing thread sleeps on a condition variable with a timeout, so stopping it is
 * immediate rather than up to one redraw period late.
 */
#include "progress.h"

#include <stdio.h>
#include <time.h>
#include <unistd.h>

#define REDRAW_NS 250000000L
#define BAR_WIDTH 30

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

static uint64_t sum(const struct bench_progress *p)
{
    uint64_t s = 0;
    for (unsigned i = 0; i < p->ncounters; i++)
        s += atomic_load_explicit(&p->counters[i].done, memory_order_relaxed);
    return s;
}

static void draw(const struct bench_progress *p, uint64_t done, double rate)
{
    double frac = p->total ? (double)done / (double)p->total : 1.0;
    if (frac > 1.0)
        frac = 1.0;
    int fill = (int)(frac * BAR_WIDTH);
    char bar[BAR_WIDTH + 1];
    for (int i = 0; i < BAR_WIDTH; i++)
        bar[i] = i < fill ? '=' : (i == fill ? '>' : ' ');
    bar[BAR_WIDTH] = '\0';
    fprintf(stderr, "\r%-4s [%s] %3.0f%% %llu/%llu %.2f Mops/s  ", p->phase, bar, frac * 100.0,
            (unsigned long long)done, (unsigned long long)p->total, rate / 1e6);
    fflush(stderr);
}

static void *progress_main(void *arg)
{
    struct bench_progress *p = arg;
    uint64_t last_t = now_ns(), last_done = 0;
    pthread_mutex_lock(&p->lock);
    while (!p->stop) {
        struct timespec deadline;
        clock_gettime(CLOCK_REALTIME, &deadline);
        deadline.tv_nsec += REDRAW_NS;
        if (deadline.tv_nsec >= 1000000000L) {
            deadline.tv_sec++;
            deadline.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&p->wake, &p->lock, &deadline);
        if (p->stop)
            break;
        uint64_t t = now_ns(), done = sum(p);
        double rate = t > last_t ? (double)(done - last_done) * 1e9 / (double)(t - last_t) : 0;
        draw(p, done, rate);
        last_t = t;
        last_done = done;
    }
    pthread_mutex_unlock(&p->lock);
    return NULL;
}

void bench_progress_start(struct bench_progress *p, bool enabled, const char *phase, uint64_t total,
                          struct bench_counter *counters, unsigned n)
{
    p->enabled = enabled && isatty(STDERR_FILENO);
    p->running = false;
    if (!p->enabled)
        return;
    p->phase = phase;
    p->total = total;
    p->counters = counters;
    p->ncounters = n;
    p->stop = false;
    pthread_mutex_init(&p->lock, NULL);
    pthread_cond_init(&p->wake, NULL);
    p->running = pthread_create(&p->thread, NULL, progress_main, p) == 0;
}

void bench_progress_stop(struct bench_progress *p)
{
    if (!p->running)
        return;
    pthread_mutex_lock(&p->lock);
    p->stop = true;
    pthread_cond_signal(&p->wake);
    pthread_mutex_unlock(&p->lock);
    pthread_join(p->thread, NULL);
    p->running = false;
    fprintf(stderr, "\r%*s\r", BAR_WIDTH + 60, "");
    fflush(stderr);
    pthread_cond_destroy(&p->wake);
    pthread_mutex_destroy(&p->lock);
}
