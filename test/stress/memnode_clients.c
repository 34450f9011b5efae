/* memnode_clients.c — the memory node and the shm/tcp transports under concurrency, as a
 * plain program so that it also runs under ThreadSanitizer (where Criterion cannot start).
 *
 * Phase 1: an embedded node (memnode.h, its own libevent thread); six client threads, half
 * shm and half tcp, each opening a transport with two channels, writing batches on one
 * channel and reading them back on the other with content checks, closing and reopening,
 * while the main thread reads the node's stats. Phase 2: the real bin/memnode process with
 * two clients at once, stopped with SIGTERM, which must exit 0 (under TSan a reported race
 * makes it exit 66). Exit status 0 when every page read back was the one written, 1
 * otherwise; a watchdog alarm turns a hang into a failure. LETHE_STRESS_SECONDS sets the
 * length of phase 1 (default 1 s under TSan, 0.5 s elsewhere).
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "core/log.h"
#include "memnode.h"
#include "rdma/auth.h"
#include "rdma/transport.h"

#ifdef LETHE_TSAN
#define DEFAULT_SECONDS 1.0
#else
#define DEFAULT_SECONDS 0.5
#endif
#define PAGE LETHE_PAGE_SIZE

static char dir[96];
static char token[LETHE_TOKEN_MAX + 1];

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void watchdog(int sig)
{
    (void)sig;
    static const char msg[] = "memnode_clients: hung (watchdog)\n";
    if (write(2, msg, sizeof(msg) - 1) < 0) {
    }
    _exit(2);
}

static int open_transport(enum lethe_transport_kind kind, const char *addr,
                          struct lethe_transport **t)
{
    struct lethe_transport_params p;
    memset(&p, 0, sizeof(p));
    p.kind = kind;
    snprintf(p.node, sizeof(p.node), "%s", addr);
    snprintf(p.token, sizeof(p.token), "%s", token);
    p.remote_size = 1 << 20;
    p.connect_timeout_us = 5000000;
    p.max_batch = 64;
    return lethe_transport_open(&p, t);
}

struct client {
    const char *addr;
    enum lethe_transport_kind kind;
    double until;
    unsigned id;
    unsigned long pages;
    int failed;
};

static void *client_run(void *arg)
{
    struct client *c = arg;
    uint8_t *buf = aligned_alloc(PAGE, 8 * PAGE);
    unsigned gen = c->id << 20;
    do {
        struct lethe_transport *t;
        struct lethe_channel *ch[2];
        if (open_transport(c->kind, c->addr, &t) < 0) {
            fprintf(stderr, "client %u: cannot open %s\n", c->id, c->addr);
            c->failed = 1;
            break;
        }
        if (lethe_channel_open(t, 0, &ch[0]) < 0 || lethe_channel_open(t, 1, &ch[1]) < 0) {
            fprintf(stderr, "client %u: cannot open channels\n", c->id);
            c->failed = 1;
            lethe_transport_close(t);
            break;
        }
        for (int round = 0; round < 16 && !c->failed; round++, gen++) {
            uint64_t slots[8];
            void *ptrs[8];
            for (unsigned i = 0; i < 8; i++) {
                slots[i] = (gen * 8 + i) % 256;
                ptrs[i] = buf + (size_t)i * PAGE;
                memset(ptrs[i], (int)(slots[i] ^ gen), PAGE);
            }
            if (lethe_channel_write_batch(ch[gen % 2], slots, (const void *const *)ptrs, 8) < 0 ||
                (memset(buf, 0, 8 * PAGE),
                 lethe_channel_read_batch(ch[(gen + 1) % 2], slots, ptrs, 8) < 0)) {
                fprintf(stderr, "client %u: %s | %s\n", c->id, lethe_channel_error(ch[0]),
                        lethe_channel_error(ch[1]));
                c->failed = 1;
                break;
            }
            for (unsigned i = 0; i < 8; i++) {
                const uint8_t *p = ptrs[i];
                if (p[0] != (uint8_t)(slots[i] ^ gen) || p[PAGE - 1] != p[0]) {
                    fprintf(stderr, "client %u: slot %llu read back wrong\n", c->id,
                            (unsigned long long)slots[i]);
                    c->failed = 2;
                }
            }
            c->pages += 16;
        }
        lethe_channel_close(ch[0]);
        lethe_channel_close(ch[1]);
        lethe_transport_close(t);
    } while (now_s() < c->until && !c->failed);
    free(buf);
    return NULL;
}

static int run_clients(const char *tcp, const char *sock, unsigned n, double seconds,
                       struct lethe_memnode *node)
{
    pthread_t th[8];
    struct client c[8];
    double until = now_s() + seconds;
    for (unsigned i = 0; i < n; i++) {
        c[i] = (struct client){.addr = i % 2 ? tcp : sock,
                               .kind = i % 2 ? LETHE_TRANSPORT_TCP : LETHE_TRANSPORT_SHM,
                               .until = until,
                               .id = i};
        pthread_create(&th[i], NULL, client_run, &c[i]);
    }
    struct lethe_memnode_stats st;
    while (node && now_s() < until) {
        lethe_memnode_get_stats(node, &st); /* read while the node thread updates them */
        if (st.bytes_lent > st.capacity) {
            fprintf(stderr, "stats: %llu bytes lent of %llu\n", (unsigned long long)st.bytes_lent,
                    (unsigned long long)st.capacity);
            return 1;
        }
    }
    int failed = 0;
    unsigned long pages = 0;
    for (unsigned i = 0; i < n; i++) {
        pthread_join(th[i], NULL);
        failed |= c[i].failed;
        pages += c[i].pages;
    }
    printf("memnode_clients: %u clients (shm and tcp), %lu pages moved and checked%s\n", n, pages,
           failed ? ": FAILED" : "");
    return failed ? 1 : 0;
}

static int phase_embedded(double seconds)
{
    struct lethe_memnode_config cfg;
    lethe_memnode_config_defaults(&cfg);
    cfg.capacity = 64ULL << 20;
    snprintf(cfg.tcp_listen, sizeof(cfg.tcp_listen), "127.0.0.1:0");
    snprintf(cfg.unix_socket, sizeof(cfg.unix_socket), "%s/embedded.sock", dir);
    snprintf(cfg.token_file, sizeof(cfg.token_file), "%s/token", dir);
    struct lethe_memnode *n;
    if (lethe_memnode_start(&cfg, &n) < 0)
        return 1;
    char err[128];
    if (lethe_token_load(cfg.token_file, false, token, sizeof(token), NULL, err, sizeof(err)) < 0)
        return 1;
    int rc = run_clients(lethe_memnode_tcp_address(n), lethe_memnode_unix_path(n), 6, seconds, n);
    lethe_memnode_stop(n);
    return rc;
}

static int phase_process(void)
{
    char conf[160], log[160], sock[160], tcp[64] = "";
    snprintf(conf, sizeof(conf), "%s/memnode.conf", dir);
    snprintf(log, sizeof(log), "%s/memnode.log", dir);
    snprintf(sock, sizeof(sock), "%s/process.sock", dir);
    FILE *f = fopen(conf, "w");
    fprintf(f, "[memnode]\ncapacity = 16M\ntcp_listen = 127.0.0.1:0\nunix_socket = %s\n"
               "token_file = %s/token\n",
            sock, dir);
    fclose(f);
    pid_t pid = fork();
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        int fd = open(log, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        dup2(fd, 2);
        execl(LETHE_BUILD_DIR "/bin/memnode", "memnode", "-c", conf, (char *)NULL);
        _exit(127);
    }
    for (int i = 0; i < 1000 && !tcp[0]; i++) {
        FILE *l = fopen(log, "r");
        char line[512];
        while (l && fgets(line, sizeof(line), l)) {
            char *p = strstr(line, "ready: tcp=");
            if (p)
                sscanf(p + 11, "%63s", tcp);
        }
        if (l)
            fclose(l);
        if (!tcp[0])
            usleep(10000);
    }
    int rc = tcp[0] ? run_clients(tcp, sock, 2, 0, NULL) : 1;
    kill(pid, SIGTERM);
    int st;
    waitpid(pid, &st, 0);
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
        fprintf(stderr, "memnode_clients: bin/memnode exited with status %d; its log:\n", st);
        FILE *l = fopen(log, "r");
        char line[512];
        while (l && fgets(line, sizeof(line), l))
            fputs(line, stderr);
        if (l)
            fclose(l);
        rc = 1;
    }
    unlink(conf);
    unlink(log);
    return rc;
}

int main(void)
{
    lethe_log_init("memnode_clients");
    lethe_log_set_level(LETHE_LOG_WARN);
    signal(SIGALRM, watchdog);
    signal(SIGPIPE, SIG_IGN);
    alarm(120);
    const char *env = getenv("LETHE_STRESS_SECONDS");
    double seconds = env ? atof(env) : DEFAULT_SECONDS;
    snprintf(dir, sizeof(dir), "/tmp/lethe-mn-stress-%d", getpid());
    mkdir(dir, 0700);
    int rc = phase_embedded(seconds);
    if (rc == 0)
        rc = phase_process();
    char p[160];
    snprintf(p, sizeof(p), "%s/token", dir);
    unlink(p);
    rmdir(dir);
    return rc;
}
