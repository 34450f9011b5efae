/* memnode_harness.h — starts a real `memnode` process for a test (the build's bin/memnode)
 * with a private config, Unix socket, token file and log in /tmp/lethe-mn-PID-N/, waits
 * until it is ready, and reads back where it listens (TCP port 0 picks a free port; the
 * node logs "ready: tcp=ADDR ..."). The node gets PR_SET_PDEATHSIG, so it dies with a test
 * that crashes. Header-only; included by the memnode and transport tests.
 */
#ifndef LETHE_TEST_MEMNODE_HARNESS_H
#define LETHE_TEST_MEMNODE_HARNESS_H

#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "rdma/auth.h"

struct mn_proc {
    pid_t pid;
    char dir[96];
    char conf[160];
    char sock[160];
    char token_file[160];
    char log[160];
    char tcp[64];
    char token[LETHE_TOKEN_MAX + 1];
};

struct mn_opts {
    const char *capacity; /* default "64M" */
    unsigned max_clients; /* default 8 */
    const char *extra;    /* more lines for [memnode], e.g. "rdma_listen = 127.0.0.1:0\n" */
    bool no_token_file;   /* let the node create the token file */
    const char *host;     /* tcp_listen host, default 127.0.0.1 */
    const char *port;     /* tcp_listen port, default 0 (a free one) */
    const char *token;    /* the token's text, default a new one */
};

static inline void mn_sleep_ms(unsigned ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static inline bool mn_log_has(const struct mn_proc *m, const char *needle)
{
    FILE *f = fopen(m->log, "r");
    if (!f)
        return false;
    char line[1024];
    bool found = false;
    while (!found && fgets(line, sizeof(line), f))
        found = strstr(line, needle) != NULL;
    fclose(f);
    return found;
}

/* Writes the config and starts the node; returns 0 once it logged "ready", or -1 (the log
 * says why) when it exited or was not ready within 5 s. */
static inline int mn_start(struct mn_proc *m, const struct mn_opts *o)
{
    static int seq;
    memset(m, 0, sizeof(*m));
    char dir[sizeof(m->dir)]; /* the paths are built from a copy, not from *m itself */
    snprintf(dir, sizeof(dir), "/tmp/lethe-mn-%d-%d", getpid(), seq++);
    memcpy(m->dir, dir, sizeof(dir));
    mkdir(dir, 0700);
    snprintf(m->conf, sizeof(m->conf), "%s/memnode.conf", dir);
    snprintf(m->sock, sizeof(m->sock), "%s/memnode.sock", dir);
    snprintf(m->token_file, sizeof(m->token_file), "%s/token", dir);
    snprintf(m->log, sizeof(m->log), "%s/memnode.log", dir);
    if (!o->no_token_file) {
        FILE *t = fopen(m->token_file, "w");
        if (o->token)
            fprintf(t, "%s\n", o->token);
        else
            fprintf(t, "test-token-%d-%d\n", getpid(), seq);
        fclose(t);
    }
    FILE *f = fopen(m->conf, "w");
    fprintf(f,
            "[memnode]\ncapacity = %s\ntcp_listen = %s:%s\nunix_socket = %s\n"
            "token_file = %s\nmax_clients = %u\n%s[log]\nlevel = info\n",
            o->capacity ? o->capacity : "64M", o->host ? o->host : "127.0.0.1",
            o->port ? o->port : "0", m->sock,
            m->token_file, o->max_clients ? o->max_clients : 8, o->extra ? o->extra : "");
    fclose(f);
    m->pid = fork();
    if (m->pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        int fd = open(m->log, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        dup2(fd, 1);
        dup2(fd, 2);
        unsetenv("LETHE_LOG");
        execl(LETHE_BUILD_DIR "/bin/memnode", "memnode", "-c", m->conf, (char *)NULL);
        _exit(127);
    }
    for (int i = 0; i < 500; i++) {
        int status;
        if (waitpid(m->pid, &status, WNOHANG) == m->pid) {
            m->pid = 0;
            return -1;
        }
        FILE *l = fopen(m->log, "r");
        char line[1024];
        while (l && fgets(line, sizeof(line), l)) {
            char *p = strstr(line, "ready: tcp=");
            if (!p)
                continue;
            sscanf(p + strlen("ready: tcp="), "%63s", m->tcp);
            fclose(l);
            char err[128];
            if (lethe_token_load(m->token_file, false, m->token, sizeof(m->token), NULL, err,
                                 sizeof(err)) < 0)
                return -1;
            return 0;
        }
        if (l)
            fclose(l);
        mn_sleep_ms(10);
    }
    return -1;
}

/* Sends sig and waits; returns the wait status (or -1 when it was not running). */
static inline int mn_signal_wait(struct mn_proc *m, int sig)
{
    if (m->pid <= 0)
        return -1;
    kill(m->pid, sig);
    int status = -1;
    waitpid(m->pid, &status, 0);
    m->pid = 0;
    return status;
}

static inline void mn_cleanup(struct mn_proc *m)
{
    if (m->pid > 0)
        mn_signal_wait(m, SIGKILL);
    if (!m->dir[0])
        return;
    unlink(m->conf);
    unlink(m->sock);
    unlink(m->token_file);
    unlink(m->log);
    rmdir(m->dir);
}

/* Prints the node's log (for a failing test). */
static inline void mn_dump_log(const struct mn_proc *m)
{
    FILE *f = fopen(m->log, "r");
    char line[1024];
    while (f && fgets(line, sizeof(line), f))
        fputs(line, stderr);
    if (f)
        fclose(f);
}

#endif
