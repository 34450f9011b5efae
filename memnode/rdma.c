/* rdma.c — the memory node's RDMA CM listener (rdma_listen): clients read and write their
 * region with one-sided RDMA, so after the connection is set up no node CPU is involved.
 *
 * A client first holds a region through the TCP or Unix control connection (ALLOC with
 * LETHE_F_ALLOC_RDMA), which proves its token. Each of its channels then connects here with
 * CONNECT private data naming the region, a sequence number and a proof made with the region
 * key (auth.h); the node checks the proof in constant time and that the sequence number is
 * higher than any it accepted for that region (so a recorded connect cannot be replayed),
 * registers the region (once per region, on first connect: IBV_ACCESS_ON_DEMAND where the
 * device supports it, else pinned) and accepts with ACCEPT private data: address, rkey and
 * length of that region only. Everything else is rejected with REJECT private data (errno).
 *
 * Isolation between clients rests on protection domains, not on the secrecy of rkeys: an
 * rkey is honoured on every QP of the PD its MR belongs to, and rkeys are small and easy to
 * guess. So each region has its own PD, allocated with its MR on the first connect; that MR
 * and the QPs of the region's channels (and nothing else) are created in it. A channel that
 * names another region's rkey then gets a remote access error from the NIC, without the
 * node's CPU. The completion queue, which no PD owns, is shared per device.
 *
 * A region's channels are disconnected (their QPs destroyed), its MR deregistered and its PD
 * freed before its memory goes.
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

#include "core/log.h"
#include "node_impl.h"
#include "rdma/client.h"
#include "rdma/proto.h"

struct mn_rdma_dev {
    struct ibv_context *ctx;
    struct ibv_cq *cq; /* required by every QP; one-sided traffic completes nothing here */
    bool odp;          /* on-demand paging for RC RDMA READ/WRITE */
    uint8_t max_rd_atom;
    struct mn_rdma_dev *next;
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
    struct mn_rdma_dev *dev;
    struct mn_vchan *chans;
};

struct mn_rdma {
    struct rdma_event_channel *ec;
    struct rdma_cm_id *listen_id;
    struct event *ev;
    struct mn_rdma_dev *devs;
};

static struct mn_rdma_dev *dev_for(struct mn_rdma *r, struct ibv_context *ctx)
{
    for (struct mn_rdma_dev *d = r->devs; d; d = d->next)
        if (d->ctx == ctx)
            return d;
    struct mn_rdma_dev *d = calloc(1, sizeof(*d));
    if (!d)
        return NULL;
    d->ctx = ctx;
    d->cq = ibv_create_cq(ctx, 16, NULL, NULL, 0);
    if (!d->cq) {
        lethe_error("verbs: cannot create a CQ on %s", ibv_get_device_name(ctx->device));
        free(d);
        return NULL;
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
    d->next = r->devs;
    r->devs = d;
    lethe_info("verbs: using %s (%s)", ibv_get_device_name(ctx->device),
               d->odp ? "on-demand paging: region pages are allocated on touch"
                      : "no on-demand paging: a region is pinned when its first channel connects");
    return d;
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

static struct mn_rdma_region *region_rdma(struct lethe_memnode *n, struct mn_region *reg,
                                          struct mn_rdma_dev *dev, int *err, const char **why)
{
    struct mn_rdma_region *rr = reg->rdma;
    if (rr) {
        if (rr->dev != dev) {
            *err = ENOTSUP;
            *why = "region already registered on another RDMA device";
            return NULL;
        }
        return rr;
    }
    rr = calloc(1, sizeof(*rr));
    if (!rr) {
        *err = ENOMEM;
        *why = "out of memory";
        return NULL;
    }
    rr->pd = ibv_alloc_pd(dev->ctx);
    if (!rr->pd) {
        *err = errno ? errno : ENOMEM;
        *why = "cannot allocate a protection domain for the region";
        lethe_error("verbs: ibv_alloc_pd for region %llu on %s: %s", (unsigned long long)reg->id,
                    ibv_get_device_name(dev->ctx->device), strerror(*err));
        free(rr);
        return NULL;
    }
    int access = IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_READ | IBV_ACCESS_REMOTE_WRITE;
    if (dev->odp)
        rr->mr = ibv_reg_mr(rr->pd, reg->base, reg->bytes, access | IBV_ACCESS_ON_DEMAND);
    if (!rr->mr)
        rr->mr = ibv_reg_mr(rr->pd, reg->base, reg->bytes, access);
    if (!rr->mr) {
        *err = errno ? errno : ENOMEM;
        *why = "ibv_reg_mr of the region failed";
        lethe_error("verbs: ibv_reg_mr of region %llu (%llu bytes): %s",
                    (unsigned long long)reg->id, (unsigned long long)reg->bytes, strerror(*err));
        ibv_dealloc_pd(rr->pd);
        free(rr);
        return NULL;
    }
    rr->dev = dev;
    reg->rdma = rr;
    return rr;
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
    unsigned nchans = 0;
    for (struct mn_vchan *c = reg->rdma ? ((struct mn_rdma_region *)reg->rdma)->chans : NULL; c;
         c = c->next)
        nchans++;
    if (nchans >= MN_MAX_REGION_CONNS) {
        reject(n, id, EUSERS, "too many RDMA channels on this region", false);
        return;
    }
    struct mn_rdma_dev *dev = dev_for(n->rdma, id->verbs);
    int err = ENOMEM;
    const char *why = "cannot set up the device";
    struct mn_rdma_region *rr = dev ? region_rdma(n, reg, dev, &err, &why) : NULL;
    if (!rr) {
        reject(n, id, err, why, false);
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
    if (r->listen_id)
        rdma_destroy_id(r->listen_id);
    while (r->devs) {
        struct mn_rdma_dev *d = r->devs;
        r->devs = d->next;
        ibv_destroy_cq(d->cq);
        free(d);
    }
    if (r->ec)
        rdma_destroy_event_channel(r->ec);
    free(r);
    n->rdma = NULL;
}
