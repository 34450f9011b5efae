/* test_lethed_util.h — what the lethed, control port and preload tests share: running
 * programs (with pipes, files and a timeout), per-test scratch directories, configs, a
 * minimal HTTP/1.0 client, and checkers for JSON and the Prometheus text format.
 * Header-only (static functions): each test program includes it once.
 */
#ifndef TEST_LETHED_UTIL_H
#define TEST_LETHED_UTIL_H

#define _GNU_SOURCE
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <math.h>
#include <netdb.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

#define TL_LETHED  LETHE_BUILD_DIR "/bin/lethed"
#define TL_PRELOAD LETHE_BUILD_DIR "/lib/liblethe.so"
#define TL_PROG(n) LETHE_BUILD_DIR "/test-progs/" n

/* ---- scratch directory ---- */

static char tl_dir[256];

static __attribute__((unused)) int tl_rm_cb(const char *path, const struct stat *st, int flag,
                                            struct FTW *ftw)
{
    (void)st, (void)flag, (void)ftw;
    remove(path);
    return 0;
}

static __attribute__((unused)) void tl_setup(void)
{
    static unsigned counter;
    snprintf(tl_dir, sizeof(tl_dir), "/tmp/lethe-test-%d-%u", (int)getpid(), counter++);
    nftw(tl_dir, tl_rm_cb, 16, FTW_DEPTH | FTW_PHYS);
    cr_assert_eq(mkdir(tl_dir, 0700), 0, "mkdir %s: %s", tl_dir, strerror(errno));
}

static __attribute__((unused)) void tl_teardown(void)
{
    if (tl_dir[0])
        nftw(tl_dir, tl_rm_cb, 16, FTW_DEPTH | FTW_PHYS);
}

/* A path in the scratch directory (static buffer rotated among 8). */
static __attribute__((unused)) const char *tl_file(const char *name)
{
    static char bufs[8][512];
    static unsigned i;
    char *b = bufs[i++ % 8];
    snprintf(b, 512, "%s/%s", tl_dir, name);
    return b;
}

static __attribute__((unused)) void tl_write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f, "cannot write %s", path);
    fputs(text, f);
    fclose(f);
}

/* The whole file, NUL-terminated (malloc'd), or NULL. */
static __attribute__((unused)) char *tl_read_file(const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return NULL;
    size_t cap = 4096, len = 0;
    char *buf = malloc(cap);
    size_t got;
    while ((got = fread(buf + len, 1, cap - len - 1, f)) > 0) {
        len += got;
        if (cap - len < 2) {
            cap *= 2;
            buf = realloc(buf, cap);
        }
    }
    fclose(f);
    buf[len] = '\0';
    return buf;
}

static __attribute__((unused)) bool tl_files_equal(const char *a, const char *b)
{
    char *x = tl_read_file(a), *y = tl_read_file(b);
    bool eq = x && y && strcmp(x, y) == 0;
    free(x);
    free(y);
    return eq;
}

/* A lethe.conf in the scratch directory: a small cache, a control port on a free loopback
 * port, then `extra` (more sections/keys, may be ""). Returns its path. */
static __attribute__((unused)) const char *tl_config(const char *name, const char *cache,
                                                     const char *extra)
{
    char text[4096];
    snprintf(text, sizeof(text),
             "[cache]\ncache_size = %s\nregion_size = 4G\n"
             "[transport]\nremote_size = 1G\n"
             "[control]\nlisten = 127.0.0.1:0\n%s",
             cache, extra);
    const char *path = tl_file(name);
    tl_write_file(path, text);
    return path;
}

/* ---- processes ---- */

static __attribute__((unused)) double tl_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Starts argv with stdin/stdout/stderr from the given descriptors (-1: /dev/null; the
 * descriptors are the caller's to close) and env (NULL: ours). */
static __attribute__((unused)) pid_t tl_spawn(char *const argv[], char *const env[], int in,
                                              int out, int err)
{
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    int fds[3] = {in, out, err};
    for (int i = 0; i < 3; i++) {
        if (fds[i] >= 0)
            posix_spawn_file_actions_adddup2(&fa, fds[i], i);
        else
            posix_spawn_file_actions_addopen(&fa, i, "/dev/null", i ? O_WRONLY : O_RDONLY, 0);
    }
    pid_t pid;
    int rc = posix_spawn(&pid, argv[0], &fa, NULL, argv, env ? env : environ);
    posix_spawn_file_actions_destroy(&fa);
    cr_assert_eq(rc, 0, "cannot start %s: %s", argv[0], strerror(rc));
    return pid;
}

/* Waits up to timeout_s; on timeout kills the process (SIGKILL) and fails the test.
 * Returns the shell-style status (exit code, or 128+signal). */
static __attribute__((unused)) int tl_wait(pid_t pid, double timeout_s)
{
    double deadline = tl_now() + timeout_s;
    int st;
    for (;;) {
        pid_t got = waitpid(pid, &st, WNOHANG);
        if (got == pid)
            break;
        if (tl_now() > deadline) {
            kill(pid, SIGKILL);
            waitpid(pid, &st, 0);
            cr_assert_fail("process %d did not finish within %.0f s", (int)pid, timeout_s);
        }
        usleep(5000);
    }
    if (WIFEXITED(st))
        return WEXITSTATUS(st);
    return 128 + WTERMSIG(st);
}

/* Runs argv to completion with stdout and stderr going to files (NULL: /dev/null). */
static __attribute__((unused)) int tl_run(char *const argv[], char *const env[],
                                          const char *out_path, const char *err_path,
                                          double timeout_s)
{
    int out = out_path ? open(out_path, O_WRONLY | O_CREAT | O_TRUNC, 0600) : -1;
    int err = err_path ? open(err_path, O_WRONLY | O_CREAT | O_TRUNC, 0600) : -1;
    pid_t pid = tl_spawn(argv, env, -1, out, err);
    if (out >= 0)
        close(out);
    if (err >= 0)
        close(err);
    return tl_wait(pid, timeout_s);
}

/* Reads from fd until `needle` has been seen (or timeout). Returns true when seen. */
static __attribute__((unused)) bool tl_read_until(int fd, const char *needle, double timeout_s)
{
    char buf[8192];
    size_t len = 0;
    double deadline = tl_now() + timeout_s;
    while (tl_now() < deadline) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (poll(&p, 1, 50) <= 0)
            continue;
        ssize_t got = read(fd, buf + len, sizeof(buf) - 1 - len);
        if (got <= 0)
            return false;
        len += (size_t)got;
        buf[len] = '\0';
        if (strstr(buf, needle))
            return true;
        if (len > sizeof(buf) / 2) {
            memmove(buf, buf + len - 256, 256);
            len = 256;
        }
    }
    return false;
}

/* Waits for lethed's log line naming its control port; writes "host:port" to out. */
static __attribute__((unused)) bool tl_control_address(const char *err_path, char *out, size_t len,
                                                       double timeout_s)
{
    const char *tag = "control port listening on http://";
    double deadline = tl_now() + timeout_s;
    while (tl_now() < deadline) {
        char *log = tl_read_file(err_path);
        char *p = log ? strstr(log, tag) : NULL;
        if (p) {
            p += strlen(tag);
            size_t n = strcspn(p, "/\n");
            snprintf(out, len, "%.*s", (int)n, p);
            free(log);
            return true;
        }
        free(log);
        usleep(10000);
    }
    return false;
}

/* ---- HTTP/1.0 client ---- */

struct tl_http {
    int status;
    char *headers; /* raw header block */
    char *body;    /* malloc'd, NUL-terminated */
    size_t body_len;
};

static __attribute__((unused)) void tl_http_free(struct tl_http *r)
{
    free(r->headers);
    free(r->body);
    memset(r, 0, sizeof(*r));
}

/* Sends one request to host:port; the raw request line may be anything (for the error
 * tests). Returns 0, or -1 when no HTTP response could be read. */
static __attribute__((unused)) int tl_http_raw(const char *addr, const char *request,
                                               size_t request_len, struct tl_http *r)
{
    memset(r, 0, sizeof(*r));
    char host[128];
    const char *colon = strrchr(addr, ':');
    if (!colon)
        return -1;
    snprintf(host, sizeof(host), "%.*s", (int)(colon - addr), addr);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(colon + 1))};
    if (inet_pton(AF_INET, host, &sa.sin_addr) != 1)
        return -1;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    struct timeval tv = {.tv_sec = 15};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
        close(fd);
        return -1;
    }
    size_t off = 0;
    while (off < request_len) {
        ssize_t w = write(fd, request + off, request_len - off);
        if (w <= 0) {
            close(fd);
            return -1;
        }
        off += (size_t)w;
    }
    size_t cap = 65536, len = 0;
    char *buf = malloc(cap);
    for (;;) {
        if (cap - len < 4096) {
            cap *= 2;
            buf = realloc(buf, cap);
        }
        ssize_t got = read(fd, buf + len, cap - len - 1);
        if (got <= 0)
            break;
        len += (size_t)got;
    }
    close(fd);
    buf[len] = '\0';
    char *end = strstr(buf, "\r\n\r\n");
    if (!end || sscanf(buf, "HTTP/1.%*d %d", &r->status) != 1) {
        free(buf);
        return -1;
    }
    r->headers = strndup(buf, (size_t)(end - buf));
    r->body_len = len - (size_t)(end + 4 - buf);
    r->body = malloc(r->body_len + 1);
    memcpy(r->body, end + 4, r->body_len);
    r->body[r->body_len] = '\0';
    free(buf);
    return 0;
}

static __attribute__((unused)) int tl_http(const char *addr, const char *method, const char *path,
                                           const char *body, struct tl_http *r)
{
    char req[1024];
    int n =
        snprintf(req, sizeof(req), "%s %s HTTP/1.0\r\nHost: %s\r\nContent-Length: %zu\r\n\r\n%s",
                 method, path, addr, body ? strlen(body) : 0, body ? body : "");
    return tl_http_raw(addr, req, (size_t)n, r);
}

/* ---- JSON validation (RFC 8259 grammar, no semantic checks) ---- */

static __attribute__((unused)) const char *tl_json_value(const char *p, int depth);

static __attribute__((unused)) const char *tl_json_ws(const char *p)
{
    while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r')
        p++;
    return p;
}

static __attribute__((unused)) const char *tl_json_string(const char *p)
{
    if (*p != '"')
        return NULL;
    for (p++; *p && *p != '"'; p++) {
        if ((unsigned char)*p < 0x20)
            return NULL;
        if (*p == '\\') {
            p++;
            if (*p == 'u') {
                for (int i = 1; i <= 4; i++)
                    if (!isxdigit((unsigned char)p[i]))
                        return NULL;
                p += 4;
            } else if (!*p || !strchr("\"\\/bfnrt", *p)) {
                return NULL;
            }
        }
    }
    return *p == '"' ? p + 1 : NULL;
}

static __attribute__((unused)) const char *tl_json_number(const char *p)
{
    if (*p == '-')
        p++;
    if (*p == '0')
        p++;
    else if (isdigit((unsigned char)*p))
        while (isdigit((unsigned char)*p))
            p++;
    else
        return NULL;
    if (*p == '.') {
        p++;
        if (!isdigit((unsigned char)*p))
            return NULL;
        while (isdigit((unsigned char)*p))
            p++;
    }
    if (*p == 'e' || *p == 'E') {
        p++;
        if (*p == '+' || *p == '-')
            p++;
        if (!isdigit((unsigned char)*p))
            return NULL;
        while (isdigit((unsigned char)*p))
            p++;
    }
    return p;
}

static __attribute__((unused)) const char *tl_json_value(const char *p, int depth)
{
    if (depth > 64)
        return NULL;
    p = tl_json_ws(p);
    if (*p == '{' || *p == '[') {
        char close = *p == '{' ? '}' : ']';
        bool object = *p == '{';
        p = tl_json_ws(p + 1);
        if (*p == close)
            return p + 1;
        for (;;) {
            if (object) {
                p = tl_json_string(tl_json_ws(p));
                if (!p)
                    return NULL;
                p = tl_json_ws(p);
                if (*p++ != ':')
                    return NULL;
            }
            p = tl_json_value(p, depth + 1);
            if (!p)
                return NULL;
            p = tl_json_ws(p);
            if (*p == ',') {
                p++;
                continue;
            }
            return *p == close ? p + 1 : NULL;
        }
    }
    if (*p == '"')
        return tl_json_string(p);
    if (strncmp(p, "true", 4) == 0)
        return p + 4;
    if (strncmp(p, "false", 5) == 0)
        return p + 5;
    if (strncmp(p, "null", 4) == 0)
        return p + 4;
    return tl_json_number(p);
}

static __attribute__((unused)) bool tl_json_valid(const char *text)
{
    const char *end = tl_json_value(text, 0);
    return end && *tl_json_ws(end) == '\0';
}

/* The unsigned number after "key": at its first occurrence; false when absent. */
static __attribute__((unused)) bool tl_json_u64(const char *text, const char *key, uint64_t *out)
{
    char pat[128];
    snprintf(pat, sizeof(pat), "\"%s\": ", key);
    const char *p = strstr(text, pat);
    if (!p)
        return false;
    p += strlen(pat);
    if (!isdigit((unsigned char)*p))
        return false;
    *out = strtoull(p, NULL, 10);
    return true;
}

/* ---- Prometheus text format (exposition format 0.0.4) ---- */

static __attribute__((unused)) bool tl_prom_name_ok(const char *s, size_t n)
{
    if (n == 0 || !(isalpha((unsigned char)s[0]) || s[0] == '_' || s[0] == ':'))
        return false;
    for (size_t i = 1; i < n; i++)
        if (!(isalnum((unsigned char)s[i]) || s[i] == '_' || s[i] == ':'))
            return false;
    return true;
}

static __attribute__((unused)) bool tl_prom_value_ok(const char *s)
{
    if (strcmp(s, "+Inf") == 0 || strcmp(s, "-Inf") == 0 || strcmp(s, "NaN") == 0)
        return true;
    char *end;
    errno = 0;
    strtod(s, &end);
    return end != s && *end == '\0';
}

/* Checks text; on failure writes why to err and returns false. Also counts samples. */
static __attribute__((unused)) bool tl_prom_check(const char *text, char *err, size_t errlen,
                                                  unsigned *samples)
{
    char help[512][128], type[512][128];
    unsigned nhelp = 0, ntype = 0;
    *samples = 0;
    const char *line = text;
    unsigned lineno = 0;
    while (*line) {
        lineno++;
        const char *nl = strchr(line, '\n');
        if (!nl) {
            snprintf(err, errlen, "line %u: no final newline", lineno);
            return false;
        }
        char l[1024];
        size_t len = (size_t)(nl - line);
        if (len >= sizeof(l)) {
            snprintf(err, errlen, "line %u: too long", lineno);
            return false;
        }
        memcpy(l, line, len);
        l[len] = '\0';
        line = nl + 1;
        if (len == 0)
            continue;
        if (l[0] == '#') {
            char kind[16], name[128];
            if (sscanf(l, "# %15s %127s", kind, name) == 2 &&
                (strcmp(kind, "HELP") == 0 || strcmp(kind, "TYPE") == 0)) {
                if (!tl_prom_name_ok(name, strlen(name))) {
                    snprintf(err, errlen, "line %u: bad metric name '%s'", lineno, name);
                    return false;
                }
                if (strcmp(kind, "TYPE") == 0) {
                    const char *t = l + strlen("# TYPE ") + strlen(name) + 1;
                    if (strcmp(t, "counter") && strcmp(t, "gauge") && strcmp(t, "histogram") &&
                        strcmp(t, "summary") && strcmp(t, "untyped")) {
                        snprintf(err, errlen, "line %u: bad type '%s'", lineno, t);
                        return false;
                    }
                    if (ntype < 512)
                        snprintf(type[ntype++], 128, "%s", name);
                } else if (nhelp < 512) {
                    snprintf(help[nhelp++], 128, "%s", name);
                }
            }
            continue;
        }
        /* sample: name{labels} value [timestamp] */
        size_t n = strcspn(l, "{ ");
        if (!tl_prom_name_ok(l, n)) {
            snprintf(err, errlen, "line %u: bad sample name in '%.160s'", lineno, l);
            return false;
        }
        char name[128];
        snprintf(name, sizeof(name), "%.*s", (int)n, l);
        const char *p = l + n;
        if (*p == '{') {
            p++;
            while (*p != '}') {
                size_t k = strcspn(p, "=");
                if (!tl_prom_name_ok(p, k) || p[k] != '=' || p[k + 1] != '"') {
                    snprintf(err, errlen, "line %u: bad label in '%.160s'", lineno, l);
                    return false;
                }
                p += k + 2;
                while (*p && *p != '"') {
                    if (*p == '\\' && p[1])
                        p++;
                    p++;
                }
                if (*p != '"') {
                    snprintf(err, errlen, "line %u: unterminated label value", lineno);
                    return false;
                }
                p++;
                if (*p == ',')
                    p++;
                else if (*p != '}') {
                    snprintf(err, errlen, "line %u: bad label list in '%.160s'", lineno, l);
                    return false;
                }
            }
            p++;
        }
        if (*p != ' ') {
            snprintf(err, errlen, "line %u: no value in '%.160s'", lineno, l);
            return false;
        }
        p++;
        char value[64], ts[64];
        int fields = sscanf(p, "%63s %63s", value, ts);
        if (fields < 1 || !tl_prom_value_ok(value)) {
            snprintf(err, errlen, "line %u: bad value in '%.160s'", lineno, l);
            return false;
        }
        bool has_help = false, has_type = false;
        for (unsigned i = 0; i < nhelp; i++)
            has_help |= strcmp(help[i], name) == 0;
        for (unsigned i = 0; i < ntype; i++)
            has_type |= strcmp(type[i], name) == 0;
        if (!has_help || !has_type) {
            snprintf(err, errlen, "line %u: %s has no %s line before its samples", lineno, name,
                     has_help ? "TYPE" : "HELP");
            return false;
        }
        (*samples)++;
    }
    return true;
}

/* The value of an unlabelled sample `name`, or NAN. */
static __attribute__((unused)) double tl_prom_value(const char *text, const char *name)
{
    size_t n = strlen(name);
    for (const char *line = text; line && *line;
         line = strchr(line, '\n') ? strchr(line, '\n') + 1 : NULL) {
        if (strncmp(line, name, n) == 0 && line[n] == ' ')
            return strtod(line + n + 1, NULL);
    }
    return NAN;
}

#endif
