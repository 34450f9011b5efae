/* log.c — see log.h. Formats on the stack and writes each line with a single write(2). */
#include "core/log.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

static enum lethe_log_level log_level = LETHE_LOG_INFO;
static bool log_level_pinned; /* LETHE_LOG was set: the config may not override it */
static int log_fd = 2;
static char log_program[32] = "lethe";
static __thread char log_role[32];
static __thread int log_cap = LETHE_LOG_ERROR;

static const char *const level_names[] = {"debug", "info", "warn", "error"};

/* glibc sets its time-zone state up at the first gmtime_r (a lock, malloc, fopen): done here,
 * at start-up, so that the first line logged from a signal handler does none of it. */
static void prepare_time(void)
{
    struct tm tm;
    time_t now = time(NULL);
    gmtime_r(&now, &tm);
}

void lethe_log_init(const char *program)
{
    prepare_time();
    if (program)
        snprintf(log_program, sizeof(log_program), "%s", program);
    const char *env = getenv("LETHE_LOG");
    enum lethe_log_level level;
    if (env && *env) {
        if (lethe_log_parse_level(env, &level) == 0) {
            log_level = level;
            log_level_pinned = true;
        } else {
            lethe_warn("LETHE_LOG='%s' is not a level (use debug, info, warn or error); "
                       "keeping %s",
                       env, level_names[log_level]);
        }
    }
}

void lethe_log_set_level(enum lethe_log_level level)
{
    prepare_time();
    if (!log_level_pinned)
        log_level = level;
}

enum lethe_log_level lethe_log_get_level(void)
{
    return log_level;
}

int lethe_log_parse_level(const char *s, enum lethe_log_level *out)
{
    for (unsigned i = 0; i < sizeof(level_names) / sizeof(level_names[0]); i++) {
        if (strcasecmp(s, level_names[i]) == 0) {
            *out = (enum lethe_log_level)i;
            return 0;
        }
    }
    if (strcasecmp(s, "warning") == 0) {
        *out = LETHE_LOG_WARN;
        return 0;
    }
    return -EINVAL;
}

const char *lethe_log_level_name(enum lethe_log_level level)
{
    return (unsigned)level < 4 ? level_names[level] : "?";
}

void lethe_log_set_role(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(log_role, sizeof(log_role), fmt, ap);
    va_end(ap);
}

void lethe_log_set_fd(int fd)
{
    log_fd = fd;
}

bool lethe_log_enabled(enum lethe_log_level level)
{
    return level >= log_level;
}

void lethe_log_cap_thread(enum lethe_log_level most)
{
    log_cap = (int)most;
}

void lethe_vlogf(enum lethe_log_level level, const char *fmt, va_list ap)
{
    if ((int)level > log_cap)
        level = (enum lethe_log_level)log_cap;
    if (!lethe_log_enabled(level))
        return;
    int saved_errno = errno;
    char line[1024];
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    int n = snprintf(line, sizeof(line), "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ %s[%d] %s %s: ",
                     tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min,
                     tm.tm_sec, ts.tv_nsec / 1000000, log_program, (int)getpid(),
                     log_role[0] ? log_role : "main", lethe_log_level_name(level));
    if (n < 0)
        n = 0;
    if ((size_t)n < sizeof(line)) {
        int m = vsnprintf(line + n, sizeof(line) - (size_t)n, fmt, ap);
        if (m > 0)
            n += m;
    }
    if ((size_t)n >= sizeof(line) - 1)
        n = (int)sizeof(line) - 2;
    line[n++] = '\n';
    ssize_t off = 0;
    while (off < n) {
        ssize_t w = write(log_fd, line + off, (size_t)(n - off));
        if (w <= 0) {
            if (w < 0 && errno == EINTR)
                continue;
            break;
        }
        off += w;
    }
    errno = saved_errno;
}

void lethe_logf(enum lethe_log_level level, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    lethe_vlogf(level, fmt, ap);
    va_end(ap);
}
