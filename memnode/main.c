/* main.c — the `memnode` program: reads memnode.conf, runs the memory node (memnode.h) until
 * SIGTERM or SIGINT, then stops it cleanly (connections closed, Unix socket unlinked, stats
 * logged).
 *
 * Exit status: 0 after a clean stop or a valid --check, 2 for a usage or configuration
 * error, 1 when the node cannot start (port in use, no RDMA device, ...).
 */
#include <errno.h>
#include <getopt.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "core/config.h"
#include "core/log.h"
#include "memnode.h"

static void usage(FILE *out)
{
    fprintf(out,
            "usage: memnode [-c FILE] [--check]\n"
            "Lends this machine's DRAM to Lethe clients over a Unix socket (shm), TCP and RDMA.\n"
            "\n"
            "  -c, --config FILE  read memnode.conf FILE (default: built-in defaults)\n"
            "      --check        validate the configuration, print the effective one, exit\n"
            "                     (0: valid, 2: invalid)\n"
            "  -h, --help         this text\n"
            "  -V, --version      print the version\n"
            "\n"
            "SIGTERM or SIGINT stops the node. LETHE_LOG=debug|info|warn|error overrides\n"
            "[log] level. See docs/MEMNODE.md.\n");
}

/* Each client connection is a file descriptor (and a memfd per client): use all we may. */
static void raise_fd_limit(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
}

int main(int argc, char **argv)
{
    enum { OPT_CHECK = 256 };
    static const struct option opts[] = {
        {"config", required_argument, NULL, 'c'},
        {"check", no_argument, NULL, OPT_CHECK},
        {"help", no_argument, NULL, 'h'},
        {"version", no_argument, NULL, 'V'},
        {NULL, 0, NULL, 0},
    };
    const char *path = NULL;
    bool check = false;
    int opt;
    while ((opt = getopt_long(argc, argv, "c:hV", opts, NULL)) != -1) {
        switch (opt) {
        case 'c':
            path = optarg;
            break;
        case OPT_CHECK:
            check = true;
            break;
        case 'h':
            usage(stdout);
            return 0;
        case 'V':
            printf("memnode %s\n", LETHE_VERSION);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "memnode: unexpected argument '%s'\n", argv[optind]);
        usage(stderr);
        return 2;
    }

    lethe_log_init("memnode");
    lethe_log_set_role("main");
    struct lethe_memnode_config cfg;
    lethe_memnode_config_defaults(&cfg);
    if (path) {
        int problems = lethe_memnode_config_load(&cfg, path, stderr);
        if (problems < 0) {
            fprintf(stderr, "memnode: cannot read %s: %s\n", path, strerror(-problems));
            return 2;
        }
        if (problems > 0) {
            fprintf(stderr, "memnode: %s: %d problem%s\n", path, problems,
                    problems == 1 ? "" : "s");
            return 2;
        }
    }
    if (check) {
        lethe_memnode_config_print(&cfg, stdout);
        return 0;
    }
    lethe_log_set_level((enum lethe_log_level)cfg.log_level);
    raise_fd_limit();

    /* SIGTERM and SIGINT are taken by sigwait() below; the node thread blocks them too. */
    sigset_t stop;
    sigemptyset(&stop);
    sigaddset(&stop, SIGTERM);
    sigaddset(&stop, SIGINT);
    pthread_sigmask(SIG_BLOCK, &stop, NULL);
    signal(SIGPIPE, SIG_IGN);

    struct lethe_memnode *node;
    int rc = lethe_memnode_start(&cfg, &node);
    if (rc < 0) {
        lethe_error("cannot start: %s", strerror(-rc));
        return 1;
    }
    int sig = 0;
    while (sigwait(&stop, &sig) != 0)
        ;
    lethe_info("%s received: shutting down", sig == SIGTERM ? "SIGTERM" : "SIGINT");
    lethe_memnode_stop(node);
    return 0;
}
