/* launch.c — lethed_launch(): runs the program under Lethe and supervises it.
 *
 * In order:
 *  1. the command (from the command line, else [app] command), its executable, liblethe.so;
 *  2. a private run directory (mkdtemp, 0700) for this run's files;
 *  3. the memory node: with `memnode = embedded` (and a transport other than local) one is
 *     started in this process (memnode.h) on its own thread, listening only where this run
 *     needs it (shm: a Unix socket in the run directory; tcp: 127.0.0.1 on a free port;
 *     verbs: tcp control and RDMA CM on the IPv4 address of the first RDMA device's network
 *     interface, free ports), with a fresh random token in a 0600 file;
 *     otherwise the configured nodes are used as they are;
 *  4. the effective configuration, written to the run directory (LETHE_CONFIG), with the
 *     embedded node's address and token file filled in;
 *  5. the stats segment (a memfd the program inherits: LETHE_STATS_SHM=fd:N);
 *  6. the control port (unless control.listen = off);
 *  7. the program: fork + execve with LD_PRELOAD=liblethe.so prepended; it gets LETHE_PID,
 *     so only it (not what it execs) starts Lethe. With an embedded node it also gets
 *     PR_SET_PDEATHSIG(SIGKILL): its remote pages live in this process.
 * Then one libevent loop: the control port, and a signalfd for SIGCHLD and the signals
 * lethed forwards (INT, TERM, HUP, QUIT, USR1, USR2). A signal sent to lethed with kill()
 * is passed on to the program; one the terminal generated (si_code SI_KERNEL) is not, since
 * the program, in lethed's process group, received it too. When the program is reaped, the
 * loop ends; lethed adds its line to the summary, tears everything down in reverse and
 * returns the program's status (128+N when killed by signal N, like a shell).
 *
 * Failures before the program starts return 1 (126/127 when the command cannot be executed
 * or found, like a shell), after logging why.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <netinet/in.h>
#include <event2/event.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/log.h"
#include "core/stats_shm.h"
#include "lethed/command.h"
#include "lethed/control.h"
#include "lethed/lethed.h"
#include "lethed/report.h"
#include "lethed/session.h"
#include "memnode.h"
#include "rdma/auth.h"

extern char **environ;

static const int forwarded_signals[] = {SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2};

/* Everything a run holds, for teardown in one place. */
struct run {
    struct lethed_session s;
    char **argv; /* the command (owned when split from [app] command) */
    bool argv_owned;
    char exe[PATH_MAX];
    char **envp;
    char *pid_slot;
    sigset_t orig_mask;
    int sigfd;
    struct event *sig_event;
    struct event *account_timer;
    unsigned account_delay_ms; /* until the next sample: 100 ms doubling to 1 s */
    struct lethe_stats_snapshot *account_snap; /* scratch for the timer: big, not on the stack */
    struct lethed_control *control;
    struct lethe_config effective;
};

static int make_run_dir(struct lethed_session *s)
{
    const char *tmp = getenv("TMPDIR");
    if (!tmp || !*tmp || strlen(tmp) > 64)
        tmp = "/tmp";
    snprintf(s->run_dir, sizeof(s->run_dir), "%s/lethed-XXXXXX", tmp);
    if (!mkdtemp(s->run_dir)) {
        int err = errno;
        lethe_error("cannot create a run directory in %s: %s", tmp, strerror(err));
        s->run_dir[0] = '\0';
        return -err;
    }
    return 0;
}

static void remove_run_dir(struct lethed_session *s)
{
    if (!s->run_dir[0])
        return;
    DIR *d = opendir(s->run_dir);
    if (d) {
        struct dirent *e;
        while ((e = readdir(d))) {
            if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
                continue;
            char p[LETHE_PATH_MAX + 256];
            snprintf(p, sizeof(p), "%s/%s", s->run_dir, e->d_name);
            unlink(p);
        }
        closedir(d);
    }
    if (rmdir(s->run_dir) != 0)
        lethe_warn("cannot remove %s: %s", s->run_dir, strerror(errno));
}

/* The IPv4 address of the network interface behind the first RDMA device that has one
 * (sysfs: /sys/class/infiniband/DEV/ports/1/gid_attrs/ndevs/0 names the netdev of a RoCE
 * port). A verbs client reaches the node's tcp control listener and its RDMA CM listener
 * there; loopback is not an RDMA path. Returns 0 or -ENODEV. */
static int rdma_interface_address(char *ip, size_t len)
{
    DIR *d = opendir("/sys/class/infiniband");
    if (!d)
        return -ENODEV;
    struct dirent *e;
    int rc = -ENODEV;
    while (rc < 0 && (e = readdir(d))) {
        if (e->d_name[0] == '.')
            continue;
        char path[PATH_MAX], netdev[IF_NAMESIZE + 2] = "";
        snprintf(path, sizeof(path), "/sys/class/infiniband/%s/ports/1/gid_attrs/ndevs/0",
                 e->d_name);
        FILE *f = fopen(path, "r");
        if (!f)
            continue;
        if (!fgets(netdev, sizeof(netdev), f))
            netdev[0] = '\0';
        fclose(f);
        netdev[strcspn(netdev, "\n")] = '\0';
        struct ifaddrs *ifs = NULL;
        if (!netdev[0] || getifaddrs(&ifs) != 0)
            continue;
        for (struct ifaddrs *i = ifs; i; i = i->ifa_next) {
            if (i->ifa_addr && i->ifa_addr->sa_family == AF_INET &&
                strcmp(i->ifa_name, netdev) == 0) {
                inet_ntop(AF_INET, &((struct sockaddr_in *)i->ifa_addr)->sin_addr, ip,
                          (socklen_t)len);
                rc = 0;
                break;
            }
        }
        freeifaddrs(ifs);
    }
    closedir(d);
    return rc;
}

/* Node k of the embedded ones (0: the first); its address into addr. */
static int start_one_node(struct run *r, unsigned k, const struct lethe_memnode_config *base,
                          struct lethe_memnode **out, char *addr, size_t addrlen)
{
    struct lethed_session *s = &r->s;
    struct lethe_memnode_config mc = *base;
    if (k > 0 && strcmp(mc.unix_socket, "off") != 0)
        snprintf(mc.unix_socket, sizeof(mc.unix_socket), "%s/memnode-%u.sock", s->run_dir, k);
    int rc = lethe_memnode_start(&mc, out);
    if (rc < 0) {
        lethe_error("cannot start embedded memory node %u: %s", k, strerror(-rc));
        *out = NULL;
        return rc;
    }
    const char *a = s->cfg->transport == LETHE_TRANSPORT_SHM ? lethe_memnode_unix_path(*out)
                                                             : lethe_memnode_tcp_address(*out);
    snprintf(addr, addrlen, "%s", a);
    lethe_info("embedded memory node on %s (%s transport)", addr,
               lethe_transport_name(s->cfg->transport));
    return 0;
}

static int start_embedded_memnode(struct run *r)
{
    struct lethed_session *s = &r->s;
    const struct lethe_config *cfg = s->cfg;
    snprintf(s->token_path, sizeof(s->token_path), "%s/token", s->run_dir);
    char token[LETHE_TOKEN_MAX + 1], err[256] = "";
    bool created = false;
    int rc =
        lethe_token_load(s->token_path, true, token, sizeof(token), &created, err, sizeof(err));
    memset(token, 0, sizeof(token));
    if (rc < 0) {
        lethe_error("cannot create the token file %s: %s", s->token_path,
                    err[0] ? err : strerror(-rc));
        return rc;
    }

    struct lethe_memnode_config mc;
    lethe_memnode_config_defaults(&mc);
    /* What the program may use, no more: a program that execs itself asks again from its
     * new image, and the node first frees the regions of connections already closed (the
     * exec closed the old image's), so the successor fits. With transport = verbs on a
     * device without on-demand paging the node locks all of it at start-up. */
    mc.capacity = cfg->remote_size;
    mc.max_clients = 4;
    mc.log_level = cfg->log_level;
    snprintf(mc.token_file, sizeof(mc.token_file), "%s", s->token_path);
    snprintf(mc.tcp_listen, sizeof(mc.tcp_listen), "off");
    snprintf(mc.rdma_listen, sizeof(mc.rdma_listen), "off");
    snprintf(mc.unix_socket, sizeof(mc.unix_socket), "off");
    switch (cfg->transport) {
    case LETHE_TRANSPORT_SHM:
        snprintf(mc.unix_socket, sizeof(mc.unix_socket), "%s/memnode.sock", s->run_dir);
        break;
    case LETHE_TRANSPORT_TCP:
        snprintf(mc.tcp_listen, sizeof(mc.tcp_listen), "127.0.0.1:0");
        break;
    case LETHE_TRANSPORT_VERBS: {
        /* The verbs client authenticates and allocates over the node's tcp listener, then
         * connects RDMA CM to the same host: both must be on the RDMA device's interface. */
        char ip[INET_ADDRSTRLEN];
        if (rdma_interface_address(ip, sizeof(ip)) < 0) {
            lethe_error("transport = verbs with memnode = embedded needs an RDMA device with an "
                        "IPv4 address on its network interface; none found "
                        "(see docs/RDMA.md, or use transport = shm or tcp)");
            return -ENODEV;
        }
        snprintf(mc.tcp_listen, sizeof(mc.tcp_listen), "%s:0", ip);
        snprintf(mc.rdma_listen, sizeof(mc.rdma_listen), "%s:0", ip);
        break;
    }
    case LETHE_TRANSPORT_LOCAL:
        return 0;
    }
    rc = start_one_node(r, 0, &mc, &s->memnode, s->memnode_address,
                        sizeof(s->memnode_address));
    for (unsigned k = 1; rc == 0 && k < cfg->embedded_nodes; k++) {
        rc = start_one_node(r, k, &mc, &s->more_nodes[k - 1], s->more_addresses[k - 1],
                            sizeof(s->more_addresses[k - 1]));
        if (rc == 0)
            s->n_more = k;
    }
    return rc;
}

static int write_effective_config(struct run *r)
{
    struct lethed_session *s = &r->s;
    r->effective = *s->cfg;
    if (s->memnode) {
        r->effective.memnode_embedded = false;
        r->effective.n_memnodes = 1 + s->n_more;
        r->effective.embedded_nodes = 1;
        snprintf(r->effective.memnodes[0], sizeof(r->effective.memnodes[0]), "%s",
                 s->memnode_address);
        for (unsigned k = 0; k < s->n_more; k++) /* one token file serves them all */
            memcpy(r->effective.memnodes[k + 1], s->more_addresses[k],
                   sizeof(r->effective.memnodes[k + 1]));
        snprintf(r->effective.token_file, sizeof(r->effective.token_file), "%s", s->token_path);
    } else if (!s->cfg->memnode_embedded && s->cfg->n_memnodes > 0) {
        snprintf(s->memnode_address, sizeof(s->memnode_address), "%s", s->cfg->memnodes[0]);
    }
    snprintf(s->config_path, sizeof(s->config_path), "%s/lethe.conf", s->run_dir);
    int fd = open(s->config_path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    FILE *f = fd >= 0 ? fdopen(fd, "w") : NULL;
    if (!f) {
        int err = errno;
        if (fd >= 0)
            close(fd);
        lethe_error("cannot write %s: %s", s->config_path, strerror(err));
        return -err;
    }
    fprintf(f, "# The effective configuration of this run, written by lethed for liblethe.so.\n");
    lethe_config_print(&r->effective, f);
    if (fclose(f) != 0) {
        lethe_error("cannot write %s: %s", s->config_path, strerror(errno));
        return -EIO;
    }
    return 0;
}

/* A summary file is started afresh for the run: liblethe.so appends the program's summary,
 * lethed its own line. Failing to create it is a configuration problem found now. */
static int prepare_summary(const struct lethe_config *cfg)
{
    if (strcmp(cfg->summary, "stderr") == 0 || strcmp(cfg->summary, "off") == 0)
        return 0;
    int fd = open(cfg->summary, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        lethe_error("cannot create the summary file %s: %s", cfg->summary, strerror(errno));
        return -errno;
    }
    close(fd);
    return 0;
}

static void reap(struct run *r)
{
    int status;
    pid_t got;
    while ((got = waitpid(-1, &status, WNOHANG)) > 0) {
        if (got == r->s.pid && r->s.running) {
            r->s.running = false;
            r->s.wait_status = status;
            r->s.exited_ns = lethe_monotonic_ns();
            event_base_loopbreak(r->s.base);
        }
    }
}

static void on_signal(evutil_socket_t fd, short what, void *arg)
{
    struct run *r = arg;
    struct signalfd_siginfo si;
    while (read(fd, &si, sizeof(si)) == (ssize_t)sizeof(si)) {
        int sig = (int)si.ssi_signo;
        if (sig == SIGCHLD) {
            reap(r);
            continue;
        }
        if (!r->s.running)
            continue;
        if (si.ssi_code == SI_KERNEL) {
            lethe_debug("%s from the terminal: the program received it too", strsignal(sig));
            continue;
        }
        lethe_info("forwarding %s to the program (pid %d)", strsignal(sig), (int)r->s.pid);
        kill(r->s.pid, sig);
    }
}

/* While the program runs, what it holds resident (account.h): 100 ms after the start, then
 * at 300, 700 and 1,500 ms, then once a second, so that a program done in under a second
 * still has its figures in the summary (the kernel's are gone once it has exited). */
static int account_schedule(struct run *r)
{
    unsigned ms = r->account_delay_ms ? r->account_delay_ms : 100;
    r->account_delay_ms = ms * 2 < 1000 ? ms * 2 : 1000;
    struct timeval in = {.tv_sec = ms / 1000, .tv_usec = (ms % 1000) * 1000};
    return event_add(r->account_timer, &in);
}

static void on_account_timer(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct run *r = arg;
    if (!r->s.running)
        return;
    bool have = lethe_stats_shm_read(r->s.shm, r->account_snap) == 0;
    lethed_account_update(&r->s.account, (int)r->s.pid, have ? r->account_snap : NULL, r->s.command,
                          true);
    account_schedule(r);
}

static int setup_signals(struct run *r)
{
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGCHLD);
    for (size_t i = 0; i < sizeof(forwarded_signals) / sizeof(forwarded_signals[0]); i++)
        sigaddset(&set, forwarded_signals[i]);
    /* Blocked in every thread lethed starts from here on (the memory node's included). */
    pthread_sigmask(SIG_BLOCK, &set, &r->orig_mask);
    signal(SIGPIPE, SIG_IGN);
    r->sigfd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
    if (r->sigfd < 0) {
        lethe_error("signalfd: %s", strerror(errno));
        return -errno;
    }
    return 0;
}

static int spawn(struct run *r)
{
    struct lethed_session *s = &r->s;
    int pipefd[2];
    if (pipe2(pipefd, O_CLOEXEC) != 0)
        return -errno;
    bool die_with_parent = s->memnode != NULL;
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid < 0) {
        int err = errno;
        close(pipefd[0]);
        close(pipefd[1]);
        return -err;
    }
    if (pid == 0) {
        /* The child: async-signal-safe calls only (lethed has other threads). */
        struct sigaction dfl = {.sa_handler = SIG_DFL};
        sigaction(SIGPIPE, &dfl, NULL);
        sigprocmask(SIG_SETMASK, &r->orig_mask, NULL);
        if (die_with_parent) {
            prctl(PR_SET_PDEATHSIG, SIGKILL);
            if (getppid() != parent)
                _exit(1);
        }
        fcntl(s->shm_fd, F_SETFD, 0);
        lethed_env_set_pid(r->pid_slot, (long)getpid());
        execve(r->exe, r->argv, r->envp);
        int err = errno;
        ssize_t w = write(pipefd[1], &err, sizeof(err));
        (void)w;
        _exit(127);
    }
    close(pipefd[1]);
    s->pid = pid;
    s->running = true;
    s->launched_ns = lethe_monotonic_ns();
    int err = 0;
    ssize_t got;
    do {
        got = read(pipefd[0], &err, sizeof(err));
    } while (got < 0 && errno == EINTR);
    close(pipefd[0]);
    if (got == (ssize_t)sizeof(err)) {
        waitpid(pid, NULL, 0);
        s->running = false;
        return -err;
    }
    return 0;
}

static void print_final_line(struct run *r)
{
    const char *dest = r->s.cfg->summary;
    if (strcmp(dest, "off") == 0)
        return;
    struct lethe_stats_snapshot *snap = calloc(1, sizeof(*snap));
    if (!snap)
        return;
    bool have = lethe_stats_shm_read(r->s.shm, snap) == 0;
    FILE *out = stderr;
    if (strcmp(dest, "stderr") != 0) {
        out = fopen(dest, "ae");
        if (!out) {
            lethe_warn("cannot append to %s: %s", dest, strerror(errno));
            out = stderr;
        }
    }
    lethed_report_final_line(out, &r->s, snap, have);
    if (out != stderr)
        fclose(out);
    else
        fflush(stderr);
    free(snap);
}

static void teardown(struct run *r)
{
    if (r->account_timer)
        event_free(r->account_timer);
    free(r->account_snap);
    if (r->control)
        lethed_control_stop(r->control);
    if (r->sig_event)
        event_free(r->sig_event);
    if (r->sigfd >= 0)
        close(r->sigfd);
    if (r->s.base)
        event_base_free(r->s.base);
    if (r->s.memnode)
        lethe_memnode_stop(r->s.memnode);
    for (unsigned k = 0; k < r->s.n_more; k++)
        lethe_memnode_stop(r->s.more_nodes[k]);
    if (r->s.shm)
        lethe_stats_shm_detach(r->s.shm);
    if (r->s.shm_fd >= 0)
        close(r->s.shm_fd);
    remove_run_dir(&r->s);
    lethed_free_words(r->envp);
    if (r->argv_owned)
        lethed_free_words(r->argv);
    /* The forwarded signals stay blocked: one that arrived after the program ended must not
     * kill lethed on its way out with the program's status. */
}

/* Steps 1..7 of the top comment. Returns 0, or the status lethed should exit with. */
static int prepare(struct run *r, int argc, char **argv)
{
    struct lethed_session *s = &r->s;
    const struct lethe_config *cfg = s->cfg;
    if (argc > 0) {
        r->argv = argv;
    } else {
        int n = lethed_split_command(cfg->command, &r->argv);
        if (n == -EINVAL) {
            fprintf(stderr, "lethed: [app] command has an unterminated quote or a trailing "
                            "backslash\n");
            return 2;
        }
        if (n < 0)
            return 1;
        r->argv_owned = true;
        if (n == 0) {
            fprintf(stderr, "lethed: no command to run: give one after the options "
                            "(lethed -c FILE -- cmd args) or set [app] command\n");
            return 2;
        }
    }
    lethed_format_command(r->argv, s->command, sizeof(s->command));
    int rc = lethed_find_executable(r->argv[0], r->exe, sizeof(r->exe));
    if (rc < 0) {
        fprintf(stderr, "lethed: %s: %s\n", r->argv[0],
                rc == -ENOENT ? "command not found" : strerror(-rc));
        return rc == -ENOENT ? 127 : 126;
    }
    rc = lethed_find_preload(s->preload_path, sizeof(s->preload_path));
    if (rc < 0) {
        fprintf(stderr,
                "lethed: liblethe.so not found at %s (lethed expects it in ../lib "
                "next to its own bin directory)\n",
                s->preload_path);
        return 1;
    }
    if (strpbrk(s->preload_path, ": ")) {
        fprintf(stderr, "lethed: %s: LD_PRELOAD cannot name a path with ':' or ' '\n",
                s->preload_path);
        return 1;
    }
    if (setup_signals(r) < 0 || make_run_dir(s) < 0 || prepare_summary(cfg) < 0)
        return 1;
    if (cfg->memnode_embedded && cfg->transport != LETHE_TRANSPORT_LOCAL &&
        start_embedded_memnode(r) < 0)
        return 1;
    if (write_effective_config(r) < 0)
        return 1;
    rc = lethe_stats_shm_create(&s->shm, &s->shm_fd);
    if (rc < 0) {
        lethe_error("cannot create the stats segment: %s", strerror(-rc));
        return 1;
    }
    s->base = event_base_new();
    if (!s->base) {
        lethe_error("cannot create an event loop");
        return 1;
    }
    if (strcmp(cfg->control_listen, "off") != 0 &&
        lethed_control_start(s, cfg->control_listen, &r->control) < 0)
        return 1;
    r->sig_event = event_new(s->base, r->sigfd, EV_READ | EV_PERSIST, on_signal, r);
    if (!r->sig_event || event_add(r->sig_event, NULL) != 0) {
        lethe_error("cannot watch signals");
        return 1;
    }
    r->account_snap = calloc(1, sizeof(*r->account_snap));
    r->account_timer = event_new(s->base, -1, 0, on_account_timer, r);
    if (!r->account_snap || !r->account_timer || account_schedule(r) != 0) {
        lethe_error("cannot start sampling the program's memory");
        return 1;
    }
    char shm_spec[32], control[LETHE_ADDR_MAX + 16];
    snprintf(shm_spec, sizeof(shm_spec), "fd:%d", s->shm_fd);
    snprintf(control, sizeof(control), "http://%s/", s->control_address);
    /* the embedded nodes' addresses, comma-separated (lethe.conf's memnode syntax) */
    static char nodes[LETHE_MAX_MEMNODES * (LETHE_ADDR_MAX + 1)];
    size_t off = (size_t)snprintf(nodes, sizeof(nodes), "%s", s->memnode_address);
    for (unsigned k = 0; k < s->n_more && off < sizeof(nodes); k++)
        off += (size_t)snprintf(nodes + off, sizeof(nodes) - off, ",%s", s->more_addresses[k]);
    struct lethed_env_vars vars = {
        .preload = s->preload_path,
        .config = s->config_path,
        .memnode = s->memnode ? nodes : NULL,
        .token_file = s->memnode ? s->token_path : NULL,
        .stats_shm = shm_spec,
        .control = s->control_address[0] ? control : NULL,
    };
    r->envp = lethed_build_env(environ, &vars, &r->pid_slot);
    if (!r->envp) {
        lethe_error("out of memory");
        return 1;
    }
    rc = spawn(r);
    if (rc < 0) {
        fprintf(stderr, "lethed: cannot run %s: %s\n", r->exe, strerror(-rc));
        return rc == -ENOENT ? 127 : 126;
    }
    lethe_info("running `%s` (pid %d) under Lethe: cache %llu MiB, %s transport", s->command,
               (int)s->pid, (unsigned long long)(cfg->cache_size >> 20),
               lethe_transport_name(cfg->transport));
    return 0;
}

int lethed_launch(const struct lethe_config *cfg, int argc, char **argv)
{
    struct run *r = calloc(1, sizeof(*r));
    if (!r) {
        fprintf(stderr, "lethed: out of memory\n");
        return 1;
    }
    r->s.cfg = cfg;
    r->s.shm_fd = -1;
    r->s.started_ns = lethe_monotonic_ns();
    r->sigfd = -1;
    pthread_sigmask(SIG_SETMASK, NULL, &r->orig_mask);
    int status = prepare(r, argc, argv);
    if (status == 0) {
        /* A SIGCHLD that arrived before the loop is still pending on the signalfd. */
        event_base_dispatch(r->s.base);
        if (r->s.running) {
            /* The loop ended without the program: should not happen; do not leave it. */
            lethe_error("event loop ended while the program runs; waiting for it");
            waitpid(r->s.pid, &r->s.wait_status, 0);
            r->s.running = false;
            r->s.exited_ns = lethe_monotonic_ns();
        }
        print_final_line(r);
        status = lethed_exit_status(r->s.wait_status);
    }
    teardown(r);
    free(r);
    return status;
}
