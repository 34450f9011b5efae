/* delivery_signal.c — fault_delivery = signal (UFFD_FEATURE_SIGBUS), and the process's
 * SIGBUS handler in both modes.
 *
 * A fault on the region raises SIGBUS in the faulting thread, which serves it in the
 * handler: it takes the vCPU context its thread slot maps to (slots are handed out in
 * order of first use; context = slot mod vcpus; a context serves one thread at a time, the
 * others spin and yield), runs ops->fault, releases the context and returns, and the access
 * is retried. The read/write type comes from the x86 page-fault error code in the signal
 * context (other architectures: reported as a write, the conservative answer).
 *
 * The handler runs on the thread's alternate signal stack when it has one. The runtime
 * gives one (64 KiB plus a guard page, freed at thread exit; a smaller one the thread had,
 * such as ASan's, is replaced) to the thread that creates a region and to every thread that
 * calls lethe_fault_thread_init() (liblethe.so does so in
 * its pthread_create wrapper). A thread without one still works: the handler then runs on
 * the thread's own stack, which is never in the region (glibc maps thread stacks itself).
 * What the altstack protects is a program that puts thread stacks in heap memory.
 *
 * In both modes the handler also catches touches of empty parking slots (uffd B has
 * UFFD_FEATURE_SIGBUS): that is a runtime bug, logged and aborted. SIGBUS elsewhere (a
 * truncated file mapping, a machine-check) goes to the handler installed before ours, or to
 * the one the program installed since (liblethe's sigaction wrapper hands it to
 * lethe_fault_sigbus_chain instead of the kernel), or kills the process as it would have
 * without Lethe.
 *
 * Limits: a kernel-mode access to a missing page (read() into the region, futex, O_DIRECT)
 * fails with EFAULT instead of faulting; a fault raised inside another signal handler that
 * interrupted a SIGBUS handler kills the process (SIGBUS is blocked there).
 */
#define _GNU_SOURCE
#include "fault/fault_internal.h"

#include <errno.h>
#include <sched.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <stdint.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <ucontext.h>
#include <unistd.h>

#include "core/log.h"

#define ALTSTACK_SIZE (64 * 1024)

/* The handler a SIGBUS outside every region goes to: the one installed before ours, or the
 * one the program installed since (lethe_fault_sigbus_chain). Written under install_lock,
 * from the writer's stack copies only; read by the handler under a sequence count (odd while
 * a write is in progress). chained_reset: an SA_RESETHAND handler has run once, so the
 * default action applies until the program installs another. */
#define CHAINED_WORDS ((sizeof(struct sigaction) + 7) / 8)
static _Atomic uint64_t chained[CHAINED_WORDS]; /* a struct sigaction, word by word */
static atomic_uint chained_seq;
static atomic_bool chained_reset;
static atomic_bool sigbus_installed;
static pthread_mutex_t install_lock = PTHREAD_MUTEX_INITIALIZER;
static atomic_uint next_thread_slot;
static __thread unsigned thread_slot __attribute__((tls_model("initial-exec")));
static pthread_once_t altstack_once = PTHREAD_ONCE_INIT;
static pthread_key_t altstack_key;

_Noreturn void fault_die(struct lethe_region *r, uint64_t vpn, enum lethe_access access, int err)
{
    lethe_error("%s fault on page %llu (%p) could not be served: %s; aborting",
                access == LETHE_ACCESS_WRITE ? "write" : "read", (unsigned long long)vpn,
                lethe_region_addr(r, vpn), strerror(err < 0 ? -err : err));
    abort();
}

static enum lethe_access access_of(const void *uc)
{
#if defined(__x86_64__)
    const ucontext_t *u = uc;
    return (u->uc_mcontext.gregs[REG_ERR] & 2) ? LETHE_ACCESS_WRITE : LETHE_ACCESS_READ;
#else
    (void)uc;
    return LETHE_ACCESS_WRITE;
#endif
}

/* A write to a present, write-protected page (synchronous WP of the copy fallback)? */
static bool is_protection_fault(const void *uc)
{
#if defined(__x86_64__)
    const ucontext_t *u = uc;
    return u->uc_mcontext.gregs[REG_ERR] & 1;
#else
    (void)uc;
    return false;
#endif
}

static void chained_read(struct sigaction *out)
{
    for (;;) {
        unsigned seq = atomic_load_explicit(&chained_seq, memory_order_acquire);
        if (seq & 1) {
            sched_yield();
            continue;
        }
        uint64_t words[CHAINED_WORDS];
        for (unsigned i = 0; i < CHAINED_WORDS; i++)
            words[i] = atomic_load_explicit(&chained[i], memory_order_relaxed);
        memcpy(out, words, sizeof(*out));
        atomic_thread_fence(memory_order_acquire);
        if (atomic_load_explicit(&chained_seq, memory_order_relaxed) == seq)
            return;
    }
}

/* Under install_lock, between the sequence count's odd and even values (or before the
 * handler is installed). */
static void chained_store(const struct sigaction *in)
{
    uint64_t words[CHAINED_WORDS] = {0};
    memcpy(words, in, sizeof(*in));
    for (unsigned i = 0; i < CHAINED_WORDS; i++)
        atomic_store_explicit(&chained[i], words[i], memory_order_relaxed);
}

/* The default action of SIGBUS, set with the system call itself: glibc's signal() and
 * sigaction() may be liblethe's wrappers, which would only change the chained handler. */
static void sigbus_default(void)
{
    struct {
        void (*handler)(int);
        unsigned long flags;
        void (*restorer)(void);
        uint64_t mask;
    } k = {.handler = SIG_DFL};
    syscall(SYS_rt_sigaction, SIGBUS, &k, NULL, sizeof(k.mask));
}

static void chain_sigbus(int sig, siginfo_t *si, void *uc)
{
    struct sigaction to;
    chained_read(&to);
    bool is_default = (to.sa_flags & SA_SIGINFO) ? false : to.sa_handler == SIG_DFL;
    bool ignored = !(to.sa_flags & SA_SIGINFO) && to.sa_handler == SIG_IGN;
    if ((to.sa_flags & SA_RESETHAND) && atomic_exchange(&chained_reset, true))
        is_default = true; /* it has run once already */
    if (is_default || ignored) {
        /* Die of SIGBUS when the access is retried, as without Lethe (a synchronous SIGBUS
         * that is ignored kills too). */
        sigbus_default();
        if (si->si_code <= 0) /* sent, not raised by an access: nothing retries it */
            raise(sig);
        return;
    }
    if (to.sa_flags & SA_SIGINFO)
        to.sa_sigaction(sig, si, uc);
    else
        to.sa_handler(sig);
}

bool lethe_fault_sigbus_installed(void)
{
    return atomic_load_explicit(&sigbus_installed, memory_order_acquire);
}

int lethe_fault_sigbus_chain(const struct sigaction *act, struct sigaction *old)
{
    if (!lethe_fault_sigbus_installed())
        return -ENOENT;
    struct sigaction copy, before;
    if (act)
        memcpy(&copy, act, sizeof(copy)); /* any fault on act is taken here, outside the lock */
    pthread_mutex_lock(&install_lock);
    chained_read(&before);
    if (atomic_load(&chained_reset) && (before.sa_flags & SA_RESETHAND)) {
        before.sa_handler = SIG_DFL;
        before.sa_flags &= ~(SA_SIGINFO | SA_RESETHAND);
    }
    if (act) {
        atomic_fetch_add_explicit(&chained_seq, 1, memory_order_relaxed);
        atomic_thread_fence(memory_order_release);
        chained_store(&copy);
        atomic_store(&chained_reset, false);
        atomic_fetch_add_explicit(&chained_seq, 1, memory_order_release);
    }
    pthread_mutex_unlock(&install_lock);
    if (old)
        memcpy(old, &before, sizeof(*old));
    return 0;
}

/* A SIGBUS outside every region may come from a mapping mremap'd out of a region whose
 * REMAP event the event thread has not handled yet (it is still registered with uffd A,
 * in SIGBUS mode). Unregister the page and let the access retry, if that was it. */
static bool release_moved_out(const void *addr)
{
    uint64_t a = (uint64_t)(uintptr_t)addr & ~(LETHE_PAGE_SIZE - 1);
    if (fault_mapping_is_uffd_missing(a) != 1)
        return false;
    struct uffdio_range range = {.start = a, .len = LETHE_PAGE_SIZE};
    for (unsigned i = 0; i < FAULT_MAX_REGIONS; i++) {
        struct lethe_region *r = atomic_load_explicit(&fault_regions[i], memory_order_acquire);
        if (r && r->uffd >= 0 && r->delivery == LETHE_DELIVERY_SIGNAL)
            ioctl(r->uffd, UFFDIO_UNREGISTER, &range);
    }
    return fault_mapping_is_uffd_missing(a) == 0;
}

static struct fault_vcpu *take_context(struct lethe_region *r)
{
    if (!thread_slot)
        thread_slot = atomic_fetch_add_explicit(&next_thread_slot, 1, memory_order_relaxed) + 1;
    struct fault_vcpu *v = &r->vcpus[(thread_slot - 1) % r->nvcpus];
    unsigned spins = 0;
    while (atomic_exchange_explicit(&v->busy, 1, memory_order_acquire)) {
        if (++spins > 32)
            sched_yield();
    }
    return v;
}

static void sigbus_handler(int sig, siginfo_t *si, void *uc)
{
    int saved_errno = errno;
    struct lethe_region *r = fault_region_of(si->si_addr);
    if (!r) {
        uint64_t frame;
        struct lethe_region *pr = fault_region_of_parking(si->si_addr, &frame);
        if (pr) {
            lethe_error("touch of parking slot %llu (%p) while it holds no page: a Lethe "
                        "runtime bug; aborting",
                        (unsigned long long)frame, si->si_addr);
            abort();
        }
        if (si->si_code == BUS_ADRERR && release_moved_out(si->si_addr)) {
            errno = saved_errno;
            return; /* retried as an ordinary access */
        }
        chain_sigbus(sig, si, uc);
        errno = saved_errno;
        return;
    }
    bool child = atomic_load_explicit(&r->child, memory_order_relaxed);
    if ((r->delivery != LETHE_DELIVERY_SIGNAL && !child) || si->si_code != BUS_ADRERR) {
        chain_sigbus(sig, si, uc);
        errno = saved_errno;
        return;
    }
    uint64_t vpn = lethe_region_vpn(r, si->si_addr);
    if (r->sync_wp && is_protection_fault(uc)) {
        fault_resolve_wp(r, vpn);
        errno = saved_errno;
        return;
    }
    enum lethe_access access = access_of(uc);
    int rc;
    if (child) {
        /* One thread, no locks: the core's locks may be held by threads that are gone. */
        rc = r->ops->child_fault ? r->ops->child_fault(r->core, &r->vcpus[0].pub, vpn, access)
                                 : -ENOTSUP;
    } else {
        unsigned spins = 0;
        while (atomic_load(&r->event_busy)) /* an event is being handled: see events.c */
            if (++spins > 32)
                sched_yield();
        struct fault_vcpu *v = take_context(r);
        atomic_store_explicit(&v->faults,
                              atomic_load_explicit(&v->faults, memory_order_relaxed) + 1,
                              memory_order_relaxed);
        rc = r->ops->fault(r->core, &v->pub, vpn, access);
        if (rc == -EAGAIN)
            atomic_store_explicit(&v->retries,
                                  atomic_load_explicit(&v->retries, memory_order_relaxed) + 1,
                                  memory_order_relaxed);
        atomic_store_explicit(&v->busy, 0, memory_order_release);
    }
    if (rc == -EAGAIN)
        sched_yield(); /* let the event thread read the event that blocks the ioctls */
    else if (rc < 0)
        fault_die(r, vpn, access, rc);
    errno = saved_errno;
}

int fault_signal_install(void)
{
    if (atomic_load(&sigbus_installed))
        return 0;
    pthread_mutex_lock(&install_lock);
    int rc = 0;
    if (!atomic_load(&sigbus_installed)) {
        struct sigaction sa;
        memset(&sa, 0, sizeof(sa));
        sa.sa_sigaction = sigbus_handler;
        sa.sa_flags = SA_SIGINFO | SA_ONSTACK | SA_RESTART;
        sigemptyset(&sa.sa_mask);
        struct sigaction before;
        if (sigaction(SIGBUS, &sa, &before) != 0) {
            rc = -errno;
        } else {
            chained_store(&before);
            atomic_store(&sigbus_installed, true);
        }
    }
    pthread_mutex_unlock(&install_lock);
    return rc;
}

static void altstack_free(void *mem)
{
    stack_t ss = {.ss_flags = SS_DISABLE};
    sigaltstack(&ss, NULL);
    munmap(mem, ALTSTACK_SIZE + LETHE_PAGE_SIZE);
}

static void altstack_key_create(void)
{
    pthread_key_create(&altstack_key, altstack_free);
}

int lethe_fault_thread_init(void)
{
    stack_t cur;
    if (sigaltstack(NULL, &cur) == 0 && !(cur.ss_flags & SS_DISABLE) &&
        cur.ss_size >= ALTSTACK_SIZE)
        return 0; /* the thread has a large enough one already: keep it */
    if (cur.ss_flags & SS_ONSTACK)
        return -EBUSY; /* called from a handler running on it */
    pthread_once(&altstack_once, altstack_key_create);
    char *mem = mmap(NULL, ALTSTACK_SIZE + LETHE_PAGE_SIZE, PROT_READ | PROT_WRITE,
                     MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
    if (mem == MAP_FAILED)
        return -errno;
    mprotect(mem, LETHE_PAGE_SIZE, PROT_NONE); /* guard page below the stack */
    stack_t ss = {.ss_sp = mem + LETHE_PAGE_SIZE, .ss_size = ALTSTACK_SIZE, .ss_flags = 0};
    if (sigaltstack(&ss, NULL) != 0) {
        int err = -errno;
        munmap(mem, ALTSTACK_SIZE + LETHE_PAGE_SIZE);
        return err;
    }
    pthread_setspecific(altstack_key, mem);
    return 0;
}

int fault_signal_start(struct lethe_region *r)
{
    int rc = lethe_fault_thread_init();
    if (rc < 0)
        lethe_warn("no alternate signal stack for this thread (%s)", strerror(-rc));
    for (unsigned i = 0; i < r->nvcpus; i++) {
        struct fault_vcpu *v = &r->vcpus[i];
        rc = r->ops->vcpu_init ? r->ops->vcpu_init(r->core, &v->pub) : 0;
        if (rc < 0) {
            lethe_error("vCPU %u: initialisation failed: %s", i, strerror(-rc));
            return rc;
        }
        v->initialized = true;
    }
    return fault_event_thread_start(r);
}

void fault_signal_stop(struct lethe_region *r)
{
    fault_event_thread_stop(r);
    for (unsigned i = 0; i < r->nvcpus; i++) {
        struct fault_vcpu *v = &r->vcpus[i];
        if (v->initialized && r->ops->vcpu_fini)
            r->ops->vcpu_fini(r->core, &v->pub);
        v->initialized = false;
    }
}
