/* node.c — the memory node's lifecycle: token, listeners (TCP, Unix socket, RDMA CM), the
 * libevent loop on its own thread, stop, and stats. See memnode.h; the protocol itself is in
 * session.c, the regions in region.c.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <arpa/inet.h>
#include <errno.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <netdb.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "core/log.h"
#include "node_impl.h"
#include "rdma/client.h"

static uint64_t load(const uint64_t *p)
{
    return __atomic_load_n(p, __ATOMIC_RELAXED);
}

void lethe_memnode_get_stats(const struct lethe_memnode *n, struct lethe_memnode_stats *s)
{
    s->clients = load(&n->st.clients);
    s->clients_total = load(&n->st.clients_total);
    s->connections = load(&n->st.connections);
    s->capacity = n->cfg.capacity;
    s->bytes_lent = load(&n->st.bytes_lent);
    s->reads = load(&n->st.reads);
    s->writes = load(&n->st.writes);
    s->pages_read = load(&n->st.pages_read);
    s->pages_written = load(&n->st.pages_written);
    s->errors = load(&n->st.errors);
    s->auth_failures = load(&n->st.auth_failures);
    s->rdma_channels = load(&n->st.rdma_channels);
}

void lethe_memnode_log_stats(const struct lethe_memnode *n, int level, const char *when)
{
    struct lethe_memnode_stats s;
    lethe_memnode_get_stats(n, &s);
    char lent[32], cap[32];
    lethe_format_size(s.bytes_lent, lent, sizeof(lent));
    lethe_format_size(s.capacity, cap, sizeof(cap));
    lethe_logf((enum lethe_log_level)level,
               "%s: clients %llu (%llu since start), connections %llu, rdma channels %llu, "
               "lent %s of %s, reads %llu (%llu pages), writes %llu (%llu pages), errors %llu, "
               "auth failures %llu",
               when, (unsigned long long)s.clients, (unsigned long long)s.clients_total,
               (unsigned long long)s.connections, (unsigned long long)s.rdma_channels, lent, cap,
               (unsigned long long)s.reads, (unsigned long long)s.pages_read,
               (unsigned long long)s.writes, (unsigned long long)s.pages_written,
               (unsigned long long)s.errors, (unsigned long long)s.auth_failures);
}

const char *lethe_memnode_tcp_address(const struct lethe_memnode *n)
{
    return n->tcp_address;
}

const char *lethe_memnode_unix_path(const struct lethe_memnode *n)
{
    return n->unix_path;
}

const char *lethe_memnode_rdma_address(const struct lethe_memnode *n)
{
    return n->rdma_address;
}

static void stop_cb(evutil_socket_t fd, short what, void *arg)
{
    struct lethe_memnode *n = arg;
    uint64_t v;
    ssize_t r = read(fd, &v, sizeof(v));
    (void)r;
    event_base_loopbreak(n->base);
}

static void stats_cb(evutil_socket_t fd, short what, void *arg)
{
    if (lethe_log_enabled(LETHE_LOG_DEBUG))
        lethe_memnode_log_stats(arg, LETHE_LOG_DEBUG, "stats");
}

static void tcp_accept_cb(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa,
                          int salen, void *arg)
{
    char host[INET6_ADDRSTRLEN] = "?", peer[64];
    unsigned port = 0;
    if (sa->sa_family == AF_INET) {
        struct sockaddr_in *in = (struct sockaddr_in *)sa;
        inet_ntop(AF_INET, &in->sin_addr, host, sizeof(host));
        port = ntohs(in->sin_port);
    } else if (sa->sa_family == AF_INET6) {
        struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)sa;
        inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof(host));
        port = ntohs(in6->sin6_port);
    }
    snprintf(peer, sizeof(peer), "tcp %s:%u", host, port);
    mn_conn_accept(arg, fd, peer, false);
}

static void unix_accept_cb(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa,
                           int salen, void *arg)
{
    mn_conn_accept(arg, fd, "unix", true);
}

/* accept() failing (out of fds, most likely) must not spin the loop: pause that listener. */
static void resume_listener_cb(evutil_socket_t fd, short what, void *arg)
{
    evconnlistener_enable(arg);
}

static void listener_error_cb(struct evconnlistener *l, void *arg)
{
    struct lethe_memnode *n = arg;
    int err = EVUTIL_SOCKET_ERROR();
    lethe_warn("accept: %s; pausing that listener for 100 ms", strerror(err));
    evconnlistener_disable(l);
    struct timeval tv = {.tv_usec = 100000};
    event_base_once(n->base, -1, EV_TIMEOUT, resume_listener_cb, l, &tv);
}

static int listen_tcp(struct lethe_memnode *n)
{
    char host[LETHE_ADDR_MAX], port[16];
    if (lethe_split_hostport(n->cfg.tcp_listen, host, sizeof(host), port, sizeof(port)) < 0) {
        lethe_error("tcp_listen '%s' is not host:port", n->cfg.tcp_listen);
        return -EINVAL;
    }
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE | AI_NUMERICSERV},
                    *res;
    int gai = getaddrinfo(host, port, &hints, &res);
    if (gai) {
        lethe_error("tcp_listen %s: cannot resolve '%s': %s", n->cfg.tcp_listen, host,
                    gai_strerror(gai));
        return -EADDRNOTAVAIL;
    }
    n->tcp_listener =
        evconnlistener_new_bind(n->base, tcp_accept_cb, n,
                                LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE | LEV_OPT_CLOSE_ON_EXEC,
                                128, res->ai_addr, (int)res->ai_addrlen);
    int err = errno;
    freeaddrinfo(res);
    if (!n->tcp_listener) {
        lethe_error("tcp_listen %s: cannot listen: %s", n->cfg.tcp_listen, strerror(err));
        return -err;
    }
    evconnlistener_set_error_cb(n->tcp_listener, listener_error_cb);
    struct sockaddr_storage ss;
    socklen_t sl = sizeof(ss);
    getsockname(evconnlistener_get_fd(n->tcp_listener), (struct sockaddr *)&ss, &sl);
    unsigned bound = ss.ss_family == AF_INET6 ? ntohs(((struct sockaddr_in6 *)&ss)->sin6_port)
                                              : ntohs(((struct sockaddr_in *)&ss)->sin_port);
    snprintf(n->tcp_address, sizeof(n->tcp_address), strchr(host, ':') ? "[%s]:%u" : "%s:%u", host,
             bound);
    return 0;
}

static int listen_unix(struct lethe_memnode *n)
{
    const char *path = n->cfg.unix_socket;
    struct sockaddr_un sun = {.sun_family = AF_UNIX};
    if (strlen(path) >= sizeof(sun.sun_path)) {
        lethe_error("unix_socket %s: path too long", path);
        return -ENAMETOOLONG;
    }
    strcpy(sun.sun_path, path);
    struct stat st;
    if (lstat(path, &st) == 0) {
        if (!S_ISSOCK(st.st_mode)) {
            lethe_error("unix_socket %s exists and is not a socket", path);
            return -EEXIST;
        }
        int probe = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (probe >= 0 && connect(probe, (struct sockaddr *)&sun, sizeof(sun)) == 0) {
            close(probe);
            lethe_error("unix_socket %s: another memory node is listening there", path);
            return -EADDRINUSE;
        }
        if (probe >= 0)
            close(probe);
        lethe_info("unix_socket %s: removing a stale socket", path);
        unlink(path);
    }
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0 || bind(fd, (struct sockaddr *)&sun, sizeof(sun)) < 0) {
        int err = errno;
        if (fd >= 0)
            close(fd);
        lethe_error("unix_socket %s: cannot bind: %s", path, strerror(err));
        return -err;
    }
    n->unix_bound = true;
    n->unix_listener = evconnlistener_new(n->base, unix_accept_cb, n,
                                          LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC, 128, fd);
    if (!n->unix_listener) {
        int err = errno;
        close(fd);
        lethe_error("unix_socket %s: cannot listen: %s", path, strerror(err));
        return -err;
    }
    evconnlistener_set_error_cb(n->unix_listener, listener_error_cb);
    snprintf(n->unix_path, sizeof(n->unix_path), "%s", path);
    return 0;
}

static void *node_thread(void *arg)
{
    struct lethe_memnode *n = arg;
    lethe_log_set_role("memnode");
    event_base_dispatch(n->base);
    return NULL;
}

static void node_free(struct lethe_memnode *n)
{
    n->stopping = true;
    while (n->conns)
        mn_conn_free(n->conns);
    while (n->regions) /* none: every region is owned by a connection */
        mn_region_destroy(n, n->regions);
    mn_rdma_stop(n);
    if (n->tcp_listener)
        evconnlistener_free(n->tcp_listener);
    if (n->unix_listener)
        evconnlistener_free(n->unix_listener);
    if (n->unix_bound)
        unlink(n->cfg.unix_socket);
    if (n->stop_ev)
        event_free(n->stop_ev);
    if (n->stats_ev)
        event_free(n->stats_ev);
    if (n->base)
        event_base_free(n->base);
    if (n->stop_fd >= 0)
        close(n->stop_fd);
    memset(n->token, 0, sizeof(n->token));
    free(n);
}

int lethe_memnode_start(const struct lethe_memnode_config *cfg, struct lethe_memnode **out)
{
    struct lethe_memnode *n = calloc(1, sizeof(*n));
    if (!n)
        return -ENOMEM;
    n->cfg = *cfg;
    n->stop_fd = -1;
    int rc;
    char err[160];
    bool created;
    if (!cfg->token_file[0]) {
        lethe_error("token_file is not set: the memory node needs a shared secret");
        rc = -EINVAL;
        goto fail;
    }
    rc = lethe_token_load(cfg->token_file, true, n->token, sizeof(n->token), &created, err,
                          sizeof(err));
    if (rc < 0) {
        lethe_error("token_file %s: %s", cfg->token_file, err);
        goto fail;
    }
    if (created)
        lethe_info("token_file %s did not exist: created it (mode 0600) with a new random token",
                   cfg->token_file);
    if (cfg->max_clients == 0) {
        lethe_error("max_clients is 0: no client could connect");
        rc = -EINVAL;
        goto fail;
    }
    n->base = event_base_new();
    if (!n->base) {
        lethe_error("event_base_new failed");
        rc = -ENOMEM;
        goto fail;
    }
    if (strcmp(cfg->tcp_listen, "off") != 0 && (rc = listen_tcp(n)) < 0)
        goto fail;
    if (strcmp(cfg->unix_socket, "off") != 0 && (rc = listen_unix(n)) < 0)
        goto fail;
    if (strcmp(cfg->rdma_listen, "off") != 0 && (rc = mn_rdma_start(n)) < 0)
        goto fail;
    if (!n->tcp_listener && !n->unix_listener && !n->rdma) {
        lethe_error("tcp_listen, unix_socket and rdma_listen are all off: no client can connect");
        rc = -EINVAL;
        goto fail;
    }
    n->stop_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (n->stop_fd < 0) {
        rc = -errno;
        lethe_error("eventfd: %s", strerror(errno));
        goto fail;
    }
    n->stop_ev = event_new(n->base, n->stop_fd, EV_READ | EV_PERSIST, stop_cb, n);
    n->stats_ev = event_new(n->base, -1, EV_PERSIST, stats_cb, n);
    struct timeval period = {.tv_sec = MN_STATS_PERIOD_S};
    if (!n->stop_ev || !n->stats_ev || event_add(n->stop_ev, NULL) < 0 ||
        event_add(n->stats_ev, &period) < 0) {
        lethe_error("cannot set up the node's events");
        rc = -ENOMEM;
        goto fail;
    }

    /* The node thread takes no signals: SIGPIPE from a dead peer becomes EPIPE there, and
     * SIGTERM/SIGINT stay with the threads of the program that embeds the node. */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, &old);
    rc = -pthread_create(&n->thread, NULL, node_thread, n);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rc < 0) {
        lethe_error("cannot start the node thread: %s", strerror(-rc));
        goto fail;
    }
    n->thread_started = true;
    pthread_setname_np(n->thread, "lethe-memnode");
    char cap[32];
    lethe_format_size(cfg->capacity, cap, sizeof(cap));
    lethe_info("ready: tcp=%s unix=%s rdma=%s capacity=%s max_clients=%u",
               n->tcp_address[0] ? n->tcp_address : "off", n->unix_path[0] ? n->unix_path : "off",
               n->rdma_address[0] ? n->rdma_address : "off", cap, cfg->max_clients);
    *out = n;
    return 0;
fail:
    node_free(n);
    return rc;
}

void lethe_memnode_stop(struct lethe_memnode *n)
{
    if (!n)
        return;
    if (n->thread_started) {
        uint64_t one = 1;
        ssize_t w = write(n->stop_fd, &one, sizeof(one));
        (void)w;
        pthread_join(n->thread, NULL);
    }
    lethe_memnode_log_stats(n, LETHE_LOG_INFO, "stopped");
    node_free(n);
}
