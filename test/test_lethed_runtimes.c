/* test_lethed_runtimes.c — real programs whole. Programs that reserve their heap first and
 * commit it later (JVMs, V8, Go-style allocators) get it managed: same output as without
 * Lethe, pages swapped back in from the memory node, and a peak resident size well under the
 * program's own. Programs that fork without exec (Redis's BGSAVE, Python's multiprocessing)
 * get children that see the heap as of the fork, pages that were out included.
 *
 * The Java and Node.js cases are heavy real programs: they run in the plain build only (in a
 * sanitizer build liblethe.so is the same unsanitized library, so they would only repeat),
 * and skip, saying so, where the runtime is not installed (scripts/install-deps.sh installs
 * both). */
#include "test_lethed_util.h"

TestSuite(runtimes, .init = tl_setup, .fini = tl_teardown, .timeout = 180);

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define SKIP_HEAVY()                                                                               \
    cr_skip_test("heavy real program: run in the plain build only (liblethe.so is not "            \
                 "sanitized in this build either)")
#else
#define SKIP_HEAVY() ((void)0)
#endif

/* The program's own resident memory in KiB: RssAnon + RssFile of /proc/PID/status. The
 * memory node's shared memory that the shm transport maps (RssShmem) is left out: it is the
 * node's memory, standing in for another machine's. 0 once the process is gone. */
static long own_rss_kib(pid_t pid)
{
    char path[64], line[256];
    snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return 0;
    long anon = 0, file = 0;
    while (fgets(line, sizeof(line), f)) {
        sscanf(line, "RssAnon: %ld", &anon);
        sscanf(line, "RssFile: %ld", &file);
    }
    fclose(f);
    return anon + file;
}

/* The pid lethed reports for its program ("... (pid N) under Lethe"), or 0 while not yet. */
static pid_t program_pid(const char *err_path)
{
    char *err = tl_read_file(err_path);
    const char *p = err ? strstr(err, "` (pid ") : NULL;
    pid_t pid = p ? (pid_t)strtol(p + strlen("` (pid "), NULL, 10) : 0;
    free(err);
    return pid;
}

struct run {
    int status;
    long peak_kib; /* largest own_rss_kib sampled, every 10 ms */
    long swap_ins; /* from lethed's final line; -1 for a plain run */
};

/* Runs argv (plain, or under lethed when conf is given) with stdout to out_name, sampling the
 * program's resident memory until it exits. */
static struct run run_sampled(char *const cmd[], const char *conf, const char *out_name)
{
    char *argv[32];
    int n = 0;
    if (conf) {
        argv[n++] = TL_LETHED;
        argv[n++] = "-c";
        argv[n++] = (char *)conf;
        argv[n++] = "--";
    }
    for (int i = 0; cmd[i] && n < 31; i++)
        argv[n++] = cmd[i];
    argv[n] = NULL;
    const char *err_path = tl_file(conf ? "lethe.err" : "plain.err");
    int out = open(tl_file(out_name), O_WRONLY | O_CREAT | O_TRUNC, 0600);
    int err = open(err_path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    pid_t pid = tl_spawn(argv, NULL, -1, out, err);
    close(out);
    close(err);
    struct run r = {.swap_ins = -1};
    pid_t prog = conf ? 0 : pid;
    double deadline = tl_now() + 150;
    int st;
    while (waitpid(pid, &st, WNOHANG) != pid) {
        if (tl_now() > deadline) {
            kill(pid, SIGKILL);
            waitpid(pid, &st, 0);
            cr_assert_fail("%s did not finish within 150 s", cmd[0]);
        }
        if (!prog)
            prog = program_pid(err_path);
        long kib = prog ? own_rss_kib(prog) : 0;
        if (kib > r.peak_kib)
            r.peak_kib = kib;
        usleep(10000);
    }
    r.status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
    if (conf) {
        char *text = tl_read_file(err_path);
        const char *line = text ? strstr(text, "lethed: `") : NULL;
        const char *p = line ? strstr(line, "swap-ins ") : NULL;
        r.swap_ins = p ? strtol(p + strlen("swap-ins "), NULL, 10) : -1;
        free(text);
    }
    return r;
}

/* Runs cmd plainly and under lethed (cache, extra config); the outputs must be the same and
 * the heap managed. Returns both runs' peaks through plain/under. */
static void same_output_sampled(const char *cache, const char *extra, char *const cmd[],
                                struct run *plain, struct run *under)
{
    *plain = run_sampled(cmd, NULL, "plain.out");
    char *perr = tl_read_file(tl_file("plain.err"));
    cr_assert_eq(plain->status, 0, "%s fails even without Lethe:\n%s", cmd[0], perr);
    free(perr);
    *under = run_sampled(cmd, tl_config("run.conf", cache, extra), "lethe.out");
    char *err = tl_read_file(tl_file("lethe.err"));
    cr_assert_eq(under->status, 0, "%s under lethed exited %d:\n%s", cmd[0], under->status, err);
    char *a = tl_read_file(tl_file("plain.out")), *b = tl_read_file(tl_file("lethe.out"));
    cr_assert(tl_files_equal(tl_file("plain.out"), tl_file("lethe.out")),
              "%s: the output under Lethe differs\nplain:\n%.2000s\nunder Lethe:\n%.2000s\n%s",
              cmd[0], a ? a : "(none)", b ? b : "(none)", err);
    cr_assert_gt(under->swap_ins, 0, "%s: its heap was not managed (swap-ins %ld):\n%s", cmd[0],
                 under->swap_ins, err);
    free(a);
    free(b);
    free(err);
}

/* A test program with 32 MiB of heap under an 8 MiB cache. */
static void app_under_8m(const char *prog, const char *extra)
{
    char *cmd[] = {(char *)prog, "32", NULL};
    struct run plain, under;
    same_output_sampled("8M", extra, cmd, &plain, &under);
}

static void reserved_heap(const char *extra)
{
    app_under_8m(TL_PROG("app_reserve"), extra);
}

Test(runtimes, a_heap_reserved_first_and_committed_later_under_thread_delivery)
{
    reserved_heap("");
}

Test(runtimes, a_heap_reserved_first_and_committed_later_under_signal_delivery)
{
    reserved_heap("[fault]\nfault_delivery = signal\n");
}

Test(runtimes, a_heap_reserved_first_and_committed_later_with_direct_reclaim_over_tcp)
{
    reserved_heap("[cache]\nreclaim = direct\n[transport]\ntransport = tcp\n");
}

/* A managed runtime under a 32 MiB cache: same output, swap-ins, and a peak resident size
 * under 60% of the program's own. */
static void managed_runtime(char *const cmd[])
{
    struct run plain, under;
    same_output_sampled("32M", "", cmd, &plain, &under);
    cr_log_info("%s: peak %ld KiB alone, %ld KiB under Lethe (%.0f%%), %ld swap-ins", cmd[0],
                plain.peak_kib, under.peak_kib, 100.0 * (double)under.peak_kib / plain.peak_kib,
                under.swap_ins);
    cr_assert_lt(under.peak_kib * 10, plain.peak_kib * 6,
                 "%s: peak resident %ld KiB under Lethe, %ld KiB alone: not under 60%%", cmd[0],
                 under.peak_kib, plain.peak_kib);
}

Test(runtimes, a_java_heap_four_times_the_cache)
{
    SKIP_HEAVY();
    if (access("/usr/bin/java", X_OK) != 0 || access("/usr/bin/javac", X_OK) != 0)
        cr_skip_test("no /usr/bin/java and /usr/bin/javac (openjdk-17-jdk-headless)");
    tl_write_file(
        tl_file("Heap.java"),
        "import java.util.HashMap;\n"
        "public class Heap {\n"
        "  public static void main(String[] a) {\n"
        "    HashMap<Integer, String> m = new HashMap<>();\n"
        "    for (int i = 0; i < 850000; i++) m.put(i, \"value-\" + (i * 7919L % 100003));\n"
        "    long s = 0;\n"
        "    for (int r = 0; r < 2; r++)\n"
        "      for (int i = 0; i < 850000; i += 3) s += m.get(i).length() * (long) (i % 7);\n"
        "    System.out.println(m.size() + \" \" + s);\n"
        "  }\n"
        "}\n");
    char *javac[] = {"/usr/bin/javac", "-d", (char *)tl_file("."), (char *)tl_file("Heap.java"),
                     NULL};
    cr_assert_eq(tl_run(javac, NULL, NULL, tl_file("javac.err"), 120), 0, "javac failed");
    char *cmd[] = {"/usr/bin/java", "-Xmx512m", "-XX:+UseSerialGC", "-cp", (char *)tl_file("."),
                   "Heap",          NULL};
    managed_runtime(cmd);
}

Test(runtimes, a_node_heap_four_times_the_cache)
{
    SKIP_HEAVY();
    if (access("/usr/bin/node", X_OK) != 0)
        cr_skip_test("no /usr/bin/node (nodejs)");
    char *cmd[] = {"/usr/bin/node", "-e",
                   "const m = new Map();\n"
                   "for (let i = 0; i < 600000; i++) m.set(i, 'value-' + (i * 7919 % 100003));\n"
                   "let s = 0;\n"
                   "for (const [k, v] of m) s += v.length * (k % 7);\n"
                   "console.log(m.size, s);\n",
                   NULL};
    managed_runtime(cmd);
}

/* --- fork without exec --- */

static void forked_children(const char *extra)
{
    app_under_8m(TL_PROG("app_fork"), extra);
}

Test(runtimes, forked_children_see_the_heap_as_of_the_fork_under_thread_delivery)
{
    forked_children("");
}

Test(runtimes, forked_children_see_the_heap_as_of_the_fork_under_signal_delivery)
{
    forked_children("[fault]\nfault_delivery = signal\n");
}

Test(runtimes, forked_children_see_the_heap_as_of_the_fork_with_direct_reclaim)
{
    forked_children("[cache]\nreclaim = direct\n");
}

Test(runtimes, forked_children_see_the_heap_as_of_the_fork_over_tcp)
{
    /* the child cannot share the parent's connection: it attaches one of its own */
    forked_children("[transport]\ntransport = tcp\n[cache]\nreclaim = direct\n");
}

Test(runtimes, python_multiprocessing_with_fork_over_a_list_larger_than_the_cache)
{
    if (access("/usr/bin/python3", X_OK) != 0)
        cr_skip_test("no /usr/bin/python3");
    char *cmd[] = {"/usr/bin/python3", "-c",
                   "import multiprocessing as mp, zlib\n"
                   "data = [('item-%07d-' % i) * 6 for i in range(200000)]\n"
                   "def work(k):\n"
                   "    c = 0\n"
                   "    for s in data[k::4]:\n"
                   "        c = zlib.crc32(s.encode(), c)\n"
                   "    return c\n"
                   "if __name__ == '__main__':\n"
                   "    mp.set_start_method('fork')\n"
                   "    with mp.Pool(4) as p:\n"
                   "        r = p.map(work, range(4))\n"
                   "    print(len(data), ['%08x' % x for x in r])\n",
                   NULL};
    struct run plain, under;
    same_output_sampled("8M", "", cmd, &plain, &under);
}

/* --- Redis: SET, GET, BGSAVE, redis-check-rdb, restart from the snapshot --- */

#define REDIS_KEYS 150000

static int redis_cli(int port, const char *args, const char *out_name)
{
    char line[1024];
    snprintf(line, sizeof(line), "/usr/bin/redis-cli -p %d %s", port, args);
    char *argv[] = {"/bin/sh", "-c", line, NULL};
    return tl_run(argv, NULL, out_name ? tl_file(out_name) : NULL, NULL, 60);
}

static bool redis_says(int port, const char *args, const char *needle)
{
    if (redis_cli(port, args, "cli.out") != 0)
        return false;
    char *out = tl_read_file(tl_file("cli.out"));
    bool yes = out && strstr(out, needle);
    free(out);
    return yes;
}

static pid_t redis_start(const char *conf, int port)
{
    char portbuf[16];
    snprintf(portbuf, sizeof(portbuf), "%d", port);
    char *argv[] = {TL_LETHED,
                    "-c",
                    (char *)conf,
                    "--",
                    "/usr/bin/redis-server",
                    "--port",
                    portbuf,
                    "--dir",
                    (char *)tl_file("."),
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                    NULL};
    int fd = open(tl_file("redis.err"), O_WRONLY | O_CREAT | O_APPEND, 0600);
    pid_t pid = tl_spawn(argv, NULL, -1, -1, fd);
    close(fd);
    for (int i = 0; i < 200 && !redis_says(port, "ping", "PONG"); i++)
        usleep(50000);
    char *err = tl_read_file(tl_file("redis.err"));
    cr_assert(redis_says(port, "ping", "PONG"), "redis-server did not come up under lethed:\n%s",
              err);
    free(err);
    return pid;
}

static void redis_stop(int port, pid_t pid)
{
    redis_cli(port, "shutdown nosave", NULL);
    int status = tl_wait(pid, 60);
    char *err = tl_read_file(tl_file("redis.err"));
    cr_assert_eq(status, 0, "lethed with redis-server exited %d:\n%s", status, err);
    free(err);
}

Test(runtimes, redis_bgsave_of_a_dataset_twice_the_cache)
{
    SKIP_HEAVY();
    if (access("/usr/bin/redis-server", X_OK) != 0 || access("/usr/bin/redis-check-rdb", X_OK) != 0)
        cr_skip_test("no /usr/bin/redis-server and redis-check-rdb (redis-server, redis-tools)");
    int port = 20000 + (int)(getpid() % 20000);
    /* SETs of about 40 MB of values, written as redis-cli --pipe reads them */
    FILE *f = fopen(tl_file("load.resp"), "w");
    char key[32], val[256];
    for (int i = 0; i < REDIS_KEYS; i++) {
        snprintf(key, sizeof(key), "key:%07d", i);
        int n = snprintf(val, sizeof(val), "%0200d", i * 7919 % 100003);
        fprintf(f, "*3\r\n$3\r\nSET\r\n$%zu\r\n%s\r\n$%d\r\n%s\r\n", strlen(key), key, n, val);
    }
    fclose(f);
    char conf[512]; /* tl_file's buffer is reused */
    snprintf(conf, sizeof(conf), "%s", tl_config("run.conf", "16M", ""));
    pid_t pid = redis_start(conf, port);
    char args[256];
    snprintf(args, sizeof(args), "--pipe < '%s'", tl_file("load.resp"));
    cr_assert(redis_says(port, args, "errors: 0"), "the SETs failed");
    /* slow the snapshot down, so that the parent's writes below race the child's reads */
    cr_assert(redis_says(port, "config set rdb-key-save-delay 5", "OK"));
    cr_assert(redis_says(port, "bgsave", "Background saving started"));
    /* overwrite a third of the keys while the child writes the snapshot */
    f = fopen(tl_file("over.resp"), "w");
    for (int i = 0; i < REDIS_KEYS; i += 3) {
        snprintf(key, sizeof(key), "key:%07d", i);
        fprintf(f, "*3\r\n$3\r\nSET\r\n$%zu\r\n%s\r\n$5\r\nnewer\r\n", strlen(key), key);
    }
    fclose(f);
    snprintf(args, sizeof(args), "--pipe < '%s'", tl_file("over.resp"));
    cr_assert(redis_says(port, args, "errors: 0"), "the overwriting SETs failed");
    for (int i = 0; i < 600 && !redis_says(port, "info persistence", "rdb_bgsave_in_progress:0");
         i++)
        usleep(100000);
    cr_assert(redis_says(port, "info persistence", "rdb_last_bgsave_status:ok"),
              "BGSAVE failed under lethed");
    cr_assert(redis_says(port, "get key:0000003", "newer"), "the parent's own write is lost");
    redis_stop(port, pid);
    char *err = tl_read_file(tl_file("redis.err"));
    const char *line = err ? strstr(err, "lethed: `") : NULL;
    const char *p = line ? strstr(line, "swap-ins ") : NULL;
    cr_assert(p && strtol(p + strlen("swap-ins "), NULL, 10) > 0,
              "redis's heap was not managed:\n%s", err);
    free(err);

    char check[512];
    snprintf(check, sizeof(check), "/usr/bin/redis-check-rdb '%s' > '%s' 2>&1", tl_file("dump.rdb"),
             tl_file("check.out"));
    char *sh[] = {"/bin/sh", "-c", check, NULL};
    int rc = tl_run(sh, NULL, NULL, NULL, 60);
    char *out = tl_read_file(tl_file("check.out"));
    cr_assert(rc == 0 && out && strstr(out, "RDB looks OK"), "redis-check-rdb:\n%s", out);
    free(out);

    /* restart from the snapshot (under lethed again): the values as of the fork */
    pid = redis_start(conf, port);
    char want[16];
    snprintf(want, sizeof(want), "%d", REDIS_KEYS);
    cr_assert(redis_says(port, "dbsize", want), "the snapshot lost keys");
    for (int i = 0; i < REDIS_KEYS; i += 9973) {
        snprintf(args, sizeof(args), "get key:%07d", i);
        snprintf(val, sizeof(val), "%0200d", i * 7919 % 100003);
        cr_assert(redis_says(port, args, val), "key %d does not hold its value at the fork", i);
    }
    redis_stop(port, pid);
}

/* --- the account of what is managed --- */

Test(runtimes, memory_the_kernel_keeps_is_reported_and_warned_about_once)
{
    if (access("/usr/bin/python3", X_OK) != 0)
        cr_skip_test("no /usr/bin/python3");
    /* 64 MiB of shared anonymous memory: never placed in the region */
    char *cmd[] = {"/usr/bin/python3", "-c",
                   "import mmap, time\n"
                   "m = mmap.mmap(-1, 64 << 20, flags=mmap.MAP_SHARED)\n"
                   "for i in range(0, 64 << 20, 4096): m[i] = 1\n"
                   "time.sleep(1.5)\n"
                   "print('done')\n",
                   NULL};
    const char *conf = tl_config("run.conf", "16M", "");
    char *argv[] = {TL_LETHED, "-c", (char *)conf, "--", cmd[0], cmd[1], cmd[2], NULL};
    cr_assert_eq(tl_run(argv, NULL, NULL, tl_file("lethe.err"), 60), 0);
    char *err = tl_read_file(tl_file("lethe.err"));
    const char *warn = strstr(err, "resident are outside Lethe's cache, not managed; largest: ");
    cr_assert(warn && strstr(warn, "/dev/zero (deleted) (64 MiB)"),
              "the warning names the shared mapping:\n%s", err);
    cr_assert_null(strstr(warn + 1, "resident are outside Lethe's cache"), "said once:\n%s", err);
    const char *line = strstr(err, "lethed: `");
    const char *outside = line ? strstr(line, "KiB outside the cache") : NULL;
    cr_assert(outside, "the final line has the account:\n%s", err);
    const char *p = outside;
    while (p > line && p[-1] != ' ')
        p--;
    while (p > line && p[-1] == ' ')
        p--;
    while (p > line && p[-1] >= '0' && p[-1] <= '9')
        p--;
    cr_assert_geq(strtol(p, NULL, 10), 64 * 1024, "at least the 64 MiB mapping:\n%s", line);
    free(err);
}

Test(runtimes, a_malloc_heap_is_managed_and_draws_no_warning)
{
    const char *conf = tl_config("run.conf", "8M", "");
    char *argv[] = {TL_LETHED, "-c", (char *)conf, "--", TL_PROG("app_mixed"), "32", NULL};
    cr_assert_eq(tl_run(argv, NULL, NULL, tl_file("lethe.err"), 60), 0);
    char *err = tl_read_file(tl_file("lethe.err"));
    cr_assert_null(strstr(err, "outside Lethe's cache, not managed"), "no warning:\n%s", err);
    const char *line = strstr(err, "lethed: `");
    const char *pct = line ? strstr(line, "% of its anonymous memory managed") : NULL;
    cr_assert(pct, "the final line has the share:\n%s", err);
    const char *p = pct;
    while (p > line && p[-1] >= '0' && p[-1] <= '9')
        p--;
    cr_assert_geq(strtol(p, NULL, 10), 80, "most of it managed:\n%s", line);
    free(err);
}
