/* session.h — one run of lethed: the program, its runtime files, its memory node, its stats
 * segment and its control port (internal to src/lethed).
 *
 * launch.c owns the session: it fills it in order (run directory, memory node, effective
 * configuration, stats segment, control port, program) and tears it down in reverse. The
 * control port (control.c) reads it; everything runs on lethed's main thread, in one
 * libevent loop, except the embedded memory node, which serves on its own thread and is
 * reached only through memnode.h.
 */
#ifndef LETHED_SESSION_H
#define LETHED_SESSION_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "core/config.h"
#include "core/stats_shm.h"
#include "lethed/account.h"

struct event_base;
struct lethe_memnode;

struct lethed_session {
    const struct lethe_config *cfg;  /* as validated by main.c */
    char command[LETHE_COMMAND_MAX]; /* the program's command line, for display */

    /* Files of this run, in a private directory (0700) removed at the end. */
    char run_dir[128];                 /* TMPDIR (at most 64 bytes) or /tmp, + lethed-XXXXXX */
    char config_path[LETHE_PATH_MAX];  /* the effective configuration handed to liblethe */
    char token_path[LETHE_PATH_MAX];   /* the embedded node's token (0600), or "" */
    char preload_path[LETHE_PATH_MAX]; /* liblethe.so */

    /* Memory node: the embedded one (or NULL) and the address the program uses. With
     * embedded_nodes > 1 the others follow in more_nodes[] (their addresses in
     * more_addresses[]); memnode and memnode_address stay the first. */
    struct lethe_memnode *memnode;
    char memnode_address[LETHE_ADDR_MAX]; /* "" with transport local */
    unsigned n_more;
    struct lethe_memnode *more_nodes[LETHE_MAX_MEMNODES - 1];
    char more_addresses[LETHE_MAX_MEMNODES - 1][LETHE_ADDR_MAX];

    /* Stats segment shared with the program. */
    struct lethe_stats_shm *shm;
    int shm_fd;

    /* The program. */
    pid_t pid;            /* 0 until launched */
    bool running;         /* launched and not yet reaped */
    int wait_status;      /* from waitpid, once reaped */
    uint64_t launched_ns; /* CLOCK_MONOTONIC */
    uint64_t exited_ns;
    struct lethed_account account; /* its resident memory, sampled about once a second */

    /* lethed itself */
    uint64_t started_ns;
    struct event_base *base;
    char control_address[LETHE_ADDR_MAX]; /* "host:port" bound, or "" when off */
};

/* The exit status a shell would report for a wait status (128+signal when killed). */
int lethed_exit_status(int wait_status);

#endif
