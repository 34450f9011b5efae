/* verbs.c — the `verbs` transport: one-sided RDMA READ/WRITE (libibverbs + librdmacm).
 *
 * params.node is the memory node's TCP address (its tcp_listen), as for `tcp`. open: a
 * control connection there authenticates with the token (challenge-response, auth.h) and
 * ALLOCs the region with LETHE_F_ALLOC_RDMA; the reply names the node's RDMA CM port and
 * gives the region key. The control connection stays open for the life of the transport
 * (the node frees the region when it closes).
 *
 * channel_open: an RDMA CM connection to the node's host at that port, with CONNECT private
 * data (region id, a sequence number that grows with every channel, and a proof made with
 * the region key); the node answers with ACCEPT private data (address, rkey and length of
 * this client's region) or REJECT (an errno). Channel opens are serialised so that sequence
 * numbers reach the node in order. Each channel has its own PD, CQ, RC QP and a registered
 * staging buffer of max_batch pages; data is copied between staging and the caller's pages
 * (pages the swapper moves with UFFDIO_MOVE cannot be pinned).
 *
 * An operation posts one signalled work request per page, busy-polls the CQ until all have
 * completed (or 30 s pass), and fails on the first bad completion with the slot and
 * ibv_wc_status_str(); the channel is unusable afterwards (its QP is in the error state).
 * A watcher thread on the control connection notes when the node goes away (killed,
 * stopped): operations then fail at once, rather than after the NIC's retries.
 *
 * Where no RDMA device exists, open fails at once with a message that says so.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <infiniband/verbs.h>
#include <netdb.h>
#include <poll.h>
#include <pthread.h>
#include <rdma/rdma_cma.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/log.h"
#include "rdma/client.h"
#include "rdma/transport_impl.h"

#define VERBS_IO_TIMEOUT_NS (30ULL * 1000000000ULL)
#define VERBS_DEFAULT_BATCH 64u
#define VERBS_MAX_STAGING   LETHE_PROTO_MAX_BATCH

struct verbs_remote {
    struct lethe_mnc ctl;
    struct lethe_mnc_watch watch; /* the control connection: notes the node's death */
    uint64_t region_id;
    uint8_t key[LETHE_REGION_KEY_LEN];
    char host[LETHE_ADDR_MAX];
    char port[8];
    pthread_mutex_t lock; /* serialises channel connects (sequence numbers in order) */
    uint64_t seq;
};

struct verbs_chan {
    struct rdma_event_channel *ec;
    struct rdma_cm_id *id;
    struct ibv_pd *pd;
    struct ibv_cq *cq;
    struct ibv_mr *mr;
    uint8_t *staging;
    unsigned cap;           /* pages of staging = most work requests in flight */
    struct ibv_sge *sge;    /* cap of each, on the heap: the fault path may run on a small */
    struct ibv_send_wr *wr; /* signal stack */
    uint64_t raddr, rlen;
    uint32_t rkey;
    bool connected;
    bool broken;
    /* the operations posted and not yet completed (verbs_wait) */
    enum ibv_wr_opcode op;
    const uint64_t *slots;
    unsigned posted;
};

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* Returns 0 when at least one RDMA device is present, else -ENODEV. */
static int have_device(void)
{
    int n = 0;
    struct ibv_device **list = ibv_get_device_list(&n);
    if (list)
        ibv_free_device_list(list);
    return list && n > 0 ? 0 : -ENODEV;
}

static int verbs_open(struct lethe_transport *t)
{
    const struct lethe_transport_params *p = &t->params;
    if (have_device() < 0) {
        lethe_error("%s: verbs: no RDMA device found (ibv_get_device_list returned none); "
                    "use transport = shm or tcp",
                    t->describe);
        return -ENODEV;
    }
    uint64_t bytes = p->remote_size & ~(LETHE_PAGE_SIZE - 1);
    if (bytes == 0) {
        lethe_error("%s: remote_size %llu is less than a page", t->describe,
                    (unsigned long long)p->remote_size);
        return -EINVAL;
    }
    struct verbs_remote *r = calloc(1, sizeof(*r));
    if (!r)
        return -ENOMEM;
    char err[LETHE_MNC_ERR];
    struct lethe_mnc_region reg;
    int rc = 0;
    if (lethe_split_hostport(p->node, r->host, sizeof(r->host), r->port, sizeof(r->port)) < 0) {
        snprintf(err, sizeof(err), "'%.64s' is not host:port (the memnode's tcp_listen)", p->node);
        rc = -EINVAL;
    }
    if (rc == 0)
        rc = lethe_mnc_connect(&r->ctl, p->node, p->connect_timeout_us, err);
    if (rc == 0)
        rc = lethe_mnc_handshake(&r->ctl, p->token, p->connect_timeout_us, err);
    if (rc == 0)
        rc = lethe_mnc_alloc(&r->ctl, bytes, LETHE_F_ALLOC_RDMA, &reg, err);
    if (rc == 0 && reg.rdma_port == 0) {
        snprintf(err, sizeof(err), "the memnode has no RDMA listener (rdma_listen = off)");
        rc = -ENOTSUP;
    }
    if (rc < 0) {
        lethe_error("%s: %s", t->describe, err);
        lethe_mnc_close(&r->ctl);
        free(r);
        return rc;
    }
    rc = lethe_mnc_watch_start(&r->watch, r->ctl.fd);
    if (rc < 0) {
        lethe_error("%s: cannot start the watcher thread: %s", t->describe, strerror(-rc));
        lethe_mnc_close(&r->ctl);
        free(r);
        return rc;
    }
    r->region_id = reg.id;
    memcpy(r->key, reg.key, sizeof(r->key));
    snprintf(r->port, sizeof(r->port), "%u", reg.rdma_port);
    pthread_mutex_init(&r->lock, NULL);
    t->priv = r;
    t->pages = reg.pages;
    lethe_info("%s: region %llu of %llu bytes; RDMA CM at %s:%s", t->describe,
               (unsigned long long)reg.id, (unsigned long long)bytes, r->host, r->port);
    return 0;
}

static void verbs_close(struct lethe_transport *t)
{
    struct verbs_remote *r = t->priv;
    lethe_mnc_watch_stop(&r->watch);
    lethe_mnc_close(&r->ctl);
    pthread_mutex_destroy(&r->lock);
    memset(r->key, 0, sizeof(r->key));
    free(r);
}

/* Waits for the next CM event on the channel's own event channel; copies what the caller
 * needs before acking it. Returns the event type, or a negative errno. */
static int wait_cm_event(struct verbs_chan *vc, uint64_t timeout_us, int *status, uint8_t *pdata,
                         size_t *plen)
{
    struct pollfd pfd = {.fd = vc->ec->fd, .events = POLLIN};
    int ms = timeout_us ? (int)((timeout_us + 999) / 1000) : -1;
    int n;
    do {
        n = poll(&pfd, 1, ms);
    } while (n < 0 && errno == EINTR);
    if (n == 0)
        return -ETIMEDOUT;
    if (n < 0)
        return -errno;
    struct rdma_cm_event *ev;
    if (rdma_get_cm_event(vc->ec, &ev) < 0)
        return -errno;
    int type = ev->event;
    *status = ev->status;
    if (pdata && plen) {
        size_t len = ev->param.conn.private_data_len;
        if (len > *plen)
            len = *plen;
        if (len && ev->param.conn.private_data)
            memcpy(pdata, ev->param.conn.private_data, len);
        *plen = ev->param.conn.private_data ? len : 0;
    }
    rdma_ack_cm_event(ev);
    return type;
}

static void chan_teardown(struct verbs_chan *vc)
{
    if (vc->connected)
        rdma_disconnect(vc->id);
    if (vc->id && vc->id->qp)
        rdma_destroy_qp(vc->id);
    if (vc->mr)
        ibv_dereg_mr(vc->mr);
    free(vc->staging);
    free(vc->sge);
    free(vc->wr);
    if (vc->cq)
        ibv_destroy_cq(vc->cq);
    if (vc->pd)
        ibv_dealloc_pd(vc->pd);
    if (vc->id)
        rdma_destroy_id(vc->id);
    if (vc->ec)
        rdma_destroy_event_channel(vc->ec);
    free(vc);
}

/* Expects the CM event `want`; anything else fails with a sentence in err. */
static int expect_event(struct verbs_chan *vc, uint64_t timeout_us, int want, uint8_t *pdata,
                        size_t *plen, char *err, size_t errlen)
{
    int status = 0;
    int type = wait_cm_event(vc, timeout_us, &status, pdata, plen);
    if (type == want)
        return 0;
    if (type < 0) {
        snprintf(err, errlen, "waiting for %s: %s", rdma_event_str(want), strerror(-type));
        return type;
    }
    if (type == RDMA_CM_EVENT_REJECTED) {
        int why = pdata && plen ? lethe_verbs_get_reject(pdata, *plen) : -EPROTO;
        if (why > 0) {
            snprintf(err, errlen, "memnode rejected the RDMA connection: %s (%s)", strerror(why),
                     strerrorname_np(why) ? strerrorname_np(why) : "?");
            return -why;
        }
        snprintf(err, errlen, "RDMA connection rejected (status %d): is rdma_listen right?",
                 status);
        return -ECONNREFUSED;
    }
    snprintf(err, errlen, "expected %s, got %s (status %d)", rdma_event_str(want),
             rdma_event_str(type), status);
    return -EPROTO;
}

static int verbs_channel_open(struct lethe_channel *ch)
{
    struct lethe_transport *t = ch->t;
    struct verbs_remote *r = t->priv;
    uint64_t tmo = t->params.connect_timeout_us ? t->params.connect_timeout_us : 5000000;
    int tmo_ms = (int)(tmo / 1000);
    char err[200] = "";
    int rc = 0;
    struct verbs_chan *vc = calloc(1, sizeof(*vc));
    if (!vc)
        return -ENOMEM;
    vc->cap = t->params.max_batch ? t->params.max_batch : VERBS_DEFAULT_BATCH;
    if (vc->cap > VERBS_MAX_STAGING)
        vc->cap = VERBS_MAX_STAGING;
    vc->sge = calloc(vc->cap, sizeof(*vc->sge));
    vc->wr = calloc(vc->cap, sizeof(*vc->wr));
    if (!vc->sge || !vc->wr) {
        free(vc->sge);
        free(vc->wr);
        free(vc);
        return -ENOMEM;
    }

    struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV}, *res;
    int gai = getaddrinfo(r->host, r->port, &hints, &res);
    if (gai) {
        lethe_channel_set_error(ch, "cannot resolve '%s': %s", r->host, gai_strerror(gai));
        chan_teardown(vc);
        return -EHOSTUNREACH;
    }
    vc->ec = rdma_create_event_channel();
    if (!vc->ec || rdma_create_id(vc->ec, &vc->id, NULL, RDMA_PS_TCP) < 0) {
        rc = -errno;
        snprintf(err, sizeof(err), "cannot create an RDMA CM id: %s", strerror(errno));
    }
    if (rc == 0 && rdma_resolve_addr(vc->id, NULL, res->ai_addr, tmo_ms) < 0) {
        rc = -errno;
        snprintf(err, sizeof(err), "rdma_resolve_addr: %s", strerror(errno));
    }
    freeaddrinfo(res);
    if (rc == 0)
        rc = expect_event(vc, tmo, RDMA_CM_EVENT_ADDR_RESOLVED, NULL, NULL, err, sizeof(err));
    if (rc == 0 && rdma_resolve_route(vc->id, tmo_ms) < 0) {
        rc = -errno;
        snprintf(err, sizeof(err), "rdma_resolve_route: %s", strerror(errno));
    }
    if (rc == 0)
        rc = expect_event(vc, tmo, RDMA_CM_EVENT_ROUTE_RESOLVED, NULL, NULL, err, sizeof(err));
    struct ibv_device_attr da;
    memset(&da, 0, sizeof(da));
    if (rc == 0) {
        ibv_query_device(vc->id->verbs, &da);
        vc->pd = ibv_alloc_pd(vc->id->verbs);
        vc->cq = vc->pd ? ibv_create_cq(vc->id->verbs, (int)vc->cap, NULL, NULL, 0) : NULL;
        size_t bytes = (size_t)vc->cap * LETHE_PAGE_SIZE;
        vc->staging = vc->cq ? aligned_alloc(LETHE_PAGE_SIZE, bytes) : NULL;
        vc->mr =
            vc->staging ? ibv_reg_mr(vc->pd, vc->staging, bytes, IBV_ACCESS_LOCAL_WRITE) : NULL;
        struct ibv_qp_init_attr qa = {
            .send_cq = vc->cq,
            .recv_cq = vc->cq,
            .cap = {.max_send_wr = vc->cap, .max_recv_wr = 1, .max_send_sge = 1, .max_recv_sge = 1},
            .qp_type = IBV_QPT_RC,
            .sq_sig_all = 1,
        };
        if (!vc->mr || rdma_create_qp(vc->id, vc->pd, &qa) < 0) {
            rc = errno ? -errno : -ENOMEM;
            snprintf(err, sizeof(err), "cannot set up PD/CQ/QP/staging (%u pages): %s", vc->cap,
                     strerror(-rc));
        }
    }
    if (rc == 0) {
        uint8_t pd[LETHE_VERBS_CONNECT_LEN], apd[256];
        size_t alen = sizeof(apd);
        uint8_t depth = (uint8_t)(da.max_qp_init_rd_atom > 16 ? 16 : da.max_qp_init_rd_atom);
        struct rdma_conn_param cp = {
            .private_data = pd,
            .private_data_len = sizeof(pd),
            .initiator_depth = depth ? depth : 1,
            .responder_resources = depth ? depth : 1,
            .retry_count = 7,
            .rnr_retry_count = 7,
        };
        /* The lock keeps sequence numbers in connect order: the node refuses a number not
         * higher than the last it accepted for this region. */
        pthread_mutex_lock(&r->lock);
        struct lethe_verbs_connect c = {.region_id = r->region_id, .seq = ++r->seq};
        lethe_auth_verbs_proof(r->key, c.region_id, c.seq, c.proof);
        lethe_verbs_put_connect(pd, &c);
        if (rdma_connect(vc->id, &cp) < 0) {
            rc = -errno;
            snprintf(err, sizeof(err), "rdma_connect: %s", strerror(errno));
        }
        if (rc == 0)
            rc = expect_event(vc, tmo, RDMA_CM_EVENT_ESTABLISHED, apd, &alen, err, sizeof(err));
        pthread_mutex_unlock(&r->lock);
        struct lethe_verbs_accept acc;
        if (rc == 0) {
            vc->connected = true;
            if (lethe_verbs_get_accept(apd, alen, &acc) < 0) {
                snprintf(err, sizeof(err), "memnode accepted without Lethe ACCEPT data");
                rc = -EPROTO;
            } else if (acc.length < t->pages * LETHE_PAGE_SIZE) {
                snprintf(err, sizeof(err), "memnode's region is %llu bytes, expected %llu",
                         (unsigned long long)acc.length,
                         (unsigned long long)(t->pages * LETHE_PAGE_SIZE));
                rc = -EPROTO;
            } else {
                vc->raddr = acc.addr;
                vc->rkey = acc.rkey;
                vc->rlen = acc.length;
            }
        }
    }
    if (rc < 0) {
        lethe_channel_set_error(ch, "RDMA CM %s:%s: %s", r->host, r->port, err);
        chan_teardown(vc);
        return rc;
    }
    ch->priv = vc;
    return 0;
}

static void verbs_channel_close(struct lethe_channel *ch)
{
    chan_teardown(ch->priv);
}

/* Posts n one-sided operations between staging and the remote slots; verbs_wait waits for
 * them. */
static int verbs_post(struct lethe_channel *ch, enum ibv_wr_opcode op, const uint64_t *slots,
                         unsigned n)
{
    struct verbs_chan *vc = ch->priv;
    struct verbs_remote *r = ch->t->priv;
    const char *verb = op == IBV_WR_RDMA_READ ? "RDMA READ" : "RDMA WRITE";
    const char *gone = lethe_mnc_watch_gone(&r->watch);
    if (gone) {
        lethe_channel_set_error(ch, "%s before the %s of slot %llu", gone, verb,
                                (unsigned long long)slots[0]);
        vc->broken = true;
        return -ECONNRESET;
    }
    struct ibv_sge *sge = vc->sge;
    struct ibv_send_wr *wr = vc->wr, *bad = NULL;
    for (unsigned i = 0; i < n; i++) {
        sge[i] = (struct ibv_sge){.addr = (uintptr_t)(vc->staging + (size_t)i * LETHE_PAGE_SIZE),
                                  .length = LETHE_PAGE_SIZE,
                                  .lkey = vc->mr->lkey};
        wr[i] = (struct ibv_send_wr){
            .wr_id = i,
            .next = i + 1 < n ? &wr[i + 1] : NULL,
            .sg_list = &sge[i],
            .num_sge = 1,
            .opcode = op,
            .send_flags = IBV_SEND_SIGNALED,
            .wr.rdma = {.remote_addr = vc->raddr + slots[i] * LETHE_PAGE_SIZE, .rkey = vc->rkey},
        };
    }
    int rc = ibv_post_send(vc->id->qp, wr, &bad);
    if (rc) {
        lethe_channel_set_error(ch, "memnode: cannot post %s of slot %llu: %s", verb,
                                (unsigned long long)slots[0], strerror(rc));
        vc->broken = true;
        return -rc;
    }
    vc->op = op;
    vc->slots = slots;
    vc->posted = n;
    return 0;
}

/* Waits for the operations verbs_post posted. */
static int verbs_wait(struct lethe_channel *ch)
{
    struct verbs_chan *vc = ch->priv;
    struct verbs_remote *r = ch->t->priv;
    const char *verb = vc->op == IBV_WR_RDMA_READ ? "RDMA READ" : "RDMA WRITE";
    const uint64_t *slots = vc->slots;
    unsigned n = vc->posted;
    vc->posted = 0;
    const char *gone;
    unsigned done = 0;
    uint64_t deadline = 0;
    struct ibv_wc wc[16];
    for (unsigned spins = 0; done < n; spins++) {
        int got = ibv_poll_cq(vc->cq, 16, wc);
        if (got < 0) {
            lethe_channel_set_error(ch, "memnode: polling the CQ failed during %s of slot %llu",
                                    verb, (unsigned long long)slots[0]);
            vc->broken = true;
            return -EIO;
        }
        for (int i = 0; i < got; i++) {
            if (wc[i].status != IBV_WC_SUCCESS) {
                unsigned at = wc[i].wr_id < n ? (unsigned)wc[i].wr_id : 0;
                lethe_channel_set_error(ch, "memnode: %s of slot %llu failed: %s", verb,
                                        (unsigned long long)slots[at],
                                        ibv_wc_status_str(wc[i].status));
                vc->broken = true;
                return -EIO;
            }
        }
        done += (unsigned)got;
        if (got == 0 && (spins & 1023) == 1023) {
            /* A dead node's QP makes the NIC retry for seconds; its control connection says
             * so at once. */
            gone = lethe_mnc_watch_gone(&r->watch);
            if (gone) {
                lethe_channel_set_error(ch, "%s during the %s of slot %llu", gone, verb,
                                        (unsigned long long)slots[0]);
                vc->broken = true;
                return -ECONNRESET;
            }
            uint64_t now = now_ns();
            if (!deadline) {
                deadline = now + VERBS_IO_TIMEOUT_NS;
            } else if (now > deadline) {
                lethe_channel_set_error(ch, "memnode: %s of slot %llu not completed in 30 s", verb,
                                        (unsigned long long)slots[0]);
                vc->broken = true;
                return -ETIMEDOUT;
            }
        }
    }
    return 0;
}

static int post_and_wait(struct lethe_channel *ch, enum ibv_wr_opcode op, const uint64_t *slots,
                         unsigned n)
{
    int rc = verbs_post(ch, op, slots, n);
    return rc < 0 ? rc : verbs_wait(ch);
}

static int verbs_read_batch(struct lethe_channel *ch, const uint64_t *slots, void *const *pages,
                            unsigned n)
{
    struct verbs_chan *vc = ch->priv;
    if (vc->broken) {
        lethe_channel_set_error(ch, "channel unusable after an earlier error, reading slot %llu",
                                (unsigned long long)slots[0]);
        return -EPIPE;
    }
    for (unsigned at = 0; at < n; at += vc->cap) {
        unsigned cnt = n - at < vc->cap ? n - at : vc->cap;
        int rc = post_and_wait(ch, IBV_WR_RDMA_READ, slots + at, cnt);
        if (rc < 0)
            return rc;
        for (unsigned i = 0; i < cnt; i++)
            memcpy(pages[at + i], vc->staging + (size_t)i * LETHE_PAGE_SIZE, LETHE_PAGE_SIZE);
    }
    return 0;
}

/* Writes all but the last staging-full of pages, and posts the last one: verbs_wait
 * completes it. */
static int verbs_write_post(struct lethe_channel *ch, const uint64_t *slots,
                            const void *const *pages, unsigned n)
{
    struct verbs_chan *vc = ch->priv;
    if (vc->broken) {
        lethe_channel_set_error(ch, "channel unusable after an earlier error, writing slot %llu",
                                (unsigned long long)slots[0]);
        return -EPIPE;
    }
    for (unsigned at = 0; at < n; at += vc->cap) {
        unsigned cnt = n - at < vc->cap ? n - at : vc->cap;
        for (unsigned i = 0; i < cnt; i++)
            memcpy(vc->staging + (size_t)i * LETHE_PAGE_SIZE, pages[at + i], LETHE_PAGE_SIZE);
        int rc = verbs_post(ch, IBV_WR_RDMA_WRITE, slots + at, cnt);
        if (rc == 0 && at + cnt < n)
            rc = verbs_wait(ch);
        if (rc < 0)
            return rc;
    }
    return 0;
}

static int verbs_write_batch(struct lethe_channel *ch, const uint64_t *slots,
                             const void *const *pages, unsigned n)
{
    int rc = verbs_write_post(ch, slots, pages, n);
    return rc < 0 ? rc : verbs_wait(ch);
}

static const char *verbs_gone(struct lethe_transport *t)
{
    struct verbs_remote *r = t->priv;
    return lethe_mnc_watch_gone(&r->watch);
}

const struct lethe_transport_ops lethe_transport_verbs_ops = {
    .name = "verbs",
    .gone = verbs_gone,
    .open = verbs_open,
    .close = verbs_close,
    .channel_open = verbs_channel_open,
    .channel_close = verbs_channel_close,
    .read_batch = verbs_read_batch,
    .write_batch = verbs_write_batch,
    .write_post = verbs_write_post,
    .write_wait = verbs_wait,
};
