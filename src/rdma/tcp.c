/* tcp.c — the `tcp` transport: the memory node's binary protocol (docs/PROTOCOL.md) over
 * TCP, one connection per channel.
 *
 * open: a control connection authenticates and ALLOCs the region (id, pages and a 128-bit
 * region key come back); it stays open for the life of the transport, and the node frees
 * the region when it closes. channel_open: each channel opens its own connection,
 * authenticates, and ATTACHes to the region with a proof made from the region key and that
 * connection's nonces (auth.h), so a client without the key cannot bind to the region.
 *
 * A batch is cut into requests of at most TCP_CHUNK pages, each with its own request id.
 * Requests are pipelined: up to TCP_WINDOW of them are in flight while the replies of the
 * earlier ones are read (directly into the caller's pages, no staging copy). The node
 * answers in order; a reply whose id is not the next outstanding one, a short read, a bad
 * status or a wrong length fails the call with an error naming the node and the slot, and
 * leaves the channel unusable (its stream can no longer be trusted).
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* POLLRDHUP */
#endif
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>

#include "core/log.h"
#include "rdma/client.h"
#include "rdma/transport_impl.h"

#define TCP_CHUNK         32u         /* pages per request */
#define TCP_WINDOW        16u         /* requests in flight per channel */
#define TCP_IO_TIMEOUT_US 30000000ULL /* without node_timeout: silent this long = dead */
#define TCP_REQ_FIXED     (LETHE_PROTO_HDR_LEN + LETHE_IO_FIXED + 8 * TCP_CHUNK)

struct tcp_remote {
    struct lethe_mnc ctl;
    uint64_t region_id;
    uint8_t key[LETHE_REGION_KEY_LEN];
};

/* The operation in flight on a channel: requests [done, sent) are sent, not answered. */
struct tcp_io {
    uint8_t type;
    const char *verb;
    const uint64_t *slots;
    void *const *pages;
    unsigned n, chunk, nreq, sent, done;
    uint64_t first_id;
};

struct tcp_chan {
    struct lethe_mnc c;
    bool broken;
    struct tcp_io io;
    uint8_t req[TCP_WINDOW][TCP_REQ_FIXED]; /* fixed parts of the requests in flight */
    struct iovec iov[TCP_WINDOW * (TCP_CHUNK + 1)];
};

static int tcp_open(struct lethe_transport *t)
{
    const struct lethe_transport_params *p = &t->params;
    uint64_t bytes = p->remote_size & ~(LETHE_PAGE_SIZE - 1);
    if (bytes == 0) {
        lethe_error("%s: remote_size %llu is less than a page", t->describe,
                    (unsigned long long)p->remote_size);
        return -EINVAL;
    }
    struct tcp_remote *r = calloc(1, sizeof(*r));
    if (!r)
        return -ENOMEM;
    char err[LETHE_MNC_ERR];
    struct lethe_mnc_region reg;
    int rc = lethe_mnc_connect(&r->ctl, p->node, p->connect_timeout_us, err);
    if (rc == 0)
        rc = lethe_mnc_handshake(&r->ctl, p->token, p->connect_timeout_us, err);
    if (rc == 0)
        rc = lethe_mnc_alloc(&r->ctl, bytes, 0, &reg, err);
    if (rc < 0) {
        lethe_error("%s: %s", t->describe, err);
        lethe_mnc_close(&r->ctl);
        free(r);
        return rc;
    }
    r->region_id = reg.id;
    memcpy(r->key, reg.key, sizeof(r->key));
    t->priv = r;
    t->pages = reg.pages;
    lethe_info("%s: region %llu of %llu bytes (%llu pages)", t->describe,
               (unsigned long long)reg.id, (unsigned long long)bytes,
               (unsigned long long)reg.pages);
    return 0;
}

static void tcp_close(struct lethe_transport *t)
{
    struct tcp_remote *r = t->priv;
    lethe_mnc_close(&r->ctl); /* the node frees the region and closes the channels' links */
    memset(r->key, 0, sizeof(r->key));
    free(r);
}

static int tcp_channel_open(struct lethe_channel *ch)
{
    struct lethe_transport *t = ch->t;
    struct tcp_remote *r = t->priv;
    struct tcp_chan *tc = calloc(1, sizeof(*tc));
    if (!tc)
        return -ENOMEM;
    char err[LETHE_MNC_ERR];
    uint64_t pages = 0;
    int rc = lethe_mnc_connect(&tc->c, t->params.node, t->params.connect_timeout_us, err);
    if (rc == 0)
        rc = lethe_mnc_handshake(&tc->c, t->params.token, t->params.connect_timeout_us, err);
    if (rc == 0)
        rc = lethe_mnc_attach(&tc->c, r->region_id, r->key, &pages, err);
    if (rc == 0 && pages != t->pages) {
        snprintf(err, sizeof(err), "ATTACH gave %llu pages, the region has %llu",
                 (unsigned long long)pages, (unsigned long long)t->pages);
        rc = -EPROTO;
    }
    if (rc == 0)
        rc = lethe_mnc_set_timeout(&tc->c, t->params.node_timeout_us ? t->params.node_timeout_us
                                                                     : TCP_IO_TIMEOUT_US);
    if (rc < 0) {
        lethe_channel_set_error(ch, "%s", err);
        lethe_mnc_close(&tc->c);
        free(tc);
        return rc;
    }
    ch->priv = tc;
    return 0;
}

static void tcp_channel_close(struct lethe_channel *ch)
{
    struct tcp_chan *tc = ch->priv;
    lethe_mnc_close(&tc->c);
    free(tc);
}

/* Sends the fixed parts (and a WRITE's pages) of every request of the operation in flight
 * that fits in the window. */
static int tcp_send_window(struct lethe_channel *ch)
{
    struct tcp_chan *tc = ch->priv;
    struct tcp_io *io = &tc->io;
    int iovcnt = 0;
    while (io->sent < io->nreq && io->sent - io->done < TCP_WINDOW) {
        unsigned at = io->sent * io->chunk, cnt = io->n - at < io->chunk ? io->n - at : io->chunk;
        uint8_t *buf = tc->req[io->sent % TCP_WINDOW];
        size_t len = lethe_proto_put_io(buf, io->type, io->first_id + io->sent, io->slots + at, cnt);
        tc->iov[iovcnt++] = (struct iovec){.iov_base = buf, .iov_len = len};
        if (io->type == LETHE_MSG_WRITE)
            for (unsigned i = 0; i < cnt; i++)
                tc->iov[iovcnt++] =
                    (struct iovec){.iov_base = io->pages[at + i], .iov_len = LETHE_PAGE_SIZE};
        io->sent++;
    }
    if (!iovcnt)
        return 0;
    char err[LETHE_MNC_ERR];
    int rc = lethe_mnc_send(&tc->c, tc->iov, iovcnt, err);
    if (rc < 0) {
        lethe_channel_set_error(ch, "memnode: %s, %s slot %llu", err, io->verb,
                                (unsigned long long)io->slots[io->done * io->chunk]);
        tc->broken = true;
    }
    return rc;
}

/* Starts moving n pages between the caller and the node: pipelined requests of TCP_CHUNK
 * pages, the first window of them sent here. tcp_io_finish collects the replies. */
static int tcp_io_start(struct lethe_channel *ch, uint8_t type, const uint64_t *slots,
                        void *const *pages, unsigned n)
{
    struct tcp_chan *tc = ch->priv;
    const char *verb = type == LETHE_MSG_READ ? "reading" : "writing";
    if (tc->broken) {
        lethe_channel_set_error(ch, "channel unusable after an earlier error, %s slot %llu", verb,
                                (unsigned long long)slots[0]);
        return -EPIPE;
    }
    unsigned chunk = tc->c.max_batch < TCP_CHUNK ? tc->c.max_batch : TCP_CHUNK;
    unsigned nreq = (n + chunk - 1) / chunk;
    tc->io = (struct tcp_io){.type = type, .verb = verb, .slots = slots, .pages = pages, .n = n,
                             .chunk = chunk, .nreq = nreq, .first_id = tc->c.next_id};
    tc->c.next_id += nreq;
    return tcp_send_window(ch);
}

/* Collects the replies of the operation started, oldest first, sending the requests left as
 * the window opens. */
static int tcp_io_finish(struct lethe_channel *ch)
{
    struct tcp_chan *tc = ch->priv;
    struct tcp_io *io = &tc->io;
    char err[LETHE_MNC_ERR];
    int rc = 0;
    while (io->done < io->nreq) {
        unsigned at = io->done * io->chunk, cnt = io->n - at < io->chunk ? io->n - at : io->chunk;
        uint64_t want = io->first_id + io->done;
        struct lethe_proto_hdr h;
        rc = lethe_mnc_recv_hdr(&tc->c, &h, err);
        if (rc < 0) {
            lethe_channel_set_error(ch, "memnode: %s, %s slot %llu (%u pages)", err, io->verb,
                                    (unsigned long long)io->slots[at], cnt);
            goto broken;
        }
        if (h.req_id != want || h.type != io->type) {
            lethe_channel_set_error(ch,
                                    "memnode replied to an unknown request (%s id %llu, "
                                    "expected %s id %llu), %s slot %llu",
                                    lethe_proto_type_name(h.type), (unsigned long long)h.req_id,
                                    lethe_proto_type_name(io->type), (unsigned long long)want,
                                    io->verb, (unsigned long long)io->slots[at]);
            rc = -EPROTO;
            goto broken;
        }
        long expect = lethe_proto_reply_len(io->type, cnt);
        if ((long)h.length != expect) {
            lethe_channel_set_error(ch, "memnode reply has %u bytes, expected %ld, %s slot %llu",
                                    h.length, expect, io->verb, (unsigned long long)io->slots[at]);
            rc = -EPROTO;
            goto broken;
        }
        if (io->type == LETHE_MSG_READ) {
            for (unsigned i = 0; i < cnt; i++)
                tc->iov[i] =
                    (struct iovec){.iov_base = io->pages[at + i], .iov_len = LETHE_PAGE_SIZE};
            rc = lethe_mnc_recvv(&tc->c, tc->iov, (int)cnt, h.length, err);
            if (rc < 0) {
                lethe_channel_set_error(ch, "memnode: %s, reading slot %llu (%u pages)", err,
                                        (unsigned long long)io->slots[at], cnt);
                goto broken;
            }
        }
        io->done++;
        rc = tcp_send_window(ch);
        if (rc < 0)
            return rc;
    }
    return 0;
broken:
    tc->broken = true;
    return rc;
}

static int tcp_io(struct lethe_channel *ch, uint8_t type, const uint64_t *slots, void *const *pages,
                  unsigned n)
{
    int rc = tcp_io_start(ch, type, slots, pages, n);
    return rc < 0 ? rc : tcp_io_finish(ch);
}

static int tcp_read_batch(struct lethe_channel *ch, const uint64_t *slots, void *const *pages,
                          unsigned n)
{
    return tcp_io(ch, LETHE_MSG_READ, slots, pages, n);
}

static int tcp_write_batch(struct lethe_channel *ch, const uint64_t *slots,
                           const void *const *pages, unsigned n)
{
    return tcp_io(ch, LETHE_MSG_WRITE, slots, (void *const *)pages, n);
}

static int tcp_write_post(struct lethe_channel *ch, const uint64_t *slots,
                          const void *const *pages, unsigned n)
{
    return tcp_io_start(ch, LETHE_MSG_WRITE, slots, (void *const *)pages, n);
}

/* The node never writes to the control connection unasked: readable means closed (or a
 * protocol error, which is as fatal). */
static const char *tcp_gone(struct lethe_transport *t)
{
    struct tcp_remote *r = t->priv;
    struct pollfd pfd = {.fd = r->ctl.fd, .events = POLLIN | POLLRDHUP};
    if (poll(&pfd, 1, 0) > 0 && (pfd.revents & (POLLIN | POLLRDHUP | POLLHUP | POLLERR)))
        return "memnode closed the control connection";
    return NULL;
}

const struct lethe_transport_ops lethe_transport_tcp_ops = {
    .gone = tcp_gone,
    .name = "tcp",
    .fork_reconnect = true,
    .open = tcp_open,
    .close = tcp_close,
    .channel_open = tcp_channel_open,
    .channel_close = tcp_channel_close,
    .read_batch = tcp_read_batch,
    .write_batch = tcp_write_batch,
    .write_post = tcp_write_post,
    .write_wait = tcp_io_finish,
};
