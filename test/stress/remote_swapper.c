/* remote_swapper.c — the swapper end to end over a real memory node, as a plain program so
 * that it also runs under ThreadSanitizer (where Criterion cannot start); the Criterion
 * version with more checks is test/test_remote_stress.c.
 *
 * Starts the build's bin/memnode (test/memnode_harness.h: private Unix socket, free TCP port,
 * token file), then runs the stress engine of core_stress.h over the shm and the tcp
 * transport for every combination of delivery (thread, signal), reclaim (rebalancer, direct)
 * and 1, 2 or 8 application threads: a working set four times the cache, every page checked
 * against the version last written to it. Exit status 0 when every case had zero mismatches,
 * every thread made progress and pages went out and came back (swap_outs, swap_ins > 0);
 * 1 otherwise; 77 (skipped, with the reason) when there is no memnode program. A watchdog
 * alarm turns a hang into a failure (exit 2). Each case runs 0.5 s under TSan, 0.15 s
 * elsewhere (LETHE_STRESS_SECONDS overrides).
 *
 * memnode_harness.h includes Criterion's header for the tests' sake; this program uses none
 * of Criterion's functions and does not link it.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "../core_stress.h"
#include "../memnode_harness.h"

#ifdef LETHE_TSAN
#define DEFAULT_SECONDS 0.5
#else
#define DEFAULT_SECONDS 0.15
#endif

static struct mn_proc node;

static void watchdog(int sig)
{
    (void)sig;
    static const char msg[] = "remote_swapper: hung (watchdog)\n";
    if (write(2, msg, sizeof(msg) - 1) < 0) {
    }
    if (node.pid > 0)
        kill(node.pid, SIGKILL);
    _exit(2);
}

int main(void)
{
    lethe_log_init("remote_swapper");
    signal(SIGALRM, watchdog);
    if (access(LETHE_BUILD_DIR "/bin/memnode", X_OK) != 0) {
        printf("SKIPPED: %s/bin/memnode is not built\n", LETHE_BUILD_DIR);
        return 77;
    }
    struct mn_opts o = {.capacity = "64M"};
    alarm(30);
    if (mn_start(&node, &o) < 0) {
        printf("FAIL: memnode did not start; its log:\n");
        fflush(stdout);
        mn_dump_log(&node);
        mn_cleanup(&node);
        return 1;
    }
    const char *env = getenv("LETHE_STRESS_SECONDS");
    double seconds = env ? atof(env) : DEFAULT_SECONDS;
    static const enum lethe_transport_kind kinds[] = {LETHE_TRANSPORT_SHM, LETHE_TRANSPORT_TCP};
    static const enum lethe_delivery deliveries[] = {LETHE_DELIVERY_THREAD, LETHE_DELIVERY_SIGNAL};
    static const enum lethe_reclaim reclaims[] = {LETHE_RECLAIM_REBALANCER, LETHE_RECLAIM_DIRECT};
    static const unsigned threads[] = {1, 2, 8};
    int failed = 0;
    for (unsigned k = 0; k < 2; k++) {
        const char *addr = kinds[k] == LETHE_TRANSPORT_SHM ? node.sock : node.tcp;
        for (unsigned d = 0; d < 2; d++) {
            for (unsigned r = 0; r < 2; r++) {
                for (unsigned t = 0; t < 3; t++) {
                    struct lethe_config c = stress_remote_config(
                        kinds[k], addr, node.token_file, 32UL << 20, deliveries[d], reclaims[r]);
                    alarm((unsigned)(seconds * 20) + 60);
                    struct stress_result res = stress_run_config(&c, threads[t], seconds, -1);
                    alarm(0);
                    int ok = res.start_rc == 0 && res.mismatches == 0 && res.idle_threads == 0 &&
                             res.stats.swap_ins > 0 && res.stats.swap_outs > 0;
                    printf("%s: %s %s, %u threads, %s, %s: lethe_start %d, %lu ops, %lu "
                           "swap-outs, %lu swap-ins, %lu waits, %lu churn rounds, %lu "
                           "mismatches%s%s\n",
                           ok ? "ok" : "FAIL", lethe_transport_name(kinds[k]), addr, threads[t],
                           lethe_delivery_name(deliveries[d]), lethe_reclaim_name(reclaims[r]),
                           res.start_rc, res.ops, (unsigned long)res.stats.swap_outs,
                           (unsigned long)res.stats.swap_ins, (unsigned long)res.stats.fault_waits,
                           res.churn_rounds, res.mismatches, res.error[0] ? ": " : "", res.error);
                    fflush(stdout);
                    if (res.start_rc != 0) {
                        fflush(stdout);
                        mn_dump_log(&node);
                    }
                    failed |= !ok;
                }
            }
        }
    }
    /* the node must still be healthy, and stop cleanly (under TSan, a race it reported makes
     * it exit 66) */
    alarm(30);
    int status = mn_signal_wait(&node, SIGTERM);
    alarm(0);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        printf("FAIL: memnode did not stop cleanly (wait status 0x%x); its log:\n", status);
        fflush(stdout);
        mn_dump_log(&node);
        failed = 1;
    }
    mn_cleanup(&node);
    return failed ? 1 : 0;
}
