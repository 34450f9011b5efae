/* verbs_attack.c — a hostile verbs client: what one client of a memory node can reach with
 * raw RDMA, below Lethe's transport. Run by test/rdma/guest-suite.sh inside rdma-vm.
 *
 *   verbs_attack --node HOST:PORT --token-file FILE
 *
 * One-sided RDMA bypasses the node's CPU, so a client's reach is exactly what the RNIC lets
 * its QP touch: the node's isolation must come from the memory registration (bounds) and
 * the protection domain (an rkey works only on QPs of the MR's PD), not from checks in node
 * code. This program holds two clients, A and B, each with a region (control connection:
 * handshake with the token, ALLOC with LETHE_F_ALLOC_RDMA) and an RDMA CM channel carrying
 * the CONNECT proof, and checks, each on a fresh channel where the previous step broke one:
 *   1. A writes its own slots and reads them back (the channel works at all);
 *   2. B reads its own region: zeros;
 *   3. B reads one byte past the end of its region with its own rkey: refused;
 *   4. B reads A's region with A's address AND A's rkey (an attacker that learnt or guessed
 *      them) over B's own QP: refused;
 *   5. B writes there the same way: refused, and A's pages are intact;
 *   6. a CONNECT naming A's region with a proof made from B's region key: rejected;
 *   7. a replayed CONNECT (A's proof for a sequence number already used): rejected;
 *   8. private data that is not a Lethe CONNECT: rejected;
 *   9. the control handshake with a wrong token: refused.
 * Prints "ok: ..." per check that held and "FAIL: ..." per one that did not; exits 0 when
 * every check held, 1 otherwise.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <getopt.h>
#include <infiniband/verbs.h>
#include <inttypes.h>
#include <netdb.h>
#include <poll.h>
#include <rdma/rdma_cma.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/log.h"
#include "rdma/auth.h"
#include "rdma/client.h"
#include "rdma/proto.h"

#define PAGE    4096u
#define PAGES   64u
#define TIMEOUT (10u * 1000 * 1000)

static char node[LETHE_ADDR_MAX], token[128];
static int failures;

struct client {
    const char *name;
    struct lethe_mnc ctl;
    struct lethe_mnc_region reg;
    char host[LETHE_ADDR_MAX], port[16];
    uint64_t seq;
};

struct chan {
    struct rdma_event_channel *ec;
    struct rdma_cm_id *id;
    struct ibv_pd *pd;
    struct ibv_cq *cq;
    struct ibv_mr *mr;
    uint8_t *buf; /* one page */
    uint64_t raddr, rlen;
    uint32_t rkey;
    bool connected;
};

static void ok(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void ok(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    printf("ok: ");
    vprintf(fmt, ap);
    printf("\n");
    va_end(ap);
}

static void bad(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void bad(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    printf("FAIL: ");
    vprintf(fmt, ap);
    printf("\n");
    va_end(ap);
    failures++;
}

static int client_open(struct client *c, const char *name, const char *tok)
{
    char err[LETHE_MNC_ERR];
    c->name = name;
    int rc = lethe_mnc_connect(&c->ctl, node, TIMEOUT, err);
    if (rc == 0)
        rc = lethe_mnc_handshake(&c->ctl, tok, TIMEOUT, err);
    if (rc == 0)
        rc = lethe_mnc_alloc(&c->ctl, PAGES * PAGE, LETHE_F_ALLOC_RDMA, &c->reg, err);
    if (rc < 0) {
        printf("client %s: %s: %s\n", name, node, err);
        return rc;
    }
    lethe_split_hostport(node, c->host, sizeof c->host, c->port, sizeof c->port);
    snprintf(c->port, sizeof c->port, "%u", c->reg.rdma_port);
    return 0;
}

static int next_event(struct chan *ch, int *status, uint8_t *pdata, size_t *plen)
{
    struct pollfd pfd = {.fd = ch->ec->fd, .events = POLLIN};
    if (poll(&pfd, 1, TIMEOUT / 1000) <= 0)
        return -ETIMEDOUT;
    struct rdma_cm_event *ev;
    if (rdma_get_cm_event(ch->ec, &ev) < 0)
        return -errno;
    int type = ev->event;
    *status = ev->status;
    if (pdata) {
        size_t n = ev->param.conn.private_data ? ev->param.conn.private_data_len : 0;
        if (n > *plen)
            n = *plen;
        if (n)
            memcpy(pdata, ev->param.conn.private_data, n);
        *plen = n;
    }
    rdma_ack_cm_event(ev);
    return type;
}

static void chan_close(struct chan *ch)
{
    if (ch->connected)
        rdma_disconnect(ch->id);
    if (ch->id && ch->id->qp)
        rdma_destroy_qp(ch->id);
    if (ch->mr)
        ibv_dereg_mr(ch->mr);
    if (ch->cq)
        ibv_destroy_cq(ch->cq);
    if (ch->pd)
        ibv_dealloc_pd(ch->pd);
    if (ch->id)
        rdma_destroy_id(ch->id);
    if (ch->ec)
        rdma_destroy_event_channel(ch->ec);
    free(ch->buf);
    memset(ch, 0, sizeof *ch);
}

/* Connects a channel to c's RDMA CM port with `pdata` as CONNECT private data. Returns 0
 * when established (ch holds the region's address/rkey/length), the node's positive REJECT
 * errno when rejected, or a negative errno for anything else. */
static int chan_connect_raw(struct chan *ch, struct client *c, const uint8_t *pdata, size_t plen)
{
    memset(ch, 0, sizeof *ch);
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV}, *res;
    if (getaddrinfo(c->host, c->port, &hints, &res) != 0)
        return -EHOSTUNREACH;
    int rc = 0, status = 0;
    ch->ec = rdma_create_event_channel();
    if (!ch->ec || rdma_create_id(ch->ec, &ch->id, NULL, RDMA_PS_TCP) < 0 ||
        rdma_resolve_addr(ch->id, NULL, res->ai_addr, 5000) < 0)
        rc = -errno;
    freeaddrinfo(res);
    if (rc == 0 && next_event(ch, &status, NULL, NULL) != RDMA_CM_EVENT_ADDR_RESOLVED)
        rc = -EHOSTUNREACH;
    if (rc == 0 && rdma_resolve_route(ch->id, 5000) < 0)
        rc = -errno;
    if (rc == 0 && next_event(ch, &status, NULL, NULL) != RDMA_CM_EVENT_ROUTE_RESOLVED)
        rc = -EHOSTUNREACH;
    if (rc == 0) {
        ch->pd = ibv_alloc_pd(ch->id->verbs);
        ch->cq = ch->pd ? ibv_create_cq(ch->id->verbs, 4, NULL, NULL, 0) : NULL;
        ch->buf = aligned_alloc(PAGE, PAGE);
        ch->mr =
            ch->cq && ch->buf ? ibv_reg_mr(ch->pd, ch->buf, PAGE, IBV_ACCESS_LOCAL_WRITE) : NULL;
        struct ibv_qp_init_attr qa = {
            .send_cq = ch->cq,
            .recv_cq = ch->cq,
            .cap = {.max_send_wr = 4, .max_recv_wr = 1, .max_send_sge = 1, .max_recv_sge = 1},
            .qp_type = IBV_QPT_RC,
            .sq_sig_all = 1,
        };
        if (!ch->mr || rdma_create_qp(ch->id, ch->pd, &qa) < 0)
            rc = -ENOMEM;
    }
    if (rc == 0) {
        struct rdma_conn_param cp = {
            .private_data = pdata,
            .private_data_len = (uint8_t)plen,
            .initiator_depth = 1,
            .responder_resources = 1,
            .retry_count = 7,
            .rnr_retry_count = 7,
        };
        if (rdma_connect(ch->id, &cp) < 0)
            rc = -errno;
    }
    if (rc == 0) {
        uint8_t apd[256];
        size_t alen = sizeof apd;
        int type = next_event(ch, &status, apd, &alen);
        struct lethe_verbs_accept acc;
        if (type == RDMA_CM_EVENT_ESTABLISHED && lethe_verbs_get_accept(apd, alen, &acc) == 0) {
            ch->connected = true;
            ch->raddr = acc.addr;
            ch->rkey = acc.rkey;
            ch->rlen = acc.length;
            return 0;
        }
        if (type == RDMA_CM_EVENT_REJECTED) {
            int why = lethe_verbs_get_reject(apd, alen);
            rc = why > 0 ? why : -ECONNREFUSED;
        } else {
            rc = type < 0 ? type : -EPROTO;
        }
    }
    chan_close(ch);
    return rc;
}

/* A channel to c's own region with a proof made from `key` for `region_id`. */
static int chan_connect(struct chan *ch, struct client *c, uint64_t region_id,
                        const uint8_t key[LETHE_REGION_KEY_LEN], uint64_t seq)
{
    uint8_t pd[LETHE_VERBS_CONNECT_LEN];
    struct lethe_verbs_connect req = {.region_id = region_id, .seq = seq};
    lethe_auth_verbs_proof(key, region_id, seq, req.proof);
    lethe_verbs_put_connect(pd, &req);
    return chan_connect_raw(ch, c, pd, sizeof pd);
}

static int chan_connect_own(struct chan *ch, struct client *c)
{
    int rc = chan_connect(ch, c, c->reg.id, c->reg.key, ++c->seq);
    if (rc != 0)
        printf("client %s: cannot open an RDMA channel to its own region: %s\n", c->name,
               rc > 0 ? strerror(rc) : strerror(-rc));
    return rc;
}

/* One RDMA READ or WRITE of a page between ch->buf and (raddr, rkey). Returns the work
 * completion's status (IBV_WC_SUCCESS or the error), or -1 on timeout. */
static int rdma_op(struct chan *ch, enum ibv_wr_opcode op, uint64_t raddr, uint32_t rkey,
                   uint32_t len)
{
    struct ibv_sge sge = {.addr = (uintptr_t)ch->buf, .length = len, .lkey = ch->mr->lkey};
    struct ibv_send_wr wr =
                           {
                               .sg_list = &sge,
                               .num_sge = 1,
                               .opcode = op,
                               .send_flags = IBV_SEND_SIGNALED,
                               .wr.rdma = {.remote_addr = raddr, .rkey = rkey},
                           },
                       *badwr;
    if (ibv_post_send(ch->id->qp, &wr, &badwr) != 0)
        return IBV_WC_GENERAL_ERR;
    struct timespec t0, t;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (;;) {
        struct ibv_wc wc;
        int n = ibv_poll_cq(ch->cq, 1, &wc);
        if (n < 0)
            return IBV_WC_GENERAL_ERR;
        if (n == 1)
            return wc.status;
        clock_gettime(CLOCK_MONOTONIC, &t);
        if (t.tv_sec - t0.tv_sec > 30)
            return -1;
    }
}

static const char *wc_str(int st)
{
    return st < 0 ? "no completion in 30 s" : ibv_wc_status_str((enum ibv_wc_status)st);
}

static void pattern(uint8_t *page, char who, unsigned slot)
{
    for (unsigned i = 0; i < PAGE; i++)
        page[i] = (uint8_t)(who * 31 + slot * 7 + i);
}

static bool is_pattern(const uint8_t *page, char who, unsigned slot)
{
    for (unsigned i = 0; i < PAGE; i++)
        if (page[i] != (uint8_t)(who * 31 + slot * 7 + i))
            return false;
    return true;
}

int main(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"node", required_argument, NULL, 'n'},
        {"token-file", required_argument, NULL, 't'},
        {NULL, 0, NULL, 0},
    };
    const char *token_file = NULL;
    int o;
    while ((o = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
        if (o == 'n')
            snprintf(node, sizeof node, "%s", optarg);
        else if (o == 't')
            token_file = optarg;
        else
            return 2;
    }
    if (!node[0] || !token_file) {
        fprintf(stderr, "usage: verbs_attack --node HOST:PORT --token-file FILE\n");
        return 2;
    }
    lethe_log_init("verbs_attack");
    char err[128];
    if (lethe_token_load(token_file, false, token, sizeof token, NULL, err, sizeof err) < 0) {
        fprintf(stderr, "verbs_attack: %s: %s\n", token_file, err);
        return 1;
    }

    struct client a = {0}, b = {0};
    struct chan ca, cb;
    if (client_open(&a, "A", token) < 0 || chan_connect_own(&ca, &a) != 0)
        return 1;
    printf("client A: region %" PRIu64 " at %#" PRIx64 ", %" PRIu64 " bytes, rkey %#x\n", a.reg.id,
           ca.raddr, ca.rlen, ca.rkey);

    /* 1. A's channel works. */
    int st = 0;
    for (unsigned s = 0; s < 4 && st == 0; s++) {
        pattern(ca.buf, 'A', s);
        st = rdma_op(&ca, IBV_WR_RDMA_WRITE, ca.raddr + s * PAGE, ca.rkey, PAGE);
    }
    memset(ca.buf, 0, PAGE);
    if (st == 0)
        st = rdma_op(&ca, IBV_WR_RDMA_READ, ca.raddr + 3 * PAGE, ca.rkey, PAGE);
    if (st != 0 || !is_pattern(ca.buf, 'A', 3)) {
        bad("client A cannot write and read back its own region: %s", wc_str(st));
        return 1;
    }
    ok("client A wrote 4 pages of its region and read them back with RDMA");

    if (client_open(&b, "B", token) < 0 || chan_connect_own(&cb, &b) != 0)
        return 1;
    printf("client B: region %" PRIu64 " at %#" PRIx64 ", %" PRIu64 " bytes, rkey %#x\n", b.reg.id,
           cb.raddr, cb.rlen, cb.rkey);

    /* 2. B's own region: zeros. */
    memset(cb.buf, 0xa5, PAGE);
    st = rdma_op(&cb, IBV_WR_RDMA_READ, cb.raddr, cb.rkey, PAGE);
    bool zero = true;
    for (unsigned i = 0; i < PAGE; i++)
        zero &= cb.buf[i] == 0;
    if (st != 0 || !zero)
        bad("client B's own region: %s, %s", wc_str(st), zero ? "zeros" : "NOT zeros");
    else
        ok("client B reads its own fresh region as zeros");

    /* 3. One byte past B's region. */
    st = rdma_op(&cb, IBV_WR_RDMA_READ, cb.raddr + cb.rlen - 1, cb.rkey, 2);
    if (st == 0)
        bad("client B read past the end of its region with its own rkey");
    else
        ok("client B's read past the end of its region is refused (%s)", wc_str(st));
    chan_close(&cb);
    if (chan_connect_own(&cb, &b) != 0)
        return 1;

    /* 4. A's region with A's address and rkey, over B's QP. */
    memset(cb.buf, 0, PAGE);
    st = rdma_op(&cb, IBV_WR_RDMA_READ, ca.raddr + 3 * PAGE, ca.rkey, PAGE);
    if (st == 0)
        bad("client B READ client A's region over its own QP with A's rkey %#x%s: the node's "
            "regions share one protection domain, so any client that learns or guesses an "
            "rkey and address reaches another client's memory",
            ca.rkey, is_pattern(cb.buf, 'A', 3) ? " and got A's data" : "");
    else
        ok("client B's RDMA READ of client A's region with A's rkey is refused (%s)", wc_str(st));
    chan_close(&cb);
    if (chan_connect_own(&cb, &b) != 0)
        return 1;

    /* 5. And a write there. */
    pattern(cb.buf, 'B', 0);
    st = rdma_op(&cb, IBV_WR_RDMA_WRITE, ca.raddr, ca.rkey, PAGE);
    memset(ca.buf, 0, PAGE);
    int sta = rdma_op(&ca, IBV_WR_RDMA_READ, ca.raddr, ca.rkey, PAGE);
    if (st == 0)
        bad("client B WROTE into client A's region with A's rkey (A's page %s)",
            sta == 0 && is_pattern(ca.buf, 'B', 0) ? "now holds B's data" : "checked");
    else
        ok("client B's RDMA WRITE into client A's region is refused (%s)", wc_str(st));
    if (sta != 0 || !is_pattern(ca.buf, 'A', 0))
        bad("client A's page 0 is not intact after B's attempt (%s)", wc_str(sta));
    else
        ok("client A's pages are intact");
    chan_close(&cb);

    /* 6. A's region named with B's key. */
    struct chan x;
    int rc = chan_connect(&x, &b, a.reg.id, b.reg.key, 1000);
    if (rc == 0) {
        bad("a CONNECT to A's region with a proof from B's key was accepted");
        chan_close(&x);
    } else {
        ok("a CONNECT to A's region with a proof made from B's key is rejected (%s)",
           rc > 0 ? strerrorname_np(rc) : strerror(-rc));
    }

    /* 7. Replay of A's first CONNECT (sequence 1, already used). */
    rc = chan_connect(&x, &a, a.reg.id, a.reg.key, 1);
    if (rc == 0) {
        bad("a replayed CONNECT (sequence 1 again) was accepted");
        chan_close(&x);
    } else {
        ok("a replayed CONNECT is rejected (%s)", rc > 0 ? strerrorname_np(rc) : strerror(-rc));
    }

    /* 8. Garbage private data. */
    uint8_t junk[LETHE_VERBS_CONNECT_LEN];
    memset(junk, 0x5a, sizeof junk);
    rc = chan_connect_raw(&x, &a, junk, sizeof junk);
    if (rc == 0) {
        bad("a CONNECT with garbage private data was accepted");
        chan_close(&x);
    } else {
        ok("a CONNECT with garbage private data is rejected (%s)",
           rc > 0 ? strerrorname_np(rc) : strerror(-rc));
    }

    /* 9. Wrong token. */
    char wrong[160];
    snprintf(wrong, sizeof wrong, "%.100sX", token);
    struct lethe_mnc w;
    char werr[LETHE_MNC_ERR] = "";
    rc = lethe_mnc_connect(&w, node, TIMEOUT, werr);
    if (rc == 0) {
        rc = lethe_mnc_handshake(&w, wrong, TIMEOUT, werr);
        lethe_mnc_close(&w);
    }
    if (rc == 0)
        bad("the control handshake with a wrong token succeeded");
    else
        ok("the control handshake with a wrong token is refused: %s", werr);

    chan_close(&ca);
    lethe_mnc_close(&b.ctl);
    lethe_mnc_close(&a.ctl);
    printf("verbs_attack: %s\n", failures ? "FAILED" : "every check held");
    return failures ? 1 : 0;
}
