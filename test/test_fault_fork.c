/* test_fault_fork.c — a forked child of a process with a managed region, in both delivery
 * modes: a child that execs works; a child reads its own copy of resident, parked (soft-
 * unmapped) and never-touched pages; its writes stay its own; touching a page whose only
 * copy is remote kills it with a message naming the page. The parent goes on serving.
 */
#include "test_fault_stub.h"

#include <criterion/criterion.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/wait.h>

static struct stub_core *start(enum lethe_delivery d)
{
    struct lethe_region_params p = stub_params(d, 2);
    struct stub_core *c = stub_start(&p);
    cr_assert_not_null(c, "region_create: %s", strerror(errno));
    return c;
}

static int wait_child(pid_t pid)
{
    int status = 0;
    cr_assert_eq(waitpid(pid, &status, 0), pid);
    return status;
}

static void check_exec(enum lethe_delivery d)
{
    struct stub_core *c = start(d);
    cr_assert(stub_check(0, stub_page(c, 0)));
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        execl("/bin/true", "true", (char *)NULL);
        _exit(127);
    }
    int st = wait_child(pid);
    cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "status %#x", st);
    cr_assert(stub_check(1, stub_page(c, 1)), "the parent still serves faults");
    stub_stop(c);
}

Test(fault_fork, child_that_execs_works)
{
    check_exec(LETHE_DELIVERY_THREAD);
    check_exec(LETHE_DELIVERY_SIGNAL);
}

/* Exit codes of the child: 0 all good, 10+ which check failed. */
static int child_reads(struct stub_core *c)
{
    if (!lethe_region_is_forked_child(c->r))
        return 10;
    if (!stub_check(1, stub_page(c, 1))) /* resident */
        return 11;
    if (!stub_check(2, stub_page(c, 2))) /* parked: child_fault maps it back from the slot */
        return 12;
    for (unsigned i = 0; i < LETHE_PAGE_SIZE; i++) /* never touched: zeros */
        if (stub_page(c, 3)[i] != 0)
            return 13;
    stub_page(c, 1)[0] ^= 0x7f; /* the child's writes are its own */
    stub_page(c, 2)[0] ^= 0x7f;
    if (atomic_load(&c->child_faults) != 2)
        return 14;
    if (!strstr(lethe_region_paths(c->r), "forked child"))
        return 15;
    return 0;
}

static void check_child_reads(enum lethe_delivery d)
{
    struct stub_core *c = start(d);
    cr_assert(stub_check(1, stub_page(c, 1)));
    cr_assert(stub_check(2, stub_page(c, 2)));
    cr_assert_eq(stub_park(c, 2, 9), 0);
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0)
        _exit(child_reads(c));
    int st = wait_child(pid);
    cr_assert(WIFEXITED(st), "child died: status %#x", st);
    cr_assert_eq(WEXITSTATUS(st), 0, "child check %d failed", WEXITSTATUS(st));
    cr_assert(stub_check(1, stub_page(c, 1)), "the child's write did not reach the parent");
    cr_assert(stub_check(2, stub_page(c, 2)), "the parent maps its parked page back");
    cr_assert_eq(atomic_load(&c->map_backs), 1);
    cr_assert(stub_check(3, stub_page(c, 3)), "and fills fresh pages as before");
    stub_stop(c);
}

Test(fault_fork, child_reads_its_copy_of_resident_parked_and_fresh_pages)
{
    check_child_reads(LETHE_DELIVERY_THREAD);
    check_child_reads(LETHE_DELIVERY_SIGNAL);
}

static void check_child_remote(enum lethe_delivery d)
{
    struct stub_core *c = start(d);
    atomic_store(&c->state[50], STUB_REMOTE);
    char path[64];
    snprintf(path, sizeof(path), "/tmp/lethe-fault-fork-%d", (int)getpid());
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
    cr_assert_geq(fd, 0);
    unlink(path);
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        dup2(fd, 2);
        signal(SIGABRT, SIG_DFL);
        volatile char x = stub_page(c, 50)[0];
        (void)x;
        _exit(0);
    }
    int st = wait_child(pid);
    cr_assert(WIFSIGNALED(st) && WTERMSIG(st) == SIGABRT, "child status %#x", st);
    char log[4096] = {0};
    cr_assert_gt(pread(fd, log, sizeof(log) - 1, 0), 0);
    close(fd);
    cr_assert(strstr(log, "page 50") != NULL, "stderr: %s", log);
    cr_assert(strstr(log, "memory node") != NULL, "stderr: %s", log);
    cr_assert(strstr(log, "could not be served") != NULL, "stderr: %s", log);
    cr_assert(stub_check(50, stub_page(c, 50)), "the parent serves the page from remote");
    stub_stop(c);
}

Test(fault_fork, child_touching_a_remote_page_dies_naming_it)
{
    check_child_remote(LETHE_DELIVERY_THREAD);
    check_child_remote(LETHE_DELIVERY_SIGNAL);
}

Test(fault_fork, child_of_a_copy_fallback_region_reads_parked_pages)
{
    struct lethe_region_params p = stub_params(LETHE_DELIVERY_THREAD, 2);
    p.force_fallback_move = true;
    struct stub_core *c = stub_start(&p);
    cr_assert_not_null(c);
    cr_assert(stub_check(1, stub_page(c, 1)));
    cr_assert(stub_check(2, stub_page(c, 2)));
    cr_assert_eq(stub_park(c, 2, 9), 0);
    pid_t pid = fork();
    if (pid == 0)
        _exit(child_reads(c));
    int st = wait_child(pid);
    cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "status %#x", st);
    stub_stop(c);
}
