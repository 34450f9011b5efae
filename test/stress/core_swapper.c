/* core_swapper.c — the swapper's stress cases (test/core_stress.h) as a plain program, so that
 * they also run under ThreadSanitizer, where Criterion cannot start. Every combination of
 * delivery (thread, signal), reclaim (rebalancer, direct) and 1, 2 or 8 threads; exit status
 * 0 when every page always held what was last written to it, 1 otherwise. Under TSan each
 * case runs one second; elsewhere test/test_stress.c carries the full run and this program a
 * short one (LETHE_STRESS_SECONDS overrides both). A watchdog alarm turns a hang into a
 * failure. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "../core_stress.h"

#ifdef LETHE_TSAN
#define DEFAULT_SECONDS 1.0
#else
#define DEFAULT_SECONDS 0.25
#endif

static void watchdog(int sig)
{
    (void)sig;
    static const char msg[] = "core_swapper: hung (watchdog)\n";
    if (write(2, msg, sizeof(msg) - 1) < 0) {
    }
    _exit(2);
}

int main(void)
{
    lethe_log_init("core_swapper");
    signal(SIGALRM, watchdog);
    const char *env = getenv("LETHE_STRESS_SECONDS");
    double seconds = env ? atof(env) : DEFAULT_SECONDS;
    static const enum lethe_delivery deliveries[] = {LETHE_DELIVERY_THREAD, LETHE_DELIVERY_SIGNAL};
    static const enum lethe_reclaim reclaims[] = {LETHE_RECLAIM_REBALANCER, LETHE_RECLAIM_DIRECT};
    static const unsigned threads[] = {1, 2, 8};
    int failed = 0;
    for (unsigned d = 0; d < 2; d++) {
        for (unsigned r = 0; r < 2; r++) {
            for (unsigned t = 0; t < 3; t++) {
                alarm((unsigned)(seconds * 20) + 60);
                struct stress_result res =
                    stress_run(deliveries[d], reclaims[r], threads[t], seconds);
                alarm(0);
                int ok = res.start_rc == 0 && res.mismatches == 0 && res.idle_threads == 0 &&
                         res.stats.swap_ins > 0;
                printf("%s: %u threads, %s, %s: %lu ops, %lu swap-ins, %lu soft hits, %lu "
                       "waits, %lu late writes, %lu churn rounds, %lu mismatches%s%s\n",
                       ok ? "ok" : "FAIL", threads[t], lethe_delivery_name(deliveries[d]),
                       lethe_reclaim_name(reclaims[r]), res.ops, (unsigned long)res.stats.swap_ins,
                       (unsigned long)res.stats.soft_hits, (unsigned long)res.stats.fault_waits,
                       (unsigned long)res.stats.late_writes, res.churn_rounds, res.mismatches,
                       res.error[0] ? ": " : "", res.error);
                fflush(stdout);
                failed |= !ok;
            }
        }
    }
    return failed ? 1 : 0;
}
