/* shard.c — shard locks. A shard's mutex protects its freelist, active list and inactive
 * list (and the links of the frames on them); it is never held across transport I/O or while
 * waiting for a page. Debug builds record the holder so that functions documented "called
 * with the shard lock held" can assert it.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

#include "core/core.h"

#ifdef LETHE_DEBUG
void lethe_assert_failed(const char *expr, const char *file, int line)
{
    fprintf(stderr, "lethe: %s:%d: invariant broken: %s (bug)\n", file, line, expr);
    abort();
}

static void set_owner(struct lethe_shard *s, pthread_t t)
{
    __atomic_store_n(&s->owner, t, __ATOMIC_RELAXED);
}

void lethe_shard_assert_locked(struct lethe_shard *s)
{
    if (!pthread_equal(__atomic_load_n(&s->owner, __ATOMIC_RELAXED), pthread_self())) {
        fprintf(stderr, "lethe: shard lock not held by this thread (bug)\n");
        abort();
    }
}
#else
static inline void set_owner(struct lethe_shard *s, pthread_t t)
{
    (void)s;
    (void)t;
}
#endif

void lethe_shard_lock(struct lethe_shard *s)
{
    pthread_mutex_lock(&s->lock);
    set_owner(s, pthread_self());
}

bool lethe_shard_trylock(struct lethe_shard *s)
{
    if (pthread_mutex_trylock(&s->lock) != 0)
        return false;
    set_owner(s, pthread_self());
    return true;
}

void lethe_shard_unlock(struct lethe_shard *s)
{
    set_owner(s, (pthread_t)0);
    pthread_mutex_unlock(&s->lock);
}
