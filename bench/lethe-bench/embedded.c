/* embedded.c — the embedded memory node of embedded.h.
 *
 * Compiled against memnode/memnode.h when the build has the memory-node library (its include
 * directory is then on the path); otherwise every start reports -ENOTSUP.
 *
 * The node gets a private directory (mkdtemp under $TMPDIR or /tmp) holding its token file
 * (created 0600 with a random token) and, for shm, its Unix socket; TCP listens on a free
 * loopback port. It listens only for the transport in use and lends twice remote_size, as
 * lethed's embedded node does. Stopping it removes the directory.
 */
#include "embedded.h"

#include <errno.h>

#if __has_include(<memnode.h>)

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/log.h"
#include "rdma/auth.h"
#include <memnode.h>

struct bench_embedded {
    struct lethe_memnode *node;
    char dir[LETHE_PATH_MAX - 32];
    char token[LETHE_PATH_MAX];
};

static void remove_dir(struct bench_embedded *e)
{
    unlink(e->token);
    rmdir(e->dir);
}

int bench_embedded_start(struct lethe_config *cfg, struct bench_embedded **out)
{
    *out = NULL;
    if (cfg->transport != LETHE_TRANSPORT_SHM && cfg->transport != LETHE_TRANSPORT_TCP)
        return -ENOTSUP;
    struct bench_embedded *e = calloc(1, sizeof(*e));
    if (!e)
        return -ENOMEM;
    const char *tmp = getenv("TMPDIR");
    if (snprintf(e->dir, sizeof(e->dir), "%s/lethe-bench-%d-XXXXXX", tmp && *tmp ? tmp : "/tmp",
                 (int)getpid()) >= (int)sizeof(e->dir)) {
        free(e);
        return -ENAMETOOLONG;
    }
    if (!mkdtemp(e->dir)) {
        int rc = -errno;
        free(e);
        return rc;
    }
    snprintf(e->token, sizeof(e->token), "%s/token", e->dir);
    char token[LETHE_TOKEN_MAX + 1], err[256] = "";
    int rc = lethe_token_load(e->token, true, token, sizeof(token), NULL, err, sizeof(err));
    memset(token, 0, sizeof(token));
    if (rc < 0) {
        fprintf(stderr, "lethe-bench: token file %s: %s\n", e->token, err);
        goto fail;
    }

    struct lethe_memnode_config mc;
    lethe_memnode_config_defaults(&mc);
    mc.capacity = cfg->remote_size * 2;
    mc.max_clients = 4;
    mc.log_level = cfg->log_level;
    snprintf(mc.token_file, sizeof(mc.token_file), "%s", e->token);
    snprintf(mc.tcp_listen, sizeof(mc.tcp_listen), "off");
    snprintf(mc.rdma_listen, sizeof(mc.rdma_listen), "off");
    snprintf(mc.unix_socket, sizeof(mc.unix_socket), "off");
    if (cfg->transport == LETHE_TRANSPORT_SHM) {
        snprintf(mc.unix_socket, sizeof(mc.unix_socket), "%s/memnode.sock", e->dir);
    } else {
        snprintf(mc.tcp_listen, sizeof(mc.tcp_listen), "127.0.0.1:0");
    }
    rc = lethe_memnode_start(&mc, &e->node);
    if (rc < 0)
        goto fail;

    const char *addr = cfg->transport == LETHE_TRANSPORT_SHM ? lethe_memnode_unix_path(e->node)
                                                             : lethe_memnode_tcp_address(e->node);
    cfg->memnode_embedded = false;
    cfg->n_memnodes = 1;
    snprintf(cfg->memnodes[0], sizeof(cfg->memnodes[0]), "%s", addr);
    snprintf(cfg->token_file, sizeof(cfg->token_file), "%s", e->token);
    *out = e;
    return 0;

fail:
    remove_dir(e);
    free(e);
    return rc;
}

void bench_embedded_stop(struct bench_embedded *e)
{
    if (!e)
        return;
    lethe_memnode_stop(e->node);
    remove_dir(e);
    free(e);
}

#else

int bench_embedded_start(struct lethe_config *cfg, struct bench_embedded **out)
{
    (void)cfg;
    *out = NULL;
    return -ENOTSUP;
}

void bench_embedded_stop(struct bench_embedded *e)
{
    (void)e;
}

#endif
