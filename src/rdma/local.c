/* local.c — the `local` transport: "remote" memory is an anonymous mapping in this process.
 * It stands in for a memory node in unit tests and measures the swapper's own overhead: a
 * read or write is one memcpy, no I/O. Tests can make it fail (local.h). */
#include "rdma/local.h"

#include <errno.h>
#include <stdbool.h>
#include <string.h>
#include <sys/mman.h>

#include "core/log.h"
#include "rdma/transport_impl.h"

struct local_remote {
    void *base;
    size_t bytes;
    unsigned fail_mask; /* enum lethe_local_fail bits, atomic */
};

void lethe_local_inject_failure(struct lethe_transport *t, unsigned mask)
{
    struct local_remote *lr = t->priv;
    __atomic_store_n(&lr->fail_mask, mask, __ATOMIC_RELEASE);
}

void *lethe_local_slot_memory(struct lethe_transport *t, uint64_t slot)
{
    struct local_remote *lr = t->priv;
    if (slot >= lr->bytes / LETHE_PAGE_SIZE)
        return NULL;
    return (char *)lr->base + slot * LETHE_PAGE_SIZE;
}

static bool failing(struct lethe_channel *ch, unsigned kind, const uint64_t *slots)
{
    struct local_remote *lr = ch->priv;
    if (!(__atomic_load_n(&lr->fail_mask, __ATOMIC_ACQUIRE) & kind))
        return false;
    lethe_channel_set_error(ch, "injected failure %s slot %llu",
                            kind == LETHE_LOCAL_FAIL_READ ? "reading" : "writing",
                            (unsigned long long)slots[0]);
    return true;
}

static int local_open(struct lethe_transport *t)
{
    size_t bytes = t->params.remote_size & ~(LETHE_PAGE_SIZE - 1);
    if (bytes == 0)
        return -EINVAL;
    struct local_remote *lr =
        mmap(NULL, sizeof(*lr), PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (lr == MAP_FAILED)
        return -errno;
    lr->bytes = bytes;
    lr->base = mmap(NULL, bytes, PROT_READ | PROT_WRITE,
                    MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (lr->base == MAP_FAILED) {
        int err = -errno;
        munmap(lr, sizeof(*lr));
        lethe_error("local transport: cannot reserve %zu bytes: %s", bytes, strerror(-err));
        return err;
    }
    t->priv = lr;
    t->pages = bytes / LETHE_PAGE_SIZE;
    return 0;
}

static void local_close(struct lethe_transport *t)
{
    struct local_remote *lr = t->priv;
    munmap(lr->base, lr->bytes);
    munmap(lr, sizeof(*lr));
}

static int local_channel_open(struct lethe_channel *ch)
{
    ch->priv = ch->t->priv;
    return 0;
}

static void local_channel_close(struct lethe_channel *ch)
{
}

static int local_read_batch(struct lethe_channel *ch, const uint64_t *slots, void *const *pages,
                            unsigned n)
{
    struct local_remote *lr = ch->priv;
    if (failing(ch, LETHE_LOCAL_FAIL_READ, slots))
        return -EIO;
    for (unsigned i = 0; i < n; i++)
        memcpy(pages[i], (char *)lr->base + slots[i] * LETHE_PAGE_SIZE, LETHE_PAGE_SIZE);
    return 0;
}

static int local_write_batch(struct lethe_channel *ch, const uint64_t *slots,
                             const void *const *pages, unsigned n)
{
    struct local_remote *lr = ch->priv;
    if (failing(ch, LETHE_LOCAL_FAIL_WRITE, slots))
        return -EIO;
    for (unsigned i = 0; i < n; i++)
        memcpy((char *)lr->base + slots[i] * LETHE_PAGE_SIZE, pages[i], LETHE_PAGE_SIZE);
    return 0;
}

const struct lethe_transport_ops lethe_transport_local_ops = {
    .name = "local",
    .fork_readable = true,
    .open = local_open,
    .close = local_close,
    .channel_open = local_channel_open,
    .channel_close = local_channel_close,
    .read_batch = local_read_batch,
    .write_batch = local_write_batch,
};
