/* signals.c — keeping the runtime's SIGBUS handler in force, and signal masks off the heap.
 *
 * Once the runtime is up, its SIGBUS handler serves every fault in signal delivery mode, and
 * in both modes the faults of a forked child. Two things a program commonly does would take
 * it away, and the next touch of a swapped-out page would kill the process with a bare
 * "Bus error":
 *
 *  - installing its own SIGBUS handler, or resetting every handler to SIG_DFL before an exec
 *    (Python's subprocess does so in its vforked child, which shares the parent's memory and
 *    reads the command line from it);
 *  - blocking SIGBUS (sigfillset, then sigprocmask or pthread_sigmask: daemons' worker
 *    threads, Python around its vfork): the kernel delivers a fault's SIGBUS even when it is
 *    blocked, but with the default action.
 *
 * So, while the runtime's handler is installed: sigaction, signal, bsd_signal and
 * sysv_signal on SIGBUS change the handler that the runtime passes a SIGBUS outside every
 * region to (lethe_fault_sigbus_chain), not the process's, and report that one as the old
 * handler; SIGBUS is taken out of the sets that sigprocmask and pthread_sigmask block or set,
 * and out of every handler's sa_mask. A SIGBUS outside the region still reaches the program's
 * handler (or kills, by default) as without Lethe.
 *
 * The signal sets and the struct sigaction also go through copies on the stack, so that the
 * kernel never reads or writes them in the region (a missing page there fails the call with
 * EFAULT in signal mode).
 *
 * Before start-up, in processes where Lethe is dormant and in threads-only uses without a
 * region, every call passes straight through.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <string.h>

#include "fault/fault.h"
#include "preload/preload.h"

typedef int (*sigmask_fn)(int, const sigset_t *, sigset_t *);
typedef int (*sigaction_fn)(int, const struct sigaction *, struct sigaction *);
typedef sighandler_t (*signal_fn)(int, sighandler_t);

PRELOAD_REAL(sigprocmask, sigmask_fn)
PRELOAD_REAL(pthread_sigmask, sigmask_fn)
PRELOAD_REAL(sigaction, sigaction_fn)
PRELOAD_REAL(signal, signal_fn)
PRELOAD_REAL(bsd_signal, signal_fn)
PRELOAD_REAL(sysv_signal, signal_fn)

void signals_init(void)
{
    get_sigprocmask();
    get_pthread_sigmask();
    get_sigaction();
    get_signal();
    get_bsd_signal();
    get_sysv_signal();
}

/* sigprocmask returns -1 with errno, pthread_sigmask an error number: both 0 on success. */
static int sigmask_kept(sigmask_fn call, int how, const sigset_t *set, sigset_t *old)
{
    sigset_t set_copy, old_copy;
    if (set) {
        memcpy(&set_copy, set, sizeof(set_copy));
        if (how != SIG_UNBLOCK && lethe_fault_sigbus_installed())
            sigdelset(&set_copy, SIGBUS);
    }
    int rc = call(how, set ? &set_copy : NULL, old ? &old_copy : NULL);
    if (rc == 0 && old)
        memcpy(old, &old_copy, sizeof(old_copy));
    return rc;
}

int sigprocmask(int how, const sigset_t *set, sigset_t *old)
{
    return sigmask_kept(get_sigprocmask(), how, set, old);
}

int pthread_sigmask(int how, const sigset_t *set, sigset_t *old)
{
    return sigmask_kept(get_pthread_sigmask(), how, set, old);
}

int sigaction(int sig, const struct sigaction *act, struct sigaction *old)
{
    struct sigaction act_copy, old_copy;
    bool kept = lethe_fault_sigbus_installed();
    if (act) {
        memcpy(&act_copy, act, sizeof(act_copy));
        if (kept)
            sigdelset(&act_copy.sa_mask, SIGBUS);
    }
    int rc;
    if (sig == SIGBUS && kept) {
        rc = lethe_fault_sigbus_chain(act ? &act_copy : NULL, old ? &old_copy : NULL);
        if (rc < 0) { /* -ENOENT: the handler is gone, which it never is once installed */
            errno = -rc;
            return -1;
        }
    } else {
        rc = get_sigaction()(sig, act ? &act_copy : NULL, old ? &old_copy : NULL);
    }
    if (rc == 0 && old)
        memcpy(old, &old_copy, sizeof(old_copy));
    return rc;
}

/* signal() and its variants on SIGBUS, as glibc builds them: BSD semantics (the signal
 * blocked in its handler, system calls restarted) or System V's (reset to the default
 * action on delivery, not blocked). */
static sighandler_t chain_handler(sighandler_t handler, bool sysv)
{
    struct sigaction act, old;
    memset(&act, 0, sizeof(act));
    act.sa_handler = handler;
    sigemptyset(&act.sa_mask);
    act.sa_flags = sysv ? SA_RESETHAND | SA_NODEFER : SA_RESTART;
    if (lethe_fault_sigbus_chain(&act, &old) < 0)
        return SIG_ERR;
    return (old.sa_flags & SA_SIGINFO) ? (sighandler_t)(void *)old.sa_sigaction : old.sa_handler;
}

sighandler_t signal(int sig, sighandler_t handler)
{
    if (sig == SIGBUS && lethe_fault_sigbus_installed())
        return chain_handler(handler, false);
    return get_signal()(sig, handler);
}

sighandler_t bsd_signal(int sig, sighandler_t handler)
{
    if (sig == SIGBUS && lethe_fault_sigbus_installed())
        return chain_handler(handler, false);
    return get_bsd_signal()(sig, handler);
}

sighandler_t sysv_signal(int sig, sighandler_t handler)
{
    if (sig == SIGBUS && lethe_fault_sigbus_installed())
        return chain_handler(handler, true);
    return get_sysv_signal()(sig, handler);
}
