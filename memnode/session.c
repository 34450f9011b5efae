/* session.c — one client connection to the memory node (Unix socket or TCP): the protocol of
 * docs/PROTOCOL.md as a state machine over a libevent bufferevent.
 *
 *   accept -> HELLO sent (MN_AUTH) -> AUTH ok (MN_AUTHED) -> ALLOC or ATTACH (MN_BOUND)
 *
 * Requests are taken from the input buffer whole (lethe_proto_parse_request over a pulled-up
 * message) and served in order, so replies leave in request order. What the parser rejects
 * with its framing intact gets an error reply and the node reads on; a broken frame (bad
 * magic, version, oversized length), a request before AUTH, a wrong token or a refused
 * ATTACH get an error reply and the connection is closed once that reply is out. Every slot
 * of a READ or WRITE is checked against the connection's own region before any byte moves.
 *
 * Memory per connection stays bounded: reading stops while more than MN_OUT_HIGH bytes of
 * replies wait to be sent, and the input buffer holds at most two maximal messages.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/log.h"
#include "node_impl.h"
#include "rdma/proto.h"

/* Error lines logged per connection before the rest go to debug level. */
#define MN_ERRORS_LOGGED 5

static void conn_read_cb(struct bufferevent *bev, void *arg);
static void conn_write_cb(struct bufferevent *bev, void *arg);
static void conn_event_cb(struct bufferevent *bev, short what, void *arg);

static void reply(struct mn_conn *c, uint8_t type, uint64_t req_id, const void *payload,
                  uint32_t len)
{
    struct evbuffer *out = bufferevent_get_output(c->bev);
    uint8_t hdr[LETHE_PROTO_HDR_LEN];
    lethe_proto_put_hdr(hdr, type, LETHE_F_REPLY, req_id, len, 0);
    evbuffer_add(out, hdr, sizeof(hdr));
    if (len)
        evbuffer_add(out, payload, len);
}

static void reply_error(struct mn_conn *c, uint8_t type, uint64_t req_id, int err, const char *fmt,
                        ...) __attribute__((format(printf, 5, 6)));

static void reply_error(struct mn_conn *c, uint8_t type, uint64_t req_id, int err, const char *fmt,
                        ...)
{
    char text[LETHE_PROTO_MAX_ERROR + 1];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof(text), fmt, ap);
    va_end(ap);
    uint32_t len = (uint32_t)strlen(text);
    struct evbuffer *out = bufferevent_get_output(c->bev);
    uint8_t hdr[LETHE_PROTO_HDR_LEN];
    lethe_proto_put_hdr(hdr, type, LETHE_F_REPLY, req_id, len, err);
    evbuffer_add(out, hdr, sizeof(hdr));
    evbuffer_add(out, text, len);
    mn_count(&c->node->st.errors, 1);
    enum lethe_log_level level =
        c->errors_logged < MN_ERRORS_LOGGED ? LETHE_LOG_WARN : LETHE_LOG_DEBUG;
    if (c->errors_logged < MN_ERRORS_LOGGED)
        c->errors_logged++;
    if (lethe_log_enabled(level))
        lethe_logf(level, "connection %llu (%s): %s refused (%s): %s", (unsigned long long)c->id,
                   c->peer, lethe_proto_type_name(type),
                   strerrorname_np(err) ? strerrorname_np(err) : "?", text);
}

/* No more requests from this connection; it is freed once its output is flushed. */
static void close_after_flush(struct mn_conn *c)
{
    c->closing = true;
    bufferevent_disable(c->bev, EV_READ);
    bufferevent_setwatermark(c->bev, EV_WRITE, 0, 0);
}

static void bind_region(struct mn_conn *c, struct mn_region *r, bool owner)
{
    c->region = r;
    c->owner = owner;
    c->rprev = NULL;
    c->rnext = r->conns;
    if (r->conns)
        r->conns->rprev = c;
    r->conns = c;
    r->nconns++;
    c->state = MN_BOUND;
    c->node->npending--;
    bufferevent_set_timeouts(c->bev, NULL, NULL);
}

static void unbind_region(struct mn_conn *c)
{
    struct mn_region *r = c->region;
    if (c->rprev)
        c->rprev->rnext = c->rnext;
    else
        r->conns = c->rnext;
    if (c->rnext)
        c->rnext->rprev = c->rprev;
    r->nconns--;
    c->region = NULL;
}

void mn_conn_free(struct mn_conn *c)
{
    struct lethe_memnode *n = c->node;
    if (c->region) {
        struct mn_region *r = c->region;
        unbind_region(c);
        if (c->owner)
            mn_region_destroy(n, r);
    } else {
        n->npending--;
    }
    if (c->prev)
        c->prev->next = c->next;
    else
        n->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    mn_count(&n->st.connections, -1);
    lethe_debug("connection %llu (%s) closed", (unsigned long long)c->id, c->peer);
    bufferevent_free(c->bev);
    free(c);
}

/* Sends one message with the region's memfd attached (SCM_RIGHTS). Earlier replies must be
 * out of the way first, or the fd would ride on the wrong bytes: they are flushed here, and
 * if the socket will not take them now the ALLOC fails with EAGAIN. */
static int send_with_fd(struct mn_conn *c, const uint8_t *msg, size_t len, int fd)
{
    struct evbuffer *out = bufferevent_get_output(c->bev);
    int sock = bufferevent_getfd(c->bev);
    while (evbuffer_get_length(out) > 0)
        if (evbuffer_write(out, sock) <= 0)
            break;
    if (evbuffer_get_length(out) > 0)
        return -EAGAIN;
    union {
        struct cmsghdr h;
        char b[CMSG_SPACE(sizeof(int))];
    } ctl;
    memset(&ctl, 0, sizeof(ctl));
    struct iovec iov = {.iov_base = (void *)msg, .iov_len = len};
    struct msghdr m = {
        .msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl.b, .msg_controllen = sizeof(ctl.b)};
    struct cmsghdr *cm = CMSG_FIRSTHDR(&m);
    cm->cmsg_level = SOL_SOCKET;
    cm->cmsg_type = SCM_RIGHTS;
    cm->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(cm), &fd, sizeof(int));
    ssize_t w;
    do {
        w = sendmsg(sock, &m, MSG_NOSIGNAL | MSG_DONTWAIT);
    } while (w < 0 && errno == EINTR);
    if (w < 0)
        return -errno;
    if ((size_t)w < len)
        evbuffer_add(out, msg + w, len - (size_t)w);
    return 0;
}

static int handle_auth(struct mn_conn *c, const struct lethe_proto_request *req)
{
    struct lethe_memnode *n = c->node;
    if (c->state != MN_AUTH) {
        reply_error(c, LETHE_MSG_AUTH, req->hdr.req_id, EINVAL, "already authenticated");
        return 0;
    }
    uint8_t want[LETHE_MAC_LEN], proof[LETHE_MAC_LEN];
    memcpy(c->nc, req->u.auth.nonce, LETHE_NONCE_LEN);
    lethe_auth_client_proof(n->token, c->ns, c->nc, want);
    if (!lethe_ct_equal(want, req->u.auth.proof, LETHE_MAC_LEN)) {
        mn_count(&n->st.auth_failures, 1);
        reply_error(c, LETHE_MSG_AUTH, req->hdr.req_id, EACCES,
                    "authentication failed: the proof does not match this node's token");
        close_after_flush(c);
        return -1;
    }
    c->state = MN_AUTHED;
    lethe_auth_node_proof(n->token, c->ns, c->nc, proof);
    reply(c, LETHE_MSG_AUTH, req->hdr.req_id, proof, sizeof(proof));
    lethe_debug("connection %llu (%s) authenticated", (unsigned long long)c->id, c->peer);
    return 0;
}

/* Frees the connections whose peer has closed its end while the loop has not handled the
 * close yet. An ALLOC that does not fit calls it first: the
 * asker may be a program's next image (a program that execs itself connects again at once),
 * and the old image's connection, closed by the exec, still holds its region. Freeing a
 * region frees the connections attached to it, so the scan starts over after each. */
static void reap_closed(struct lethe_memnode *n, const struct mn_conn *self)
{
    for (struct mn_conn *c = n->conns; c;) {
        struct pollfd p = {.fd = bufferevent_getfd(c->bev), .events = POLLRDHUP};
        if (c != self && p.fd >= 0 && poll(&p, 1, 0) == 1 &&
            (p.revents & (POLLRDHUP | POLLHUP | POLLERR))) {
            mn_conn_free(c);
            c = n->conns;
            continue;
        }
        c = c->next;
    }
}

static int handle_alloc(struct mn_conn *c, const struct lethe_proto_request *req)
{
    struct lethe_memnode *n = c->node;
    uint64_t id = req->hdr.req_id, bytes = req->u.alloc.bytes;
    uint16_t flags = req->hdr.flags;
    char asked[32], left[32], cap[32];
    if (c->state == MN_BOUND) {
        reply_error(c, LETHE_MSG_ALLOC, id, EEXIST, "this connection already holds region %llu",
                    (unsigned long long)c->region->id);
        return 0;
    }
    if ((flags & LETHE_F_ALLOC_SHM) && !c->is_unix) {
        reply_error(c, LETHE_MSG_ALLOC, id, EINVAL,
                    "shm ALLOC (memfd passing) works only over the Unix socket");
        return 0;
    }
    if ((flags & LETHE_F_ALLOC_RDMA) && !n->rdma) {
        reply_error(c, LETHE_MSG_ALLOC, id, ENOTSUP,
                    "this memnode has no RDMA listener (rdma_listen = off)");
        return 0;
    }
    if (n->nregions >= n->cfg.max_clients || bytes > mn_capacity_left(n))
        reap_closed(n, c);
    if (n->nregions >= n->cfg.max_clients) {
        reply_error(c, LETHE_MSG_ALLOC, id, EUSERS,
                    "memnode full: max_clients (%u) clients already hold regions",
                    n->cfg.max_clients);
        return 0;
    }
    lethe_format_size(bytes, asked, sizeof(asked));
    lethe_format_size(mn_capacity_left(n), left, sizeof(left));
    lethe_format_size(n->cfg.capacity, cap, sizeof(cap));
    if (bytes > mn_capacity_left(n)) {
        reply_error(c, LETHE_MSG_ALLOC, id, ENOSPC,
                    "not enough capacity: asked for %s, %s of the node's %s left", asked, left,
                    cap);
        return 0;
    }
    struct mn_region *r;
    char why[160];
    int rc = mn_region_create(n, bytes, flags, &r, why, sizeof(why));
    if (rc < 0) {
        reply_error(c, LETHE_MSG_ALLOC, id, -rc, "cannot create a region of %s: %s", asked, why);
        return 0;
    }
    bind_region(c, r, true);

    uint8_t msg[LETHE_PROTO_HDR_LEN + LETHE_ALLOC_REPLY_LEN] = {0};
    uint8_t *p = msg + LETHE_PROTO_HDR_LEN;
    lethe_proto_put_hdr(msg, LETHE_MSG_ALLOC, LETHE_F_REPLY, id, LETHE_ALLOC_REPLY_LEN, 0);
    lethe_put_le64(p, r->id);
    lethe_put_le64(p + 8, r->pages);
    memcpy(p + 16, r->key, LETHE_REGION_KEY_LEN);
    p[32] = (uint8_t)n->rdma_port;
    p[33] = (uint8_t)(n->rdma_port >> 8);
    if (flags & LETHE_F_ALLOC_SHM) {
        rc = send_with_fd(c, msg, sizeof(msg), r->memfd);
        if (rc < 0) {
            /* The client did not wait for its earlier replies: it gets no region. */
            unbind_region(c);
            c->owner = false;
            c->state = MN_AUTHED;
            n->npending++;
            mn_region_destroy(n, r);
            reply_error(c, LETHE_MSG_ALLOC, id, -rc,
                        "cannot pass the region's memfd now (%s): wait for earlier replies",
                        strerror(-rc));
            close_after_flush(c);
            return -1;
        }
    } else {
        evbuffer_add(bufferevent_get_output(c->bev), msg, sizeof(msg));
    }
    lethe_format_size(mn_capacity_left(n), left, sizeof(left));
    char how[64] = "";
    if (flags & LETHE_F_ALLOC_SHM)
        snprintf(how, sizeof(how), " as shm");
    else if (flags & LETHE_F_ALLOC_RDMA)
        snprintf(how, sizeof(how), " for RDMA (MR registered in %.3f s)", r->rdma_reg_ns / 1e9);
    lethe_info("connection %llu (%s): region %llu of %s lent%s; %s of %s left, %u clients",
               (unsigned long long)c->id, c->peer, (unsigned long long)r->id, asked, how, left, cap,
               n->nregions);
    return 0;
}

static int handle_attach(struct mn_conn *c, const struct lethe_proto_request *req)
{
    struct lethe_memnode *n = c->node;
    uint64_t id = req->hdr.req_id, rid = req->u.attach.region_id;
    if (c->state == MN_BOUND) {
        reply_error(c, LETHE_MSG_ATTACH, id, EEXIST, "this connection already holds region %llu",
                    (unsigned long long)c->region->id);
        return 0;
    }
    struct mn_region *r = mn_region_find(n, rid);
    uint8_t want[LETHE_MAC_LEN];
    bool ok = false;
    if (r) {
        lethe_auth_attach_proof(r->key, rid, c->ns, c->nc, want);
        ok = lethe_ct_equal(want, req->u.attach.proof, LETHE_MAC_LEN);
    }
    if (!ok) {
        mn_count(&n->st.auth_failures, 1);
        reply_error(c, LETHE_MSG_ATTACH, id, EPERM,
                    "ATTACH refused: no region %llu, or the proof of its key is wrong",
                    (unsigned long long)rid);
        close_after_flush(c);
        return -1;
    }
    if (r->nconns >= MN_MAX_REGION_CONNS) {
        reply_error(c, LETHE_MSG_ATTACH, id, EUSERS, "region %llu already has %u connections",
                    (unsigned long long)rid, r->nconns);
        return 0;
    }
    bind_region(c, r, false);
    uint8_t pages[8];
    lethe_put_le64(pages, r->pages);
    reply(c, LETHE_MSG_ATTACH, id, pages, sizeof(pages));
    lethe_debug("connection %llu (%s) attached to region %llu", (unsigned long long)c->id, c->peer,
                (unsigned long long)rid);
    return 0;
}

/* Checks every slot before any page moves: a request is served whole or not at all. */
static bool slots_in_region(struct mn_conn *c, const struct lethe_proto_request *req)
{
    if (c->state != MN_BOUND) {
        reply_error(c, req->hdr.type, req->hdr.req_id, EINVAL,
                    "no region on this connection: send ALLOC or ATTACH first");
        return false;
    }
    uint64_t pages = c->region->pages;
    for (uint32_t i = 0; i < req->u.io.count; i++) {
        uint64_t slot = lethe_proto_slot(req, i);
        if (slot >= pages) {
            reply_error(c, req->hdr.type, req->hdr.req_id, ERANGE,
                        "slot %llu is beyond this client's region of %llu pages",
                        (unsigned long long)slot, (unsigned long long)pages);
            return false;
        }
    }
    return true;
}

static void handle_read(struct mn_conn *c, const struct lethe_proto_request *req)
{
    if (!slots_in_region(c, req))
        return;
    uint32_t count = req->u.io.count;
    uint32_t len = count * LETHE_PROTO_PAGE;
    struct evbuffer *out = bufferevent_get_output(c->bev);
    uint8_t hdr[LETHE_PROTO_HDR_LEN];
    lethe_proto_put_hdr(hdr, LETHE_MSG_READ, LETHE_F_REPLY, req->hdr.req_id, len, 0);
    evbuffer_expand(out, sizeof(hdr) + len);
    evbuffer_add(out, hdr, sizeof(hdr));
    const uint8_t *base = c->region->base;
    for (uint32_t i = 0; i < count; i++)
        evbuffer_add(out, base + lethe_proto_slot(req, i) * LETHE_PROTO_PAGE, LETHE_PROTO_PAGE);
    mn_count(&c->node->st.reads, 1);
    mn_count(&c->node->st.pages_read, count);
}

static void handle_write(struct mn_conn *c, const struct lethe_proto_request *req)
{
    if (!slots_in_region(c, req))
        return;
    uint32_t count = req->u.io.count;
    uint8_t *base = c->region->base;
    for (uint32_t i = 0; i < count; i++)
        memcpy(base + lethe_proto_slot(req, i) * LETHE_PROTO_PAGE,
               req->u.io.data + (size_t)i * LETHE_PROTO_PAGE, LETHE_PROTO_PAGE);
    reply(c, LETHE_MSG_WRITE, req->hdr.req_id, NULL, 0);
    mn_count(&c->node->st.writes, 1);
    mn_count(&c->node->st.pages_written, count);
}

static void handle_stats(struct mn_conn *c, const struct lethe_proto_request *req)
{
    struct lethe_memnode_stats s;
    lethe_memnode_get_stats(c->node, &s);
    uint64_t f[LETHE_STAT_NFIELDS];
    f[LETHE_STAT_CLIENTS] = s.clients;
    f[LETHE_STAT_CONNECTIONS] = s.connections;
    f[LETHE_STAT_CAPACITY] = s.capacity;
    f[LETHE_STAT_BYTES_LENT] = s.bytes_lent;
    f[LETHE_STAT_READS] = s.reads;
    f[LETHE_STAT_WRITES] = s.writes;
    f[LETHE_STAT_PAGES_READ] = s.pages_read;
    f[LETHE_STAT_PAGES_WRITTEN] = s.pages_written;
    f[LETHE_STAT_ERRORS] = s.errors;
    f[LETHE_STAT_AUTH_FAILURES] = s.auth_failures;
    f[LETHE_STAT_CLIENTS_TOTAL] = s.clients_total;
    uint8_t buf[8 + 8 * LETHE_STAT_NFIELDS];
    lethe_put_le32(buf, LETHE_STAT_NFIELDS);
    lethe_put_le32(buf + 4, 0);
    for (unsigned i = 0; i < LETHE_STAT_NFIELDS; i++)
        lethe_put_le64(buf + 8 + 8 * i, f[i]);
    reply(c, LETHE_MSG_STATS, req->hdr.req_id, buf, sizeof(buf));
}

/* Serves one parsed request. Returns -1 when the connection is closing. */
static int handle(struct mn_conn *c, const struct lethe_proto_request *req)
{
    if (c->state == MN_AUTH && req->hdr.type != LETHE_MSG_AUTH) {
        reply_error(c, req->hdr.type, req->hdr.req_id, EACCES,
                    "authenticate first: the first request must be AUTH");
        close_after_flush(c);
        return -1;
    }
    switch (req->hdr.type) {
    case LETHE_MSG_AUTH:
        return handle_auth(c, req);
    case LETHE_MSG_ALLOC:
        return handle_alloc(c, req);
    case LETHE_MSG_ATTACH:
        return handle_attach(c, req);
    case LETHE_MSG_READ:
        handle_read(c, req);
        return 0;
    case LETHE_MSG_WRITE:
        handle_write(c, req);
        return 0;
    case LETHE_MSG_STATS:
        handle_stats(c, req);
        return 0;
    case LETHE_MSG_BYE:
        reply(c, LETHE_MSG_BYE, req->hdr.req_id, NULL, 0);
        close_after_flush(c);
        return -1;
    }
    return 0; /* the parser lets no other type through */
}

static void process_input(struct mn_conn *c)
{
    struct evbuffer *in = bufferevent_get_input(c->bev);
    struct evbuffer *out = bufferevent_get_output(c->bev);
    while (!c->closing) {
        if (evbuffer_get_length(out) > MN_OUT_HIGH) {
            c->throttled = true;
            bufferevent_disable(c->bev, EV_READ);
            return;
        }
        size_t avail = evbuffer_get_length(in);
        if (avail < LETHE_PROTO_HDR_LEN)
            return;
        struct lethe_proto_hdr h;
        const char *why;
        lethe_proto_get_hdr(evbuffer_pullup(in, LETHE_PROTO_HDR_LEN), &h);
        size_t need = LETHE_PROTO_HDR_LEN;
        if (lethe_proto_check_hdr(&h, &why) == 0)
            need += h.length;
        if (avail < need)
            return;
        struct lethe_proto_request req;
        size_t used;
        const uint8_t *msg = evbuffer_pullup(in, (ssize_t)need);
        if (!msg) {
            lethe_error("connection %llu (%s): out of memory for a %zu-byte request: closed",
                        (unsigned long long)c->id, c->peer, need);
            c->closing = true;
            evbuffer_drain(bufferevent_get_output(c->bev), evbuffer_get_length(out));
            return;
        }
        switch (lethe_proto_parse_request(msg, need, &req, &used)) {
        case LETHE_PARSE_MORE:
            return; /* cannot happen: the whole message is here */
        case LETHE_PARSE_FATAL:
            reply_error(c, req.hdr.type, req.hdr.req_id, req.error, "%s", req.why);
            close_after_flush(c);
            return;
        case LETHE_PARSE_BAD:
            reply_error(c, req.hdr.type, req.hdr.req_id, req.error, "%s", req.why);
            if (c->state == MN_AUTH) /* nothing but AUTH is welcome before AUTH */
                close_after_flush(c);
            break;
        case LETHE_PARSE_OK:
            handle(c, &req);
            break;
        }
        evbuffer_drain(in, used);
    }
}

/* Frees a closing connection whose output is out; returns true when it did. */
static bool finish_if_closed(struct mn_conn *c)
{
    if (c->closing && evbuffer_get_length(bufferevent_get_output(c->bev)) == 0) {
        mn_conn_free(c);
        return true;
    }
    return false;
}

static void conn_read_cb(struct bufferevent *bev, void *arg)
{
    struct mn_conn *c = arg;
    process_input(c);
    finish_if_closed(c);
}

static void conn_write_cb(struct bufferevent *bev, void *arg)
{
    struct mn_conn *c = arg;
    if (finish_if_closed(c))
        return;
    if (c->throttled && evbuffer_get_length(bufferevent_get_output(bev)) <= MN_OUT_LOW) {
        c->throttled = false;
        bufferevent_enable(bev, EV_READ);
        process_input(c);
        finish_if_closed(c);
    }
}

static void conn_event_cb(struct bufferevent *bev, short what, void *arg)
{
    struct mn_conn *c = arg;
    if (what & BEV_EVENT_TIMEOUT) {
        lethe_warn("connection %llu (%s): no AUTH/ALLOC/ATTACH within %d s: closed",
                   (unsigned long long)c->id, c->peer, MN_AUTH_TIMEOUT_S);
        mn_count(&c->node->st.errors, 1);
    } else if ((what & BEV_EVENT_EOF) && evbuffer_get_length(bufferevent_get_input(bev)) > 0 &&
               !c->closing) {
        lethe_debug("connection %llu (%s) closed with a partial request pending",
                    (unsigned long long)c->id, c->peer);
    } else if (what & BEV_EVENT_ERROR) {
        lethe_debug("connection %llu (%s): %s", (unsigned long long)c->id, c->peer,
                    strerror(EVUTIL_SOCKET_ERROR()));
    }
    mn_conn_free(c);
}

static void refuse(int fd, int err, const char *text)
{
    uint8_t msg[LETHE_PROTO_HDR_LEN + 128];
    size_t len = strlen(text);
    lethe_proto_put_hdr(msg, LETHE_MSG_HELLO, LETHE_F_REPLY, 0, (uint32_t)len, err);
    memcpy(msg + LETHE_PROTO_HDR_LEN, text, len);
    ssize_t w = send(fd, msg, LETHE_PROTO_HDR_LEN + len, MSG_NOSIGNAL | MSG_DONTWAIT);
    (void)w;
    close(fd);
}

void mn_conn_accept(struct lethe_memnode *n, int fd, const char *peer, bool is_unix)
{
    if (n->npending >= MN_MAX_PENDING) {
        mn_count(&n->st.errors, 1);
        lethe_warn("connection from %s refused: %d connections are still authenticating", peer,
                   MN_MAX_PENDING);
        refuse(fd, EUSERS, "too many connections are authenticating; try again later");
        return;
    }
    struct mn_conn *c = calloc(1, sizeof(*c));
    struct bufferevent *bev = c ? bufferevent_socket_new(n->base, fd, BEV_OPT_CLOSE_ON_FREE) : NULL;
    if (!bev || lethe_random_bytes(c->ns, sizeof(c->ns)) < 0) {
        lethe_error("connection from %s dropped: out of memory or entropy", peer);
        if (bev)
            bufferevent_free(bev);
        else
            close(fd);
        free(c);
        return;
    }
    c->node = n;
    c->bev = bev;
    c->is_unix = is_unix;
    c->state = MN_AUTH;
    c->id = ++n->next_conn_id;
    snprintf(c->peer, sizeof(c->peer), "%s", peer);
    c->next = n->conns;
    if (n->conns)
        n->conns->prev = c;
    n->conns = c;
    n->npending++;
    mn_count(&n->st.connections, 1);
    if (!is_unix) {
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    }
    bufferevent_setcb(bev, conn_read_cb, conn_write_cb, conn_event_cb, c);
    bufferevent_setwatermark(bev, EV_READ, 0, 2 * (LETHE_PROTO_HDR_LEN + LETHE_PROTO_MAX_PAYLOAD));
    bufferevent_setwatermark(bev, EV_WRITE, MN_OUT_LOW, 0);
    /* libevent moves 16 KiB per callback by default: a 64 KiB READ reply would take four
     * trips through the loop. */
    bufferevent_set_max_single_read(bev, 1 << 20);
    bufferevent_set_max_single_write(bev, 1 << 20);
    struct timeval tv = {.tv_sec = MN_AUTH_TIMEOUT_S};
    bufferevent_set_timeouts(bev, &tv, NULL);

    uint8_t hello[LETHE_HELLO_LEN];
    memcpy(hello, c->ns, LETHE_NONCE_LEN);
    lethe_put_le32(hello + LETHE_NONCE_LEN, LETHE_PROTO_MAX_PAYLOAD);
    lethe_put_le32(hello + LETHE_NONCE_LEN + 4, LETHE_PROTO_MAX_BATCH);
    uint8_t hdr[LETHE_PROTO_HDR_LEN];
    lethe_proto_put_hdr(hdr, LETHE_MSG_HELLO, 0, 0, sizeof(hello), 0);
    evbuffer_add(bufferevent_get_output(bev), hdr, sizeof(hdr));
    evbuffer_add(bufferevent_get_output(bev), hello, sizeof(hello));
    bufferevent_enable(bev, EV_READ | EV_WRITE);
    lethe_debug("connection %llu from %s", (unsigned long long)c->id, peer);
}
