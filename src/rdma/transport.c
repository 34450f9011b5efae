/* transport.c — the public transport objects and the dispatch to each kind's ops table.
 * Range checks live here, once, so that no kind can be asked for a slot it was not granted. */
#include "rdma/transport_impl.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"

static const struct lethe_transport_ops *ops_for(enum lethe_transport_kind kind)
{
    switch (kind) {
    case LETHE_TRANSPORT_LOCAL:
        return &lethe_transport_local_ops;
    case LETHE_TRANSPORT_SHM:
        return &lethe_transport_shm_ops ? &lethe_transport_shm_ops : NULL;
    case LETHE_TRANSPORT_TCP:
        return &lethe_transport_tcp_ops ? &lethe_transport_tcp_ops : NULL;
    case LETHE_TRANSPORT_VERBS:
        return &lethe_transport_verbs_ops ? &lethe_transport_verbs_ops : NULL;
    }
    return NULL;
}

static int open_with(const struct lethe_transport_ops *ops,
                     const struct lethe_transport_params *p, struct lethe_transport **out);

int lethe_transport_open(const struct lethe_transport_params *p, struct lethe_transport **out)
{
    if (p->kind != LETHE_TRANSPORT_LOCAL && (p->n_nodes > 1 || p->replicas > 1))
        return open_with(&lethe_transport_multi_ops, p, out);
    return lethe_transport_open_kind(p, out);
}

int lethe_transport_open_kind(const struct lethe_transport_params *p, struct lethe_transport **out)
{
    return open_with(ops_for(p->kind), p, out);
}

static int open_with(const struct lethe_transport_ops *ops,
                     const struct lethe_transport_params *p, struct lethe_transport **out)
{
    if (!ops) {
        lethe_error("transport %s is not built into this Lethe", lethe_transport_name(p->kind));
        return -ENOTSUP;
    }
    struct lethe_transport *t = calloc(1, sizeof(*t));
    if (!t)
        return -ENOMEM;
    t->ops = ops;
    t->params = *p;
    t->fork_readable = ops->fork_readable;
    t->fork_reconnect = ops->fork_reconnect;
    if (ops == &lethe_transport_multi_ops)
        snprintf(t->describe, sizeof(t->describe), "%s, %u memory nodes, %u replica%s",
                 lethe_transport_name(p->kind), p->n_nodes, p->replicas ? p->replicas : 1,
                 p->replicas > 1 ? "s" : "");
    else if (p->kind == LETHE_TRANSPORT_LOCAL)
        snprintf(t->describe, sizeof(t->describe), "local");
    else
        snprintf(t->describe, sizeof(t->describe), "%s %s", ops->name, p->node);
    int rc = ops->open(t);
    if (rc < 0) {
        free(t);
        return rc;
    }
    *out = t;
    return 0;
}

void lethe_transport_close(struct lethe_transport *t)
{
    if (!t)
        return;
    t->ops->close(t);
    free(t);
}

uint64_t lethe_transport_pages(const struct lethe_transport *t)
{
    return t->pages;
}

bool lethe_transport_fork_readable(const struct lethe_transport *t, bool *own_channel)
{
    if (own_channel)
        *own_channel = t && t->fork_reconnect;
    return t && (t->fork_readable || t->fork_reconnect);
}

const char *lethe_transport_gone(struct lethe_transport *t)
{
    return t->ops->gone ? t->ops->gone(t) : NULL;
}

unsigned lethe_transport_node_stats(const struct lethe_transport *t, struct lethe_node_stats *out,
                                    unsigned max, struct lethe_replica_stats *rs)
{
    if (t->ops->node_stats)
        return t->ops->node_stats(t, out, max, rs);
    if (max > 0) {
        memset(&out[0], 0, sizeof(out[0]));
        snprintf(out[0].addr, sizeof(out[0].addr), "%s",
                 t->params.kind == LETHE_TRANSPORT_LOCAL ? "local" : t->params.node);
        out[0].live = lethe_transport_gone((struct lethe_transport *)t) == NULL;
        out[0].granted_pages = t->pages;
    }
    if (rs) {
        memset(rs, 0, sizeof(*rs));
        rs->nodes = 1;
        rs->replicas = 1;
        rs->live_nodes = lethe_transport_gone((struct lethe_transport *)t) == NULL;
    }
    return 1;
}

const char *lethe_transport_describe(const struct lethe_transport *t)
{
    return t->describe;
}

int lethe_channel_open(struct lethe_transport *t, unsigned vcpu, struct lethe_channel **out)
{
    struct lethe_channel *ch = calloc(1, sizeof(*ch));
    if (!ch)
        return -ENOMEM;
    ch->t = t;
    ch->vcpu = vcpu;
    int rc = t->ops->channel_open(ch);
    if (rc < 0) {
        lethe_error("%s: cannot open channel for vCPU %u: %s", t->describe, vcpu,
                    ch->error[0] ? ch->error : strerror(-rc));
        free(ch);
        return rc;
    }
    *out = ch;
    return 0;
}

void lethe_channel_close(struct lethe_channel *ch)
{
    if (!ch)
        return;
    ch->t->ops->channel_close(ch);
    free(ch);
}

void lethe_channel_set_error(struct lethe_channel *ch, const char *fmt, ...)
{
    int n = snprintf(ch->error, sizeof(ch->error), "%s: ", ch->t->describe);
    if (n < 0 || (size_t)n >= sizeof(ch->error))
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(ch->error + n, sizeof(ch->error) - (size_t)n, fmt, ap);
    va_end(ap);
}

const char *lethe_channel_error(const struct lethe_channel *ch)
{
    return ch->error[0] ? ch->error : "no error";
}

static int check_slots(struct lethe_channel *ch, const uint64_t *slots, unsigned n)
{
    if (n == 0)
        return 0;
    if (ch->t->params.max_batch && n > ch->t->params.max_batch) {
        lethe_channel_set_error(ch, "batch of %u pages exceeds max_batch %u", n,
                                ch->t->params.max_batch);
        return -E2BIG;
    }
    for (unsigned i = 0; i < n; i++) {
        if (slots[i] >= ch->t->pages) {
            lethe_channel_set_error(ch, "slot %llu is beyond the %llu slots granted",
                                    (unsigned long long)slots[i],
                                    (unsigned long long)ch->t->pages);
            return -ERANGE;
        }
    }
    return 0;
}

int lethe_channel_read_batch(struct lethe_channel *ch, const uint64_t *slots, void *const *pages,
                             unsigned n)
{
    int rc = check_slots(ch, slots, n);
    if (rc < 0 || n == 0)
        return rc;
    return ch->t->ops->read_batch(ch, slots, pages, n);
}

int lethe_channel_write_batch(struct lethe_channel *ch, const uint64_t *slots,
                              const void *const *pages, unsigned n)
{
    int rc = check_slots(ch, slots, n);
    if (rc < 0 || n == 0)
        return rc;
    return ch->t->ops->write_batch(ch, slots, pages, n);
}

int lethe_channel_write_post(struct lethe_channel *ch, const uint64_t *slots,
                             const void *const *pages, unsigned n)
{
    int rc = check_slots(ch, slots, n);
    if (rc < 0 || n == 0 || !ch->t->ops->write_post) {
        ch->posted_rc = rc < 0 || n == 0 ? rc : ch->t->ops->write_batch(ch, slots, pages, n);
        return ch->posted_rc;
    }
    rc = ch->t->ops->write_post(ch, slots, pages, n);
    ch->posted_rc = rc < 0 ? rc : 1; /* 1: the transport's own wait answers */
    return rc;
}

int lethe_channel_write_wait(struct lethe_channel *ch)
{
    int rc = ch->posted_rc;
    ch->posted_rc = 0;
    return rc == 1 ? ch->t->ops->write_wait(ch) : rc;
}

int lethe_channel_read_checked(struct lethe_channel *ch, uint64_t slot, void *page, uint64_t sum)
{
    if (!ch->t->ops->read_checked)
        return lethe_channel_read_batch(ch, &slot, &page, 1);
    int rc = check_slots(ch, &slot, 1);
    if (rc < 0)
        return rc;
    return ch->t->ops->read_checked(ch, &slot, &page, &sum, 1);
}

int lethe_channel_read(struct lethe_channel *ch, uint64_t slot, void *page)
{
    return lethe_channel_read_batch(ch, &slot, &page, 1);
}

int lethe_channel_write(struct lethe_channel *ch, uint64_t slot, const void *page)
{
    return lethe_channel_write_batch(ch, &slot, &page, 1);
}
