/* test_lethed_programs.c — real programs under lethed, each with a heap about four times the
 * local cache, give exactly the output they give without Lethe; and their heap really was
 * managed (pages were swapped back in from the memory node). */
#include "test_lethed_util.h"

TestSuite(programs, .init = tl_setup, .fini = tl_teardown, .timeout = 120);

/* The number after "swap-ins " in lethed's final line, or -1. */
static long swap_ins_reported(const char *err_path)
{
    char *err = tl_read_file(err_path);
    char *line = err ? strstr(err, "lethed: `") : NULL;
    char *p = line ? strstr(line, "swap-ins ") : NULL;
    long v = p ? strtol(p + strlen("swap-ins "), NULL, 10) : -1;
    free(err);
    return v;
}

/* Runs cmd plainly and under lethed (cache `cache`, `extra` config), compares stdout. */
static void same_output(const char *cache, const char *extra, char *const cmd[])
{
    cr_assert_eq(tl_run(cmd, NULL, tl_file("plain.out"), NULL, 60), 0,
                 "%s fails even without Lethe", cmd[0]);
    const char *conf = tl_config("run.conf", cache, extra);
    char *argv[32] = {TL_LETHED, "-c", (char *)conf, "--"};
    int n = 4;
    for (int i = 0; cmd[i] && n < 31; i++)
        argv[n++] = cmd[i];
    argv[n] = NULL;
    int status = tl_run(argv, NULL, tl_file("lethe.out"), tl_file("lethe.err"), 100);
    char *err = tl_read_file(tl_file("lethe.err"));
    cr_assert_eq(status, 0, "%s under lethed exited %d:\n%s", cmd[0], status, err);
    char *plain = tl_read_file(tl_file("plain.out")), *under = tl_read_file(tl_file("lethe.out"));
    cr_assert(tl_files_equal(tl_file("plain.out"), tl_file("lethe.out")),
              "%s: the output under Lethe differs from the plain run\n"
              "plain:\n%.2000s\nunder Lethe:\n%.2000s\nlethed's stderr:\n%s",
              cmd[0], plain ? plain : "(none)", under ? under : "(none)", err);
    free(plain);
    free(under);
    free(err);
    long swap_ins = swap_ins_reported(tl_file("lethe.err"));
    cr_assert_gt(swap_ins, 0, "%s: the heap was managed (swap-ins %ld)", cmd[0], swap_ins);
}

Test(programs, mixed_object_sizes_four_times_the_cache)
{
    char *cmd[] = {TL_PROG("app_mixed"), "32", NULL};
    same_output("8M", "", cmd);
}

Test(programs, heap_buffers_handed_to_read_and_write)
{
    char *cmd[] = {TL_PROG("app_mixed"), "32", "--io", (char *)tl_file("io.tmp"), NULL};
    same_output("8M", "", cmd);
}

Test(programs, a_program_a_shell_execs_reports_its_own_stats)
{
    /* `sh -c 'exec prog'` (the documented way through a shell): the shell starts Lethe, then
     * becomes prog in the same process, whose new image must find the stats segment again,
     * so that lethed's final line counts prog's swap-ins, not the shell's none */
    char line[512];
    snprintf(line, sizeof(line), "exec %s 32", TL_PROG("app_mixed"));
    char *cmd[] = {"/bin/sh", "-c", line, NULL};
    same_output("8M", "", cmd);
    char *err = tl_read_file(tl_file("lethe.err"));
    cr_assert(err && !strstr(err, "cannot use the stats segment"),
              "the exec'd image did not find the stats segment:\n%s", err);
    free(err);
}

Test(programs, gnu_sort_of_a_file_larger_than_the_cache)
{
    /* sort's heap is about 3x its input: 2.5 MB of lines against a 2 MiB cache. */
    FILE *f = fopen(tl_file("input.txt"), "w");
    uint64_t x = 88172645463325252ULL;
    for (int i = 0; i < 60000; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        fprintf(f, "%016llx %.*s\n", (unsigned long long)x, (int)(x % 40),
                "lethe-lethe-lethe-lethe-lethe-lethe-lethe-lethe");
    }
    fclose(f);
    char *cmd[] = {"/usr/bin/sort", (char *)tl_file("input.txt"), NULL};
    if (access(cmd[0], X_OK) != 0)
        cr_skip_test("no /usr/bin/sort");
    same_output("2M", "", cmd);
}

Test(programs, python_building_and_checksumming_a_large_dict)
{
    if (access("/usr/bin/python3", X_OK) != 0)
        cr_skip_test("no /usr/bin/python3");
    char *cmd[] = {"/usr/bin/python3", "-c",
                   "import zlib\n"
                   "d = {}\n"
                   "for i in range(100000):\n"
                   "    d['k%07d' % i] = ('v%d-' % (i * 7919 % 100003)) * 8\n"
                   "c = 0\n"
                   "for k in sorted(d):\n"
                   "    c = zlib.crc32(k.encode() + d[k].encode(), c)\n"
                   "print(len(d), sum(len(v) for v in d.values()), '%08x' % c)\n",
                   NULL};
    same_output("8M", "", cmd);
}

Test(programs, threads_allocating_and_freeing_across_each_other)
{
    char *cmd[] = {TL_PROG("app_threads"), "32", "4", NULL};
    same_output("8M", "", cmd);
}

Test(programs, fork_exec_system_and_popen)
{
    char *cmd[] = {TL_PROG("app_forkexec"), "32", NULL};
    same_output("8M", "", cmd);
}

Test(programs, exit_called_from_a_thread_while_others_run)
{
    const char *conf = tl_config("run.conf", "8M", "");
    char *argv[] = {TL_LETHED, "-c", (char *)conf,         "--", TL_PROG("app_threads"),
                    "32",      "4",  "--exit-from-thread", "7",  NULL};
    cr_assert_eq(tl_run(argv, NULL, tl_file("out"), tl_file("err"), 60), 7);
    char *out = tl_read_file(tl_file("out"));
    cr_assert(strstr(out, " ok\n"), "%s", out);
    free(out);
    char *err = tl_read_file(tl_file("err"));
    cr_assert(strstr(err, "lethe summary"), "the summary is printed at exit:\n%s", err);
    free(err);
}

Test(programs, local_transport_needs_no_memory_node)
{
    char *cmd[] = {TL_PROG("app_mixed"), "32", NULL};
    same_output("8M", "[transport]\ntransport = local\n", cmd);
    char *err = tl_read_file(tl_file("lethe.err"));
    cr_assert_null(strstr(err, "embedded memory node"), "%s", err);
    free(err);
}

Test(programs, tcp_transport_with_the_embedded_node)
{
    char *cmd[] = {TL_PROG("app_mixed"), "32", NULL};
    same_output("8M", "[transport]\ntransport = tcp\n", cmd);
}

Test(programs, signal_delivery_with_heap_buffers_in_system_calls)
{
    char *cmd[] = {TL_PROG("app_mixed"), "32", "--io", (char *)tl_file("io.tmp"), NULL};
    same_output("8M", "[fault]\nfault_delivery = signal\n", cmd);
}

Test(programs, stdio_streams_under_signal_delivery)
{
    /* stdout's buffer, a FILE's buffer, fwrite/fread/fputs of heap memory and a heap path,
     * each gone cold in a 2 MiB cache: in signal mode the kernel cannot fault their pages
     * in, so liblethe.so keeps stream buffers outside the region and makes the rest present
     * first (the program checks every count and byte, and the flush of stdout) */
    char *cmd[] = {TL_PROG("app_stdio"), "8", tl_dir, NULL};
    same_output("2M", "[fault]\nfault_delivery = signal\n", cmd);
}

Test(programs, heap_paths_structs_and_wait_arrays_under_signal_delivery)
{
    /* stat/access/rename/unlink/mkdir/rmdir of cold heap paths into cold heap structs,
     * fstat, poll/ppoll and epoll_wait/epoll_pwait on cold heap arrays, in a 2 MiB cache */
    char *cmd[] = {TL_PROG("app_calls"), "4", tl_dir, NULL};
    same_output("2M", "[fault]\nfault_delivery = signal\n", cmd);
}

Test(programs, listings_selects_links_and_spawns_under_signal_delivery)
{
    /* scandir/scandirat/readdir_r of a directory longer than a DIR's buffer, select/pselect on
     * cold heap fd_sets, symlink/link/chown/utimensat/statvfs/mkstemp/xattrs of cold heap
     * paths, posix_spawn/system of cold heap command lines, and an execv of a cold heap path
     * and argv, in a 2 MiB cache: glibc makes most of these system calls itself, where the
     * kernel cannot fault a region page in under signal delivery */
    char *cmd[] = {TL_PROG("app_calls"), "4", tl_dir, "more", NULL};
    same_output("2M", "[fault]\nfault_delivery = signal\n", cmd);
}

Test(programs, calls_with_few_pins_under_signal_delivery)
{
    /* the same in a 256 KiB cache, where system calls may pin 16 pages at once and sends 8:
     * the pages beyond them are only touched (EFAULT retried, one page through the stack),
     * and datagram receives must still lose nothing (a send and a receive run at once) */
    char *cmd[] = {TL_PROG("app_calls"), "1", tl_dir, "more", NULL};
    same_output("256K", "[fault]\nfault_delivery = signal\n", cmd);
}

/* How often `needle` occurs in the file. */
static int occurrences(const char *path, const char *needle)
{
    char *text = tl_read_file(path);
    int n = 0;
    for (const char *p = text; p && (p = strstr(p, needle)); p += strlen(needle))
        n++;
    free(text);
    return n;
}

Test(programs, heap_the_program_protects_itself_under_signal_delivery)
{
    /* pages read back into a range the program made read-only, resident read-only pages
     * churned past, a write that must still fault, a guard page. With batch parking (the
     * default) read-only pages leave the cache like any other: nothing to report */
    char *cmd[] = {TL_PROG("app_protect"), "8", NULL};
    same_output("2M", "[fault]\nfault_delivery = signal\n", cmd);
    cr_assert_eq(occurrences(tl_file("lethe.err"), "cannot leave the cache"), 0,
                 "read-only pages leave the cache under batch parking");
}

Test(programs, heap_the_program_protects_itself_under_signal_delivery_move_parking)
{
    /* with one UFFDIO_MOVE per page (which refuses read-only ranges) they are copied in and
     * stay while read-only; the pages that cannot leave are reported once */
    char *cmd[] = {TL_PROG("app_protect"), "8", NULL};
    same_output("2M", "[fault]\nfault_delivery = signal\nparking = move\n", cmd);
    cr_assert_eq(occurrences(tl_file("lethe.err"), "cannot leave the cache"), 1,
                 "read-only pages are reported once, not per page");
}

Test(programs, heap_the_program_protects_and_locks_under_thread_delivery)
{
    /* the same, and a locked (mlock) block that must stay resident through the churn */
    char *cmd[] = {TL_PROG("app_protect"), "8", "lock", NULL};
    same_output("2M", "", cmd);
    /* the program checks that the locked block stayed resident; whether a locked page came
     * by as a demotion victim depends on the run, but it is never reported twice */
    cr_assert_leq(occurrences(tl_file("lethe.err"), "cannot leave the cache"), 1,
                  "locked pages are reported once, not per page");
}

Test(programs, mlockall_is_refused_and_the_program_goes_on)
{
    /* mlockall(MCL_CURRENT) would bring in and lock the whole region and the parking area,
     * whose missing pages nobody serves: under thread delivery the call hung for good */
    const char *conf = tl_config("run.conf", "2M", "");
    char *prog = TL_PROG("app_protect");
    char *argv[] = {TL_LETHED, "-c", (char *)conf, "--", prog, "8", "lockall", NULL};
    int status = tl_run(argv, NULL, tl_file("lethe.out"), tl_file("lethe.err"), 60);
    char *out = tl_read_file(tl_file("lethe.out")), *err = tl_read_file(tl_file("lethe.err"));
    cr_assert_eq(status, 0, "exit %d:\n%s\n%s", status, out, err);
    cr_assert(out && strstr(out, "mlockall: Cannot allocate memory") && strstr(out, ", ok\n"),
              "mlockall is refused with ENOMEM and the checks pass:\n%s", out);
    cr_assert(err && strstr(err, "mlockall(MCL_CURRENT) refused"), "and it is said:\n%s", err);
    free(out);
    free(err);
}

Test(programs, read_only_heap_larger_than_the_cache_ends_the_program_with_the_reason)
{
    /* 1 MiB made read-only in a 512 KiB cache with parking = move (UFFDIO_MOVE refuses
     * read-only ranges): no page can leave once they fill it; the program must stop with a
     * message that says so, not hang */
    const char *conf = tl_config("run.conf", "512K", "[fault]\nparking = move\n");
    char *argv[] = {TL_LETHED, "-c", (char *)conf, "--", TL_PROG("app_protect"), "4", NULL};
    int status = tl_run(argv, NULL, tl_file("lethe.out"), tl_file("lethe.err"), 60);
    char *err = tl_read_file(tl_file("lethe.err"));
    cr_assert_neq(status, 0, "the program ran to the end:\n%s", err);
    cr_assert(err && strstr(err, "no page can leave the cache") && strstr(err, "mprotect"),
              "no message naming the cause:\n%s", err);
    cr_assert(strstr(err, "could not be served"), "the fault that stopped it is named:\n%s", err);
    free(err);
}

Test(programs, read_only_heap_larger_than_the_cache_swaps_under_batch_parking)
{
    /* the same heap with the default batch parking: read-only pages are unmapped and copied
     * back like any other, so the program runs to the end with the output it has alone */
    char *cmd[] = {TL_PROG("app_protect"), "4", NULL};
    same_output("512K", "", cmd);
    cr_assert_eq(occurrences(tl_file("lethe.err"), "cannot leave the cache"), 0);
}

Test(programs, listings_selects_links_and_spawns_under_thread_delivery)
{
    /* the same program with the default delivery, where the kernel's own accesses fault
     * like the program's and the wrappers above only pass the calls on (execv and the execl
     * forms go through liblethe's execve in both modes) */
    char *cmd[] = {TL_PROG("app_calls"), "4", tl_dir, "more", NULL};
    same_output("2M", "", cmd);
}

Test(programs, formatted_output_of_a_fortified_program_under_signal_delivery)
{
    /* the same program built with _FORTIFY_SOURCE=2: fprintf, vfprintf and dprintf of a cold
     * 192 KiB heap string arrive as __fprintf_chk, __vfprintf_chk and __dprintf_chk */
    char *cmd[] = {TL_PROG("app_stdio_fortified"), "8", tl_dir, "formatted", NULL};
    same_output("2M", "[fault]\nfault_delivery = signal\n", cmd);
}

Test(programs, a_program_that_takes_sigbus_and_blocks_every_signal_under_signal_delivery)
{
    /* its own SIGBUS handler (sigaction, then signal), every signal blocked in two threads,
     * a handler with a full sa_mask, all while reading back a heap 8x the cache: the faults
     * must still be served, and a SIGBUS beyond a file mapping's end must reach the
     * program's handler */
    char *cmd[] = {TL_PROG("app_signals"), "16", tl_dir, NULL};
    same_output("2M", "[fault]\nfault_delivery = signal\n", cmd);
}

Test(programs, a_program_that_takes_sigbus_and_blocks_every_signal_under_thread_delivery)
{
    /* the runtime's SIGBUS handler stays for forked children here: the program is told of
     * and given its own handler all the same */
    char *cmd[] = {TL_PROG("app_signals"), "16", tl_dir, NULL};
    same_output("2M", "", cmd);
}

Test(programs, threads_asleep_on_heap_locks_while_the_heap_is_swapped_under_signal_delivery)
{
    /* the kernel reads a futex word itself, where a swapped-out page cannot be served by
     * SIGBUS and glibc aborts on the EFAULT: liblethe.so pins the object of every wait */
    char *cmd[] = {TL_PROG("app_sync"), "8", NULL};
    same_output("2M", "[fault]\nfault_delivery = signal\n", cmd);
}

Test(programs, threads_asleep_on_heap_locks_while_the_heap_is_swapped_under_thread_delivery)
{
    char *cmd[] = {TL_PROG("app_sync"), "8", NULL};
    same_output("2M", "", cmd);
}

Test(programs, python_subprocesses_under_signal_delivery)
{
    /* Python's subprocess vforks: its child resets every signal handler, blocks signals,
     * closes every descriptor, then reads the command line from the parent's heap, which a
     * 2 MiB cache has mostly swapped out */
    if (access("/usr/bin/python3", X_OK) != 0)
        cr_skip_test("no /usr/bin/python3");
    char *cmd[] = {"/usr/bin/python3", "-c",
                   "import subprocess\n"
                   "keep = []\n"
                   "for i in range(24):\n"
                   "    keep.append(bytearray(b'%d' % i) * 300000)\n"
                   "    del keep[:-6]\n"
                   "    r = subprocess.run(['/bin/echo', 'run', str(i), 'x' * 3000],\n"
                   "                       capture_output=True)\n"
                   "    print(r.returncode, r.stdout[:12], len(r.stdout))\n",
                   NULL};
    same_output("2M", "[fault]\nfault_delivery = signal\n", cmd);
}

Test(programs, python_threads_started_after_the_locale_went_cold_under_signal_delivery)
{
    /* Python loads the locale at start-up; glibc reads its ctype data at the start of every
     * new thread with all signals blocked, where a swapped-out page cannot be served by
     * SIGBUS: liblethe.so keeps locale data outside the region */
    if (access("/usr/bin/python3", X_OK) != 0)
        cr_skip_test("no /usr/bin/python3");
    char *cmd[] = {"/usr/bin/python3", "-c",
                   "import threading\n"
                   "keep = []\n"
                   "total = []\n"
                   "for i in range(16):\n"
                   "    keep.append(bytearray(b'%d' % i) * 400000)\n"
                   "    del keep[:-5]\n"
                   "    t = threading.Thread(target=lambda n=i: total.append(sum(range(n * 1000))))\n"
                   "    t.start()\n"
                   "    t.join()\n"
                   "print(len(total), sum(total))\n",
                   NULL};
    same_output("2M", "[fault]\nfault_delivery = signal\n", cmd);
}
