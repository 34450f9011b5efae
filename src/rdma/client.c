/* client.c — blocking client connections to a memory node: connect with a timeout, the
 * challenge-response handshake, ALLOC / ATTACH / STATS, and the send/receive loops the
 * transports' data paths use. See client.h. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "rdma/client.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

int lethe_split_hostport(const char *addr, char *host, size_t hostlen, char *port, size_t portlen)
{
    const char *colon, *hs = addr, *he;
    if (addr[0] == '[') {
        he = strchr(addr, ']');
        if (!he || he[1] != ':')
            return -EINVAL;
        hs = addr + 1;
        colon = he + 1;
    } else {
        colon = strrchr(addr, ':');
        if (!colon)
            return -EINVAL;
        he = colon;
    }
    size_t hl = (size_t)(he - hs), pl = strlen(colon + 1);
    if (hl == 0 || hl >= hostlen || pl == 0 || pl >= portlen)
        return -EINVAL;
    for (const char *p = colon + 1; *p; p++)
        if (*p < '0' || *p > '9')
            return -EINVAL;
    memcpy(host, hs, hl);
    host[hl] = '\0';
    memcpy(port, colon + 1, pl + 1);
    return 0;
}

static int set_timeouts(int fd, uint64_t timeout_us)
{
    struct timeval tv = {.tv_sec = (time_t)(timeout_us / 1000000),
                         .tv_usec = (suseconds_t)(timeout_us % 1000000)};
    if (setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)) < 0 ||
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv)) < 0)
        return -errno;
    return 0;
}

int lethe_mnc_set_timeout(struct lethe_mnc *c, uint64_t timeout_us)
{
    return set_timeouts(c->fd, timeout_us);
}

/* Non-blocking connect bounded by timeout_us, then back to blocking mode. */
static int connect_timed(int fd, const struct sockaddr *sa, socklen_t salen, uint64_t timeout_us)
{
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0)
        return -errno;
    int rc = 0;
    if (connect(fd, sa, salen) < 0) {
        if (errno != EINPROGRESS && errno != EAGAIN) {
            rc = -errno;
        } else {
            struct pollfd pfd = {.fd = fd, .events = POLLOUT};
            int ms = timeout_us ? (int)((timeout_us + 999) / 1000) : -1;
            int n;
            do {
                n = poll(&pfd, 1, ms);
            } while (n < 0 && errno == EINTR);
            if (n == 0) {
                rc = -ETIMEDOUT;
            } else if (n < 0) {
                rc = -errno;
            } else {
                int soerr = 0;
                socklen_t sl = sizeof(soerr);
                if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) < 0)
                    rc = -errno;
                else if (soerr)
                    rc = -soerr;
            }
        }
    }
    if (rc == 0 && fcntl(fd, F_SETFL, fl) < 0)
        rc = -errno;
    return rc;
}

int lethe_mnc_connect(struct lethe_mnc *c, const char *addr, uint64_t timeout_us, char *err)
{
    memset(c, 0, sizeof(*c));
    c->fd = -1;
    c->next_id = 1;
    if (strchr(addr, '/')) {
        struct sockaddr_un sun = {.sun_family = AF_UNIX};
        if (strlen(addr) >= sizeof(sun.sun_path)) {
            snprintf(err, LETHE_MNC_ERR, "Unix socket path is too long");
            return -ENAMETOOLONG;
        }
        strcpy(sun.sun_path, addr);
        int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0) {
            snprintf(err, LETHE_MNC_ERR, "socket: %s", strerror(errno));
            return -errno;
        }
        int rc = connect_timed(fd, (struct sockaddr *)&sun, sizeof(sun), timeout_us);
        if (rc < 0) {
            snprintf(err, LETHE_MNC_ERR, "cannot connect: %s", strerror(-rc));
            close(fd);
            return rc;
        }
        c->fd = fd;
        c->is_unix = true;
        return 0;
    }
    char host[LETHE_ADDR_MAX], port[16];
    if (lethe_split_hostport(addr, host, sizeof(host), port, sizeof(port)) < 0) {
        snprintf(err, LETHE_MNC_ERR, "'%s' is not host:port", addr);
        return -EINVAL;
    }
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV}, *res;
    int gai = getaddrinfo(host, port, &hints, &res);
    if (gai) {
        snprintf(err, LETHE_MNC_ERR, "cannot resolve '%.64s': %s", host, gai_strerror(gai));
        return -EHOSTUNREACH;
    }
    int rc = -EHOSTUNREACH;
    for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
        int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
        if (fd < 0) {
            rc = -errno;
            continue;
        }
        rc = connect_timed(fd, ai->ai_addr, ai->ai_addrlen, timeout_us);
        if (rc == 0) {
            int one = 1;
            setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
            c->fd = fd;
            break;
        }
        close(fd);
    }
    freeaddrinfo(res);
    if (rc < 0)
        snprintf(err, LETHE_MNC_ERR, "cannot connect: %s", strerror(-rc));
    return rc;
}

void lethe_mnc_close(struct lethe_mnc *c)
{
    if (c->fd >= 0)
        close(c->fd);
    c->fd = -1;
}

static int io_error(int e, const char *what, char *err)
{
    if (e == EAGAIN || e == EWOULDBLOCK) {
        snprintf(err, LETHE_MNC_ERR, "timed out %s", what);
        return -ETIMEDOUT;
    }
    snprintf(err, LETHE_MNC_ERR, "%s: %s", what, strerror(e));
    return -e;
}

int lethe_mnc_send(struct lethe_mnc *c, struct iovec *iov, int iovcnt, char *err)
{
    while (iovcnt > 0) {
        struct msghdr m = {.msg_iov = iov, .msg_iovlen = (size_t)(iovcnt > 1024 ? 1024 : iovcnt)};
        ssize_t n = sendmsg(c->fd, &m, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EPIPE || errno == ECONNRESET) {
                snprintf(err, LETHE_MNC_ERR, "connection closed by peer while sending");
                return -ECONNRESET;
            }
            return io_error(errno, "sending", err);
        }
        size_t left = (size_t)n;
        while (iovcnt > 0 && left >= iov->iov_len) {
            left -= iov->iov_len;
            iov++;
            iovcnt--;
        }
        if (iovcnt > 0) {
            iov->iov_base = (char *)iov->iov_base + left;
            iov->iov_len -= left;
        }
    }
    return 0;
}

int lethe_mnc_recvv(struct lethe_mnc *c, struct iovec *iov, int iovcnt, size_t n, char *err)
{
    while (n > 0) {
        struct msghdr m = {.msg_iov = iov, .msg_iovlen = (size_t)(iovcnt > 1024 ? 1024 : iovcnt)};
        ssize_t got = recvmsg(c->fd, &m, MSG_WAITALL);
        if (got < 0) {
            if (errno == EINTR)
                continue;
            if (errno == ECONNRESET) {
                snprintf(err, LETHE_MNC_ERR, "connection reset by peer");
                return -ECONNRESET;
            }
            return io_error(errno, "waiting for the reply", err);
        }
        if (got == 0) {
            snprintf(err, LETHE_MNC_ERR, "connection closed by peer");
            return -ECONNRESET;
        }
        n -= (size_t)got;
        size_t left = (size_t)got;
        while (iovcnt > 0 && left >= iov->iov_len) {
            left -= iov->iov_len;
            iov++;
            iovcnt--;
        }
        if (iovcnt > 0) {
            iov->iov_base = (char *)iov->iov_base + left;
            iov->iov_len -= left;
        }
    }
    return 0;
}

int lethe_mnc_recv(struct lethe_mnc *c, void *buf, size_t n, char *err)
{
    struct iovec iov = {.iov_base = buf, .iov_len = n};
    return lethe_mnc_recvv(c, &iov, 1, n, err);
}

/* Reads the header with recvmsg so that a memfd passed with it (SCM_RIGHTS) is caught. */
static int recv_hdr_fd(struct lethe_mnc *c, uint8_t *buf, int *passed_fd, char *err)
{
    size_t have = 0;
    while (have < LETHE_PROTO_HDR_LEN) {
        union {
            struct cmsghdr h;
            char b[CMSG_SPACE(sizeof(int) * 4)];
        } ctl;
        struct iovec iov = {.iov_base = buf + have, .iov_len = LETHE_PROTO_HDR_LEN - have};
        struct msghdr m = {.msg_iov = &iov, .msg_iovlen = 1};
        if (c->is_unix) {
            m.msg_control = ctl.b;
            m.msg_controllen = sizeof(ctl.b);
        }
        ssize_t got = recvmsg(c->fd, &m, MSG_CMSG_CLOEXEC);
        if (got < 0) {
            if (errno == EINTR)
                continue;
            if (errno == ECONNRESET) {
                snprintf(err, LETHE_MNC_ERR, "connection reset by peer");
                return -ECONNRESET;
            }
            return io_error(errno, "waiting for the reply", err);
        }
        if (c->is_unix) {
            for (struct cmsghdr *cm = CMSG_FIRSTHDR(&m); cm; cm = CMSG_NXTHDR(&m, cm)) {
                if (cm->cmsg_level != SOL_SOCKET || cm->cmsg_type != SCM_RIGHTS)
                    continue;
                size_t nfd = (cm->cmsg_len - CMSG_LEN(0)) / sizeof(int);
                for (size_t i = 0; i < nfd; i++) {
                    int fd;
                    memcpy(&fd, CMSG_DATA(cm) + i * sizeof(int), sizeof(int));
                    if (passed_fd && *passed_fd < 0)
                        *passed_fd = fd;
                    else
                        close(fd);
                }
            }
        }
        if (got == 0) {
            snprintf(err, LETHE_MNC_ERR, "connection closed by peer");
            return -ECONNRESET;
        }
        have += (size_t)got;
    }
    return 0;
}

static int check_reply_hdr(struct lethe_mnc *c, const uint8_t *buf, struct lethe_proto_hdr *h,
                           char *err)
{
    const char *why;
    lethe_proto_get_hdr(buf, h);
    int e = lethe_proto_check_hdr(h, &why);
    if (e) {
        snprintf(err, LETHE_MNC_ERR, "malformed reply: %s", why);
        return -EPROTO;
    }
    if (h->type != LETHE_MSG_HELLO && !(h->flags & LETHE_F_REPLY)) {
        snprintf(err, LETHE_MNC_ERR, "malformed reply: reply flag missing");
        return -EPROTO;
    }
    if (h->status != 0) {
        char text[LETHE_PROTO_MAX_ERROR + 1] = "";
        if (h->length > LETHE_PROTO_MAX_ERROR) {
            snprintf(err, LETHE_MNC_ERR, "malformed error reply (%u bytes of text)", h->length);
            return -EPROTO;
        }
        int rc = lethe_mnc_recv(c, text, h->length, err);
        if (rc < 0)
            return rc;
        text[h->length] = '\0';
        for (char *p = text; *p; p++)
            if (*p < 0x20 || *p > 0x7e)
                *p = '?';
        int st = h->status > 0 && h->status < 4096 ? h->status : EPROTO;
        /* The node may send up to LETHE_PROTO_MAX_ERROR bytes of text, more than err holds:
         * keep the head of it, and room for the names around it. */
        snprintf(err, LETHE_MNC_ERR, "memnode refused %s: %.160s (%s)",
                 lethe_proto_type_name(h->type), text[0] ? text : "no reason given",
                 strerrorname_np(st) ? strerrorname_np(st) : "?");
        return -st;
    }
    return 0;
}

int lethe_mnc_recv_hdr(struct lethe_mnc *c, struct lethe_proto_hdr *h, char *err)
{
    uint8_t buf[LETHE_PROTO_HDR_LEN];
    int rc = recv_hdr_fd(c, buf, NULL, err);
    if (rc < 0)
        return rc;
    return check_reply_hdr(c, buf, h, err);
}

int lethe_mnc_call(struct lethe_mnc *c, uint8_t type, uint16_t flags, const void *payload,
                   uint32_t len, void *out, uint32_t outlen, int *passed_fd, char *err)
{
    uint8_t hdr[LETHE_PROTO_HDR_LEN];
    uint64_t id = c->next_id++;
    lethe_proto_put_hdr(hdr, type, flags, id, len, 0);
    struct iovec iov[2] = {{.iov_base = hdr, .iov_len = sizeof(hdr)},
                           {.iov_base = (void *)payload, .iov_len = len}};
    int rc = lethe_mnc_send(c, iov, len ? 2 : 1, err);
    if (rc < 0)
        return rc;
    uint8_t rbuf[LETHE_PROTO_HDR_LEN];
    int fd = -1;
    rc = recv_hdr_fd(c, rbuf, passed_fd ? &fd : NULL, err);
    struct lethe_proto_hdr h;
    if (rc == 0)
        rc = check_reply_hdr(c, rbuf, &h, err);
    if (rc == 0 && (h.type != type || h.req_id != id)) {
        snprintf(err, LETHE_MNC_ERR, "reply to %s has type %s and id %llu, expected id %llu",
                 lethe_proto_type_name(type), lethe_proto_type_name(h.type),
                 (unsigned long long)h.req_id, (unsigned long long)id);
        rc = -EPROTO;
    }
    if (rc == 0 && h.length != outlen) {
        snprintf(err, LETHE_MNC_ERR, "reply to %s has %u payload bytes, expected %u",
                 lethe_proto_type_name(type), h.length, outlen);
        rc = -EPROTO;
    }
    if (rc == 0)
        rc = lethe_mnc_recv(c, out, outlen, err);
    if (rc < 0) {
        if (fd >= 0)
            close(fd);
        return rc;
    }
    if (passed_fd)
        *passed_fd = fd;
    return 0;
}

int lethe_mnc_handshake(struct lethe_mnc *c, const char *token, uint64_t timeout_us, char *err)
{
    int rc = set_timeouts(c->fd, timeout_us);
    if (rc < 0) {
        snprintf(err, LETHE_MNC_ERR, "setsockopt: %s", strerror(-rc));
        return rc;
    }
    uint8_t buf[LETHE_PROTO_HDR_LEN];
    struct lethe_proto_hdr h;
    rc = recv_hdr_fd(c, buf, NULL, err);
    if (rc == 0)
        rc = check_reply_hdr(c, buf, &h, err);
    if (rc < 0)
        return rc;
    if (h.type != LETHE_MSG_HELLO || h.length != LETHE_HELLO_LEN) {
        snprintf(err, LETHE_MNC_ERR, "expected HELLO from the node, got %s",
                 lethe_proto_type_name(h.type));
        return -EPROTO;
    }
    uint8_t hello[LETHE_HELLO_LEN];
    rc = lethe_mnc_recv(c, hello, sizeof(hello), err);
    if (rc < 0)
        return rc;
    memcpy(c->ns, hello, LETHE_NONCE_LEN);
    c->max_payload = lethe_le32(hello + LETHE_NONCE_LEN);
    c->max_batch = lethe_le32(hello + LETHE_NONCE_LEN + 4);
    if (c->max_batch == 0 || c->max_batch > LETHE_PROTO_MAX_BATCH)
        c->max_batch = LETHE_PROTO_MAX_BATCH;
    rc = lethe_random_bytes(c->nc, sizeof(c->nc));
    if (rc < 0) {
        snprintf(err, LETHE_MNC_ERR, "getrandom: %s", strerror(-rc));
        return rc;
    }
    uint8_t auth[LETHE_AUTH_LEN], reply[LETHE_AUTH_REPLY_LEN], want[LETHE_MAC_LEN];
    memcpy(auth, c->nc, LETHE_NONCE_LEN);
    lethe_auth_client_proof(token, c->ns, c->nc, auth + LETHE_NONCE_LEN);
    rc = lethe_mnc_call(c, LETHE_MSG_AUTH, 0, auth, sizeof(auth), reply, sizeof(reply), NULL, err);
    if (rc < 0)
        return rc;
    lethe_auth_node_proof(token, c->ns, c->nc, want);
    if (!lethe_ct_equal(reply, want, sizeof(want))) {
        snprintf(err, LETHE_MNC_ERR, "the node's proof is wrong: it does not hold our token");
        return -EACCES;
    }
    return 0;
}

int lethe_mnc_alloc(struct lethe_mnc *c, uint64_t bytes, uint16_t flags, struct lethe_mnc_region *r,
                    char *err)
{
    uint8_t req[LETHE_ALLOC_LEN], rep[LETHE_ALLOC_REPLY_LEN];
    lethe_put_le64(req, bytes);
    r->memfd = -1;
    int fd = -1;
    int rc = lethe_mnc_call(c, LETHE_MSG_ALLOC, flags, req, sizeof(req), rep, sizeof(rep),
                            (flags & LETHE_F_ALLOC_SHM) ? &fd : NULL, err);
    if (rc < 0)
        return rc;
    r->id = lethe_le64(rep);
    r->pages = lethe_le64(rep + 8);
    memcpy(r->key, rep + 16, LETHE_REGION_KEY_LEN);
    r->rdma_port = (uint16_t)(rep[32] | rep[33] << 8);
    r->memfd = fd;
    if ((flags & LETHE_F_ALLOC_SHM) && fd < 0) {
        snprintf(err, LETHE_MNC_ERR, "ALLOC reply came without the region's memfd");
        return -EPROTO;
    }
    if (r->pages != bytes / LETHE_PROTO_PAGE) {
        snprintf(err, LETHE_MNC_ERR, "ALLOC granted %llu pages, asked for %llu",
                 (unsigned long long)r->pages, (unsigned long long)(bytes / LETHE_PROTO_PAGE));
        if (fd >= 0)
            close(fd);
        r->memfd = -1;
        return -EPROTO;
    }
    return 0;
}

int lethe_mnc_attach(struct lethe_mnc *c, uint64_t region_id,
                     const uint8_t key[LETHE_REGION_KEY_LEN], uint64_t *pages, char *err)
{
    uint8_t req[LETHE_ATTACH_LEN], rep[LETHE_ATTACH_REPLY_LEN];
    lethe_put_le64(req, region_id);
    lethe_auth_attach_proof(key, region_id, c->ns, c->nc, req + 8);
    int rc = lethe_mnc_call(c, LETHE_MSG_ATTACH, 0, req, sizeof(req), rep, sizeof(rep), NULL, err);
    if (rc < 0)
        return rc;
    *pages = lethe_le64(rep);
    return 0;
}

int lethe_mnc_stats(struct lethe_mnc *c, uint64_t *fields, unsigned n, unsigned *got, char *err)
{
    uint8_t hdr[LETHE_PROTO_HDR_LEN];
    uint64_t id = c->next_id++;
    lethe_proto_put_hdr(hdr, LETHE_MSG_STATS, 0, id, 0, 0);
    struct iovec iov = {.iov_base = hdr, .iov_len = sizeof(hdr)};
    int rc = lethe_mnc_send(c, &iov, 1, err);
    struct lethe_proto_hdr h;
    if (rc == 0)
        rc = lethe_mnc_recv_hdr(c, &h, err);
    if (rc < 0)
        return rc;
    if (h.type != LETHE_MSG_STATS || h.req_id != id || h.length < 8 || h.length % 8 ||
        h.length > 8 + 8 * 256) {
        snprintf(err, LETHE_MNC_ERR, "malformed STATS reply");
        return -EPROTO;
    }
    uint8_t buf[8 + 8 * 256];
    rc = lethe_mnc_recv(c, buf, h.length, err);
    if (rc < 0)
        return rc;
    unsigned count = lethe_le32(buf);
    if (count != (h.length - 8) / 8) {
        snprintf(err, LETHE_MNC_ERR, "malformed STATS reply (count %u)", count);
        return -EPROTO;
    }
    for (unsigned i = 0; i < n; i++)
        fields[i] = i < count ? lethe_le64(buf + 8 + 8 * i) : 0;
    *got = count;
    return 0;
}

static void *watch_run(void *arg)
{
    struct lethe_mnc_watch *w = arg;
    struct pollfd pfd[2] = {{.fd = w->fd, .events = POLLIN | POLLRDHUP},
                            {.fd = w->wake_fd, .events = POLLIN}};
    for (;;) {
        int n = poll(pfd, 2, -1);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 || pfd[1].revents)
            return NULL;
        if (!pfd[0].revents)
            continue;
        char c;
        ssize_t got = recv(w->fd, &c, 1, MSG_PEEK | MSG_DONTWAIT);
        if (got > 0) /* the node sends nothing unasked here */
            snprintf(w->why, sizeof(w->why), "memnode sent an unexpected message");
        else if (got == 0 || (pfd[0].revents & (POLLHUP | POLLRDHUP)))
            snprintf(w->why, sizeof(w->why), "memnode closed the connection");
        else
            snprintf(w->why, sizeof(w->why), "memnode connection failed: %s", strerror(errno));
        __atomic_store_n(&w->gone, 1, __ATOMIC_RELEASE);
        return NULL;
    }
}

int lethe_mnc_watch_start(struct lethe_mnc_watch *w, int fd)
{
    memset(w, 0, sizeof(*w));
    w->fd = fd;
    w->wake_fd = eventfd(0, EFD_CLOEXEC);
    if (w->wake_fd < 0)
        return -errno;
    /* The watcher takes no signals: they belong to the application. */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, &old);
    int rc = pthread_create(&w->thread, NULL, watch_run, w);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rc) {
        close(w->wake_fd);
        w->wake_fd = -1;
        return -rc;
    }
    return 0;
}

void lethe_mnc_watch_stop(struct lethe_mnc_watch *w)
{
    if (w->wake_fd < 0)
        return;
    uint64_t one = 1;
    ssize_t n = write(w->wake_fd, &one, sizeof(one));
    (void)n;
    pthread_join(w->thread, NULL);
    close(w->wake_fd);
    w->wake_fd = -1;
}
