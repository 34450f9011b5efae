/* app_threads.c — a multithreaded program for lethed's tests.
 *
 *   app_threads MIB THREADS [--exit-from-thread N]
 *
 * THREADS workers each build MIB/THREADS MiB of objects (mixed sizes, filled with a pattern
 * derived from worker and index), verify them, hand every other object to the next worker,
 * which verifies and frees it (frees across threads), then verify what they kept. The main
 * thread prints a checksum that does not depend on scheduling: the same output with and
 * without Lethe. With --exit-from-thread N, worker 0 calls exit(N) after the output while
 * the other workers keep touching their memory, and the process ends from that thread.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct object {
    uint64_t *p;
    size_t words;
    uint64_t seed;
};

struct worker {
    pthread_t thread;
    unsigned id;
    size_t bytes;
    struct object *objs;
    size_t n;
    uint64_t sum; /* XOR of object hashes: independent of order */
    int bad;
};

static struct worker *workers;
static unsigned nworkers;
static pthread_barrier_t barrier;
static int exit_from_thread = -1;
static volatile int spinning = 1;

static uint64_t mix(uint64_t x)
{
    x ^= x >> 31;
    x *= 0x7fb5d329728ea185ULL;
    x ^= x >> 27;
    x *= 0x81dadef4bc2dd44dULL;
    x ^= x >> 33;
    return x;
}

static void fill(struct object *o)
{
    for (size_t i = 0; i < o->words; i++)
        o->p[i] = mix(o->seed + i);
}

static int verify(const struct object *o, uint64_t *hash)
{
    uint64_t h = o->seed;
    for (size_t i = 0; i < o->words; i++) {
        if (o->p[i] != mix(o->seed + i)) {
            *hash = 0;
            return -1;
        }
        h = mix(h ^ o->p[i]);
    }
    *hash = h;
    return 0;
}

static void *work(void *arg)
{
    struct worker *w = arg;
    size_t cap = 256, done = 0;
    w->objs = malloc(cap * sizeof(*w->objs));
    for (uint64_t k = 0; done < w->bytes; k++) {
        if (w->n == cap) {
            cap *= 2;
            w->objs = realloc(w->objs, cap * sizeof(*w->objs));
        }
        struct object *o = &w->objs[w->n++];
        o->seed = ((uint64_t)w->id << 40) | k;
        o->words = 2 + mix(o->seed) % (mix(o->seed + 1) % 8 == 0 ? 65536 : 512);
        o->p = malloc(o->words * sizeof(uint64_t));
        fill(o);
        done += o->words * sizeof(uint64_t);
    }
    uint64_t h;
    for (size_t i = 0; i < w->n; i++)
        if (verify(&w->objs[i], &h) != 0)
            w->bad = 1;
    pthread_barrier_wait(&barrier);
    /* Check and free every odd object of the previous worker (it frees none of them). */
    struct worker *prev = &workers[(w->id + nworkers - 1) % nworkers];
    for (size_t i = 1; i < prev->n; i += 2) {
        if (verify(&prev->objs[i], &h) != 0)
            w->bad = 1;
        w->sum ^= h;
        free(prev->objs[i].p);
    }
    pthread_barrier_wait(&barrier);
    for (size_t i = 0; i < w->n; i += 2) {
        if (verify(&w->objs[i], &h) != 0)
            w->bad = 1;
        w->sum ^= h;
    }
    pthread_barrier_wait(&barrier); /* main prints after this */
    if (exit_from_thread >= 0) {
        pthread_barrier_wait(&barrier); /* printed */
        if (w->id == 0)
            exit(exit_from_thread);
        while (spinning) {
            for (size_t i = 0; i < w->n; i += 2)
                w->objs[i].p[0] = mix(w->objs[i].seed); /* keep touching (same value) */
        }
    }
    return NULL;
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: app_threads MIB THREADS [--exit-from-thread N]\n");
        return 2;
    }
    size_t total = strtoull(argv[1], NULL, 10) << 20;
    nworkers = (unsigned)atoi(argv[2]);
    if (nworkers < 1)
        nworkers = 1;
    if (argc >= 5 && strcmp(argv[3], "--exit-from-thread") == 0)
        exit_from_thread = atoi(argv[4]);
    workers = calloc(nworkers, sizeof(*workers));
    pthread_barrier_init(&barrier, NULL, nworkers + 1);
    for (unsigned i = 0; i < nworkers; i++) {
        workers[i].id = i;
        workers[i].bytes = total / nworkers;
        pthread_create(&workers[i].thread, NULL, work, &workers[i]);
    }
    pthread_barrier_wait(&barrier);
    pthread_barrier_wait(&barrier);
    pthread_barrier_wait(&barrier);
    uint64_t sum = 0;
    size_t objects = 0;
    int bad = 0;
    for (unsigned i = 0; i < nworkers; i++) {
        sum ^= workers[i].sum;
        objects += workers[i].n;
        bad |= workers[i].bad;
    }
    printf("threads %u objects %zu checksum %016llx %s\n", nworkers, objects,
           (unsigned long long)sum, bad ? "CORRUPT" : "ok");
    fflush(stdout);
    if (exit_from_thread >= 0) {
        pthread_barrier_wait(&barrier);
        for (;;)
            pause();
    }
    for (unsigned i = 0; i < nworkers; i++)
        pthread_join(workers[i].thread, NULL);
    return bad;
}
