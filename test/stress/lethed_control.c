/* lethed_control.c — the concurrency of lethed's side channel as a plain program, so that
 * it runs under ThreadSanitizer too (where Criterion cannot start):
 *  1. the stats segment's seqlock: two writers (the stats thread and an exiting thread) and
 *     two readers; every snapshot read must be one that was written, never a mix;
 *  2. the command slot: requests and answers between two threads, each answer matching
 *     its request;
 *  3. the control port (lethed's control.c and report.c, compiled in) on its event loop
 *     thread while a fake program publishes and answers cache size requests, and client
 *     threads (in a second process) fetch /stats, /metrics and /health and resize the cache.
 * Exit status 0 when all hold, 1 otherwise; a watchdog turns a hang into a failure. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <event2/event.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

#include "../../src/lethed/control.c"
#include "../../src/lethed/report.c"
#include "../../src/lethed/account.c"

#ifdef LETHE_TSAN
#define SECONDS 1.0
#else
#define SECONDS 0.3
#endif

static atomic_int failures;

#define CHECK(cond, ...)                                                                           \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "lethed_control: " __VA_ARGS__);                                       \
            fputc('\n', stderr);                                                                   \
            atomic_fetch_add(&failures, 1);                                                        \
        }                                                                                          \
    } while (0)

static double now_s(void)
{
    return (double)lethe_monotonic_ns() / 1e9;
}

static void fill(struct lethe_stats_snapshot *snap, uint64_t k)
{
    memset(snap, 0, offsetof(struct lethe_stats_snapshot, shards));
    snap->state = LETHE_STATS_RUNNING;
    snap->pid = k;
    snap->cache_size = k * 4096;
    snap->nshards = 32;
    uint64_t *w = (uint64_t *)&snap->stats;
    for (size_t i = 0; i < sizeof(snap->stats) / 8; i++)
        w[i] = k;
    snap->stats.frames = k;
    for (unsigned i = 0; i < 32; i++)
        snap->shards[i] = (struct lethe_shard_stats){k, k, k, k};
}

static bool consistent(const struct lethe_stats_snapshot *snap)
{
    const uint64_t *w = (const uint64_t *)&snap->stats;
    for (size_t i = 0; i < sizeof(snap->stats) / 8; i++)
        if (w[i] != snap->pid)
            return false;
    for (unsigned i = 0; i < snap->nshards; i++)
        if (snap->shards[i].active != snap->pid)
            return false;
    return snap->cache_size == snap->pid * 4096;
}

/* ---- 1. seqlock ---- */

struct seq_case {
    struct lethe_stats_shm *s;
    atomic_bool stop;
    atomic_ulong reads;
};

struct writer_arg {
    struct seq_case *c;
    uint64_t first;
};

static void *seq_writer(void *arg)
{
    struct writer_arg *a = arg;
    struct lethe_stats_snapshot *snap = malloc(sizeof(*snap));
    for (uint64_t k = a->first; !atomic_load(&a->c->stop); k += 2) {
        fill(snap, k);
        lethe_stats_shm_publish(a->c->s, snap);
    }
    free(snap);
    return NULL;
}

static void *seq_reader(void *arg)
{
    struct seq_case *c = arg;
    struct lethe_stats_snapshot *snap = malloc(sizeof(*snap));
    while (!atomic_load(&c->stop)) {
        if (lethe_stats_shm_read(c->s, snap) == 0 && snap->seq > 0) {
            CHECK(consistent(snap), "torn snapshot (pid word %llu)", (unsigned long long)snap->pid);
            atomic_fetch_add(&c->reads, 1);
        }
    }
    free(snap);
    return NULL;
}

static void seqlock_case(void)
{
    struct seq_case c = {0};
    int fd;
    CHECK(lethe_stats_shm_create(&c.s, &fd) == 0, "cannot create a segment");
    struct writer_arg w1 = {&c, 1}, w2 = {&c, 2};
    pthread_t t[4];
    pthread_create(&t[0], NULL, seq_writer, &w1);
    pthread_create(&t[1], NULL, seq_writer, &w2);
    pthread_create(&t[2], NULL, seq_reader, &c);
    pthread_create(&t[3], NULL, seq_reader, &c);
    usleep((useconds_t)(SECONDS * 1e6));
    atomic_store(&c.stop, true);
    for (int i = 0; i < 4; i++)
        pthread_join(t[i], NULL);
    CHECK(atomic_load(&c.reads) > 0, "readers never got a snapshot");
    printf("seqlock: %lu consistent reads under two writers\n",
           (unsigned long)atomic_load(&c.reads));
    lethe_stats_shm_detach(c.s);
    close(fd);
}

/* ---- 2. command slot ---- */

struct slot_case {
    struct lethe_stats_shm *s;
    atomic_bool stop;
};

static void *slot_program(void *arg)
{
    struct slot_case *c = arg;
    while (!atomic_load(&c->stop)) {
        uint64_t ticket, bytes;
        if (lethe_stats_shm_take_request(c->s, &ticket, &bytes))
            lethe_stats_shm_reply(c->s, ticket, 0, bytes + 1);
        else
            sched_yield();
    }
    return NULL;
}

static void slot_case(void)
{
    struct slot_case c = {0};
    int fd;
    CHECK(lethe_stats_shm_create(&c.s, &fd) == 0, "cannot create a segment");
    pthread_t t;
    pthread_create(&t, NULL, slot_program, &c);
    unsigned n = 0;
    double end = now_s() + SECONDS;
    while (now_s() < end) {
        uint64_t want = (uint64_t)(n + 1) * 4096;
        uint64_t ticket = lethe_stats_shm_request_cache_size(c.s, want);
        int result;
        uint64_t value;
        while (!lethe_stats_shm_poll_reply(c.s, ticket, &result, &value))
            sched_yield();
        CHECK(result == 0 && value == want + 1, "answer %llu to request %llu",
              (unsigned long long)value, (unsigned long long)want);
        n++;
    }
    atomic_store(&c.stop, true);
    pthread_join(t, NULL);
    printf("command slot: %u requests answered in order\n", n);
    lethe_stats_shm_detach(c.s);
    close(fd);
}

/* ---- 3. control port ---- */

struct port_case {
    struct lethed_session s;
    struct lethe_config cfg;
    struct lethed_control *control;
    int stop_fd;
    atomic_bool stop;
};

static void on_stop(evutil_socket_t fd, short what, void *arg)
{
    event_base_loopbreak(arg);
}

static void *port_loop(void *arg)
{
    struct port_case *c = arg;
    event_base_dispatch(c->s.base);
    return NULL;
}

/* The program's side: publishes, and applies cache size requests. */
static void *port_program(void *arg)
{
    struct port_case *c = arg;
    struct lethe_stats_snapshot *snap = malloc(sizeof(*snap));
    uint64_t frames = 2048;
    while (!atomic_load(&c->stop)) {
        uint64_t ticket, bytes;
        if (lethe_stats_shm_take_request(c->s.shm, &ticket, &bytes)) {
            frames = bytes / 4096;
            fill(snap, frames);
            lethe_stats_shm_publish(c->s.shm, snap);
            lethe_stats_shm_reply(c->s.shm, ticket, 0, bytes);
        }
        fill(snap, frames);
        lethe_stats_shm_publish(c->s.shm, snap);
        usleep(500);
    }
    free(snap);
    return NULL;
}

static int http(const char *addr, const char *req, char *resp, size_t len)
{
    const char *colon = strrchr(addr, ':');
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(colon + 1))};
    inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
        if (fd >= 0)
            close(fd);
        return -1;
    }
    if (write(fd, req, strlen(req)) < 0) {
        close(fd);
        return -1;
    }
    size_t off = 0;
    ssize_t got;
    while (off + 1 < len && (got = read(fd, resp + off, len - 1 - off)) > 0)
        off += (size_t)got;
    resp[off] = '\0';
    close(fd);
    int status = 0;
    if (sscanf(resp, "HTTP/1.%*d %d", &status) != 1)
        return -1;
    return status;
}

struct client {
    const char *addr;
    atomic_bool stop;
    atomic_ulong requests;
};

static void *port_client(void *arg)
{
    struct client *c = arg;
    char *resp = malloc(1 << 20);
    static const char *const gets[] = {"/stats", "/metrics", "/health", "/cache_size"};
    unsigned i = 0;
    while (!atomic_load(&c->stop)) {
        char req[256];
        int status;
        if (i % 5 == 4) {
            snprintf(req, sizeof(req), "PUT /cache_size HTTP/1.0\r\nContent-Length: 2\r\n\r\n%uM",
                     4 + i % 5);
            status = http(c->addr, req, resp, 1 << 20);
            CHECK(status == 200 || status == 409, "PUT answered %d", status);
        } else {
            snprintf(req, sizeof(req), "GET %s HTTP/1.0\r\n\r\n", gets[i % 4]);
            status = http(c->addr, req, resp, 1 << 20);
            CHECK(status == 200, "GET %s answered %d", gets[i % 4], status);
        }
        i++;
        atomic_fetch_add(&c->requests, 1);
    }
    free(resp);
    return NULL;
}

/* The clients run in processes of their own (this program with --client): in one process,
 * client and server sockets would reuse descriptor numbers across threads with only the
 * kernel ordering them, which ThreadSanitizer reports as races that are not there. */
static int client_main(const char *addr)
{
    struct client c = {.addr = addr};
    pthread_t t[3];
    for (int i = 0; i < 3; i++)
        pthread_create(&t[i], NULL, port_client, &c);
    usleep((useconds_t)(SECONDS * 1e6));
    atomic_store(&c.stop, true);
    for (int i = 0; i < 3; i++)
        pthread_join(t[i], NULL);
    printf("control port: %lu requests from 3 client threads\n",
           (unsigned long)atomic_load(&c.requests));
    CHECK(atomic_load(&c.requests) > 0, "no request served");
    return atomic_load(&failures) ? 1 : 0;
}

static void port_case(void)
{
    struct port_case *c = calloc(1, sizeof(*c));
    lethe_config_defaults(&c->cfg);
    c->s.cfg = &c->cfg;
    snprintf(c->s.command, sizeof(c->s.command), "fake");
    c->s.pid = getpid();
    c->s.running = true;
    c->s.started_ns = c->s.launched_ns = lethe_monotonic_ns();
    CHECK(lethe_stats_shm_create(&c->s.shm, &c->s.shm_fd) == 0, "no segment");
    c->s.base = event_base_new();
    CHECK(lethed_control_start(&c->s, "127.0.0.1:0", &c->control) == 0, "no control port");
    c->stop_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    struct event *stop_ev = event_new(c->s.base, c->stop_fd, EV_READ, on_stop, c->s.base);
    event_add(stop_ev, NULL);
    pthread_t loop, program;
    /* The program publishes before the port is used. */
    struct lethe_stats_snapshot *snap = malloc(sizeof(*snap));
    fill(snap, 2048);
    lethe_stats_shm_publish(c->s.shm, snap);
    free(snap);
    pthread_create(&loop, NULL, port_loop, c);
    pthread_create(&program, NULL, port_program, c);
    char *argv[] = {"stress_lethed_control", "--client", c->s.control_address, NULL};
    pid_t client;
    int rc = posix_spawn(&client, "/proc/self/exe", NULL, NULL, argv, environ);
    CHECK(rc == 0, "cannot start the client process: %s", strerror(rc));
    int status = 1;
    if (rc == 0)
        waitpid(client, &status, 0);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0, "the client process failed");
    atomic_store(&c->stop, true);
    uint64_t one = 1;
    if (write(c->stop_fd, &one, sizeof(one)) < 0)
        CHECK(0, "cannot stop the loop");
    pthread_join(loop, NULL);
    pthread_join(program, NULL);
    lethed_control_stop(c->control);
    event_free(stop_ev);
    close(c->stop_fd);
    event_base_free(c->s.base);
    lethe_stats_shm_detach(c->s.shm);
    close(c->s.shm_fd);
    free(c);
}

static void watchdog(int sig)
{
    (void)sig;
    static const char msg[] = "lethed_control: hung (watchdog)\n";
    if (write(2, msg, sizeof(msg) - 1) < 0) {
    }
    _exit(2);
}

int main(int argc, char **argv)
{
    if (argc == 3 && strcmp(argv[1], "--client") == 0)
        return client_main(argv[2]);
    lethe_log_init("lethed_control");
    lethe_log_set_level(LETHE_LOG_WARN);
    signal(SIGALRM, watchdog);
    signal(SIGPIPE, SIG_IGN);
    alarm(120);
    seqlock_case();
    slot_case();
    port_case();
    int f = atomic_load(&failures);
    printf("lethed_control: %s (%d failures)\n", f ? "FAILED" : "ok", f);
    return f ? 1 : 0;
}
