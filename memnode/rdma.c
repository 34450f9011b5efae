/* rdma.c — the memory node's RDMA CM listener (rdma_listen): clients read and write their
 * region with one-sided RDMA, so after the connection is set up no node CPU is involved.
 *
 * At start-up the node picks its RDMA device (the one rdma_listen's address is on, or the
 * only one) and asks it whether it pages on demand (ODP). Registration is kept out of the
 * connect path, where a client waits with a short timeout:
 *  - with ODP, a region is a memfd as for the other transports and its MR (ON_DEMAND) is
 *    registered when the region is allocated, before the ALLOC reply; that costs nothing,
 *    pages come when the NIC touches them;
 *  - without ODP, every page of an MR must exist and be pinned first, and allocating them
 *    is slow (5.5 s per GiB in the soft-RoCE guest): so the node takes all it lends (its
 *    capacity) at start-up, populated and locked (arena.h), and cuts regions from it. The
 *    MR registered at ALLOC then pins pages that are already there: 0.07 s per GiB there.
 *
 * A client first holds a region through the TCP or Unix control connection (ALLOC with
 * LETHE_F_ALLOC_RDMA), which proves its token. Each of its channels then connects here with
 * CONNECT private data naming the region, a sequence number and a proof made with the region
 * key (auth.h); the node checks the proof in constant time and that the sequence number is
 * higher than any it accepted for that region (so a recorded connect cannot be replayed),
 * creates the channel's QP and accepts with ACCEPT private data: address, rkey and length of
 * that region only. Everything else is rejected with REJECT private data (errno).
 *
 * Isolation between clients rests on protection domains, not on the secrecy of rkeys: an
 * rkey is honoured on every QP of the PD its MR belongs to, and rkeys are small and easy to
 * guess. So each region has its own PD, allocated with its MR at ALLOC; that MR (which
 * covers the region's pages and nothing else, even when they are cut from the arena) and
 * the QPs of the region's channels are created in it. A channel that names another region's
 * rkey then gets a remote access error from the NIC, without the node's CPU. The completion
 * queue, which no PD owns, is shared.
 *
 * A region's channels are disconnected (their QPs destroyed), its MR deregistered and its PD
 * freed before its memory goes (and, for an arena span, is zeroed for the next client).
 * Without an RDMA device, start-up fails with a message that says so.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <fcntl.h>
#include <infiniband/verbs.h>
#include <netdb.h>
#include <rdma/rdma_cma.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "arena.h"
#include "core/log.h"
#include "node_impl.h"
#include "rdma/client.h"
#include "rdma/proto.h"

struct mn_rdma_dev {
    struct ibv_context *ctx;
    struct ibv_cq *cq; /* required by every QP; one-sided traffic completes nothing here */
    bool odp;          /* on-demand paging for RC RDMA READ/WRITE */
    uint8_t max_rd_atom;
};

struct mn_vchan {
    struct lethe_memnode *node;
    struct rdma_cm_id *id;
    struct mn_region *region;
    bool established;
    struct mn_vchan *prev, *next;
};

struct mn_rdma_region {
    struct ibv_pd *pd; /* this region's alone: its MR and its channels' QPs */
    struct ibv_mr *mr;
    struct mn_vchan *chans;
};

struct mn_rdma {
    struct rdma_event_channel *ec;
    struct rdma_cm_id *listen_id;
    struct event *ev;
    struct ibv_context **devlist; /* rdma_get_devices(), held while dev.ctx may come from it */
    struct mn_rdma_dev dev;       /* the device every region is registered on */
};

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static const char *dev_name(const struct mn_rdma_dev *d)
{
    return ibv_get_device_name(d->ctx->device);
}

static int dev_open(struct mn_rdma_dev *d, struct ibv_context *ctx)
{
    d->ctx = ctx;
    d->cq = ibv_create_cq(ctx, 16, NULL, NULL, 0);
    if (!d->cq) {
        lethe_error("verbs: cannot create a CQ on %s", ibv_get_device_name(ctx->device));
        return -ENOMEM;
    }
    struct ibv_device_attr_ex ax;
    memset(&ax, 0, sizeof(ax));
    if (ibv_query_device_ex(ctx, NULL, &ax) == 0) {
        uint32_t need = IBV_ODP_SUPPORT_READ | IBV_ODP_SUPPORT_WRITE;
        d->odp = (ax.odp_caps.general_caps & IBV_ODP_SUPPORT) &&
                 (ax.odp_caps.per_transport_caps.rc_odp_caps & need) == need;
        d->max_rd_atom =
            (uint8_t)(ax.orig_attr.max_qp_rd_atom > 255 ? 255 : ax.orig_attr.max_qp_rd_atom);
    }
    return 0;
}

static void vchan_free(struct mn_vchan *v)
{
    struct mn_rdma_region *rr = v->region ? v->region->rdma : NULL;
    if (rr) {
        if (v->prev)
            v->prev->next = v->next;
        else
            rr->chans = v->next;
        if (v->next)
            v->next->prev = v->prev;
    }
    if (v->established)
        mn_count(&v->node->st.rdma_channels, -1);
    if (v->id->qp)
        rdma_destroy_qp(v->id);
    rdma_destroy_id(v->id);
    free(v);
}

static void reject(struct lethe_memnode *n, struct rdma_cm_id *id, int err, const char *why,
                   bool auth)
{
    uint8_t pd[LETHE_VERBS_REJECT_LEN];
    lethe_verbs_put_reject(pd, err);
    rdma_reject(id, pd, sizeof(pd));
    rdma_destroy_id(id);
    mn_count(auth ? &n->st.auth_failures : &n->st.errors, 1);
    lethe_warn("verbs: connection refused (%s): %s", strerrorname_np(err), why);
}

int mn_rdma_region_register(struct lethe_memnode *n, struct mn_region *reg, char *why,
                            size_t whylen)
{
    struct mn_rdma_dev *dev = &n->rdma->dev;
    /* Outside the arena and without ODP (a region that is also shm), the pages are
     * allocated here: refuse what cannot be, rather than meet the OOM killer. */
    if (!reg->span && !dev->odp) {
        int rc = mn_mem_check_pinnable(reg->bytes, why, whylen);
        if (rc < 0)
            return rc;
    }
    struct mn_rdma_region *rr = calloc(1, sizeof(*rr));
    if (!rr) {
        snprintf(why, whylen, "out of memory");
        return -ENOMEM;
    }
    uint64_t t0 = now_ns();
    rr->pd = ibv_alloc_pd(dev->ctx);
    if (!rr->pd) {
        int err = errno ? errno : ENOMEM;
        snprintf(why, whylen, "ibv_alloc_pd on %s: %s", dev_name(dev), strerror(err));
        free(rr);
        return -err;
    }
    int access = IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_READ | IBV_ACCESS_REMOTE_WRITE;
    if (dev->odp && !reg->span)
        rr->mr = ibv_reg_mr(rr->pd, reg->base, reg->bytes, access | IBV_ACCESS_ON_DEMAND);
    if (!rr->mr)
        rr->mr = ibv_reg_mr(rr->pd, reg->base, reg->bytes, access);
    if (!rr->mr) {
        int err = errno ? errno : ENOMEM;
        snprintf(why, whylen, "ibv_reg_mr of %llu bytes on %s: %s", (unsigned long long)reg->bytes,
                 dev_name(dev), strerror(err));
        ibv_dealloc_pd(rr->pd);
        free(rr);
        return -err;
    }
    reg->rdma = rr;
    reg->rdma_reg_ns = now_ns() - t0;
    return 0;
}

static void on_connect_request(struct lethe_memnode *n, struct rdma_cm_id *id, const uint8_t *pdata,
                               size_t plen, uint8_t resp_res, uint8_t init_depth)
{
    struct lethe_verbs_connect req;
    if (lethe_verbs_get_connect(pdata, plen, &req) < 0) {
        reject(n, id, EPROTO, "private data is not a Lethe CONNECT", false);
        return;
    }
    struct mn_region *reg = mn_region_find(n, req.region_id);
    uint8_t want[LETHE_MAC_LEN];
    bool ok = false;
    if (reg) {
        lethe_auth_verbs_proof(reg->key, req.region_id, req.seq, want);
        ok = lethe_ct_equal(want, req.proof, LETHE_MAC_LEN) && req.seq > reg->verbs_seq;
    }
    if (!ok) {
        reject(n, id, EPERM, "unknown region, wrong proof or a replayed sequence number", true);
        return;
    }
    struct mn_rdma_region *rr = reg->rdma;
    struct mn_rdma_dev *dev = &n->rdma->dev;
    if (!rr) {
        reject(n, id, EINVAL, "the region was not allocated for RDMA (ALLOC without ALLOC_RDMA)",
               false);
        return;
    }
    if (id->verbs != dev->ctx) {
        reject(n, id, ENOTSUP, "the connection came through another device than rdma_listen's",
               false);
        return;
    }
    unsigned nchans = 0;
    for (struct mn_vchan *c = rr->chans; c; c = c->next)
        nchans++;
    if (nchans >= MN_MAX_REGION_CONNS) {
        reject(n, id, EUSERS, "too many RDMA channels on this region", false);
        return;
    }
    struct ibv_qp_init_attr qa = {
        .send_cq = dev->cq,
        .recv_cq = dev->cq,
        .cap = {.max_send_wr = 1, .max_recv_wr = 1, .max_send_sge = 1, .max_recv_sge = 1},
        .qp_type = IBV_QPT_RC,
    };
    /* In the region's own PD: this QP can reach that region's MR and no other. */
    struct mn_vchan *v = calloc(1, sizeof(*v));
    if (!v || rdma_create_qp(id, rr->pd, &qa) < 0) {
        free(v);
        reject(n, id, ENOMEM, "cannot create a QP", false);
        return;
    }
    v->node = n;
    v->id = id;
    v->region = reg;
    id->context = v;
    struct lethe_verbs_accept acc = {
        .addr = (uint64_t)(uintptr_t)reg->base, .rkey = rr->mr->rkey, .length = reg->bytes};
    uint8_t apd[LETHE_VERBS_ACCEPT_LEN];
    lethe_verbs_put_accept(apd, &acc);
    struct rdma_conn_param cp = {
        .private_data = apd,
        .private_data_len = sizeof(apd),
        .responder_resources = resp_res < dev->max_rd_atom ? resp_res : dev->max_rd_atom,
        .initiator_depth = init_depth < dev->max_rd_atom ? init_depth : dev->max_rd_atom,
        .rnr_retry_count = 7,
    };
    if (rdma_accept(id, &cp) < 0) {
        lethe_warn("verbs: rdma_accept for region %llu: %s", (unsigned long long)reg->id,
                   strerror(errno));
        rdma_destroy_qp(id);
        rdma_destroy_id(id);
        free(v);
        return;
    }
    reg->verbs_seq = req.seq;
    v->next = rr->chans;
    if (rr->chans)
        rr->chans->prev = v;
    rr->chans = v;
}

static void rdma_event_cb(evutil_socket_t fd, short what, void *arg)
{
    struct lethe_memnode *n = arg;
    struct rdma_cm_event *ev;
    while (rdma_get_cm_event(n->rdma->ec, &ev) == 0) {
        enum rdma_cm_event_type type = ev->event;
        struct rdma_cm_id *id = ev->id;
        uint8_t pdata[256];
        size_t plen = 0;
        uint8_t resp_res = 0, init_depth = 0;
        if (type == RDMA_CM_EVENT_CONNECT_REQUEST) {
            plen = ev->param.conn.private_data_len;
            if (plen > sizeof(pdata))
                plen = sizeof(pdata);
            if (plen)
                memcpy(pdata, ev->param.conn.private_data, plen);
            resp_res = ev->param.conn.responder_resources;
            init_depth = ev->param.conn.initiator_depth;
        }
        /* Acked before acting: rdma_destroy_id() waits for its id's events to be acked. */
        rdma_ack_cm_event(ev);
        struct mn_vchan *v = id && id != n->rdma->listen_id ? id->context : NULL;
        switch (type) {
        case RDMA_CM_EVENT_CONNECT_REQUEST:
            on_connect_request(n, id, pdata, plen, resp_res, init_depth);
            break;
        case RDMA_CM_EVENT_ESTABLISHED:
            if (v && !v->established) {
                v->established = true;
                mn_count(&n->st.rdma_channels, 1);
                lethe_debug("verbs: channel of region %llu established",
                            (unsigned long long)v->region->id);
            }
            break;
        case RDMA_CM_EVENT_DISCONNECTED:
        case RDMA_CM_EVENT_CONNECT_ERROR:
        case RDMA_CM_EVENT_UNREACHABLE:
        case RDMA_CM_EVENT_REJECTED:
        case RDMA_CM_EVENT_TIMEWAIT_EXIT:
            if (v)
                vchan_free(v);
            break;
        case RDMA_CM_EVENT_DEVICE_REMOVAL:
            lethe_error("verbs: RDMA device removed; RDMA clients are cut off");
            if (v)
                vchan_free(v);
            break;
        default:
            break;
        }
    }
}

/* The device regions are registered on: the one the listener is bound to (rdma_listen is
 * an address of its interface), or else the only one there is. */
static struct ibv_context *home_device(struct mn_rdma *r)
{
    if (r->listen_id->verbs)
        return r->listen_id->verbs;
    int nd = 0;
    r->devlist = rdma_get_devices(&nd);
    if (r->devlist && nd == 1)
        return r->devlist[0];
    lethe_error("rdma_listen: the address is on no RDMA device and there are %d devices: "
                "listen on an address of the RDMA device's interface",
                nd);
    return NULL;
}

/* Without ODP, the memory the node lends is allocated and locked now (arena.h). */
static int make_arena(struct lethe_memnode *n)
{
    struct mn_rdma_dev *d = &n->rdma->dev;
    char cap[32], why[256];
    lethe_format_size(n->cfg.capacity, cap, sizeof(cap));
    struct mn_arena_info info;
    int rc = mn_mem_check_pinnable(n->cfg.capacity, why, sizeof(why));
    if (rc == 0) {
        lethe_info("verbs: %s has no on-demand paging: allocating and locking the %s this node "
                   "lends (capacity) now, so that allocations and connects need not wait for it",
                   dev_name(d), cap);
        rc = mn_arena_create(n->cfg.capacity, &n->arena, &info, why, sizeof(why));
    }
    if (rc < 0) {
        lethe_error("verbs: %s has no on-demand paging, so the node pins the %s it lends "
                    "(capacity) at start-up, and cannot: %s; lower capacity",
                    dev_name(d), cap, why);
        return rc;
    }
    lethe_info("verbs: %s of arena ready in %.2f s (pages allocated by %u threads in %.2f s, "
               "locked in %.2f s); regions are cut from it and zeroed when they come back",
               cap, (info.populate_ns + info.lock_ns) / 1e9, info.threads, info.populate_ns / 1e9,
               info.lock_ns / 1e9);
    return 0;
}

int mn_rdma_start(struct lethe_memnode *n)
{
    int ndev = 0;
    struct ibv_device **list = ibv_get_device_list(&ndev);
    if (list)
        ibv_free_device_list(list);
    if (!list || ndev == 0) {
        lethe_error("verbs: no RDMA device found (ibv_get_device_list returned none); "
                    "set rdma_listen = off and let clients use transport = shm or tcp");
        return -ENODEV;
    }
    char host[LETHE_ADDR_MAX], port[16];
    if (lethe_split_hostport(n->cfg.rdma_listen, host, sizeof(host), port, sizeof(port)) < 0) {
        lethe_error("rdma_listen '%s' is not host:port", n->cfg.rdma_listen);
        return -EINVAL;
    }
    struct mn_rdma *r = calloc(1, sizeof(*r));
    if (!r)
        return -ENOMEM;
    n->rdma = r;
    struct addrinfo hints = {.ai_flags = AI_PASSIVE | AI_NUMERICSERV, .ai_socktype = SOCK_STREAM},
                    *res = NULL;
    int gai = getaddrinfo(host, port, &hints, &res);
    if (gai) {
        lethe_error("rdma_listen %s: cannot resolve '%s': %s", n->cfg.rdma_listen, host,
                    gai_strerror(gai));
        return -EADDRNOTAVAIL;
    }
    int rc = 0;
    r->ec = rdma_create_event_channel();
    if (!r->ec || rdma_create_id(r->ec, &r->listen_id, NULL, RDMA_PS_TCP) < 0 ||
        rdma_bind_addr(r->listen_id, res->ai_addr) < 0 || rdma_listen(r->listen_id, 128) < 0) {
        rc = errno ? -errno : -EIO;
        lethe_error("rdma_listen %s: cannot listen: %s", n->cfg.rdma_listen, strerror(-rc));
    }
    freeaddrinfo(res);
    if (rc < 0)
        return rc;
    struct ibv_context *ctx = home_device(r);
    if (!ctx)
        return -ENODEV;
    rc = dev_open(&r->dev, ctx);
    if (rc < 0)
        return rc;
    if (r->dev.odp)
        lethe_info("verbs: using %s with on-demand paging: a region's MR is registered when it "
                   "is allocated, its pages come when they are touched",
                   dev_name(&r->dev));
    else if ((rc = make_arena(n)) < 0)
        return rc;
    int fl = fcntl(r->ec->fd, F_GETFL);
    fcntl(r->ec->fd, F_SETFL, fl | O_NONBLOCK);
    r->ev = event_new(n->base, r->ec->fd, EV_READ | EV_PERSIST, rdma_event_cb, n);
    if (!r->ev || event_add(r->ev, NULL) < 0)
        return -ENOMEM;
    n->rdma_port = ntohs(rdma_get_src_port(r->listen_id));
    snprintf(n->rdma_address, sizeof(n->rdma_address), strchr(host, ':') ? "[%s]:%u" : "%s:%u",
             host, n->rdma_port);
    return 0;
}

void mn_rdma_region_release(struct lethe_memnode *n, struct mn_region *reg)
{
    struct mn_rdma_region *rr = reg->rdma;
    if (!rr)
        return;
    while (rr->chans) {
        struct mn_vchan *v = rr->chans;
        rdma_disconnect(v->id);
        vchan_free(v);
    }
    /* The QPs are gone with the channels: the PD holds only the MR now. */
    ibv_dereg_mr(rr->mr);
    int rc = ibv_dealloc_pd(rr->pd);
    if (rc != 0)
        lethe_warn("verbs: ibv_dealloc_pd of region %llu: %s", (unsigned long long)reg->id,
                   strerror(rc));
    free(rr);
    reg->rdma = NULL;
}

void mn_rdma_stop(struct lethe_memnode *n)
{
    struct mn_rdma *r = n->rdma;
    if (!r)
        return;
    if (r->ev)
        event_free(r->ev);
    if (r->dev.cq)
        ibv_destroy_cq(r->dev.cq);
    if (r->listen_id)
        rdma_destroy_id(r->listen_id);
    if (r->devlist)
        rdma_free_devices(r->devlist);
    if (r->ec)
        rdma_destroy_event_channel(r->ec);
    free(r);
    n->rdma = NULL;
    mn_arena_destroy(n->arena); /* every region is gone: nothing maps it any more */
    n->arena = NULL;
}
