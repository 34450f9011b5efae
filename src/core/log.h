/* log.h — Lethe's logging: one line per message, levelled, tagged with the thread's role.
 *
 * Each line reads `TIMESTAMP PROGRAM[PID] ROLE LEVEL: message`, for example
 *   2026-11-26T05:10:11.123Z lethed[812] vCPU 1 warn: memnode 127.0.0.1:7400 slow
 * The role is per thread ("main", "vCPU 3", "rebalancer", ...), set once by the thread.
 * A line is formatted on the stack and written with one write(2): no allocation, no lock,
 * so the fault path and signal handlers may log. The level comes from LETHE_LOG
 * (debug|info|warn|error) when set, else from the configuration (log.level), else info.
 */
#ifndef LETHE_LOG_H
#define LETHE_LOG_H

#include <stdarg.h>
#include <stdbool.h>

enum lethe_log_level {
    LETHE_LOG_DEBUG = 0,
    LETHE_LOG_INFO = 1,
    LETHE_LOG_WARN = 2,
    LETHE_LOG_ERROR = 3,
};

/* Reads LETHE_LOG and names the program in every line. Call once, early. */
void lethe_log_init(const char *program);
/* Sets the level unless LETHE_LOG pinned it (the environment wins over the config). */
void lethe_log_set_level(enum lethe_log_level level);
enum lethe_log_level lethe_log_get_level(void);
/* Parses "debug", "info", "warn" or "error"; returns 0 or -EINVAL. */
int lethe_log_parse_level(const char *s, enum lethe_log_level *out);
const char *lethe_log_level_name(enum lethe_log_level level);
/* The calling thread's role in every line it logs (at most 31 characters are kept). */
void lethe_log_set_role(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Lines the calling thread logs above `most` are logged at `most` instead (a retry loop's
 * repeated failures go to debug); LETHE_LOG_ERROR lifts the cap. */
void lethe_log_cap_thread(enum lethe_log_level most);
/* Where lines go (default: standard error). */
void lethe_log_set_fd(int fd);

bool lethe_log_enabled(enum lethe_log_level level);
void lethe_logf(enum lethe_log_level level, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
void lethe_vlogf(enum lethe_log_level level, const char *fmt, va_list ap);

#define lethe_debug(...)                                                                           \
    do {                                                                                           \
        if (lethe_log_enabled(LETHE_LOG_DEBUG))                                                    \
            lethe_logf(LETHE_LOG_DEBUG, __VA_ARGS__);                                              \
    } while (0)
#define lethe_info(...)  lethe_logf(LETHE_LOG_INFO, __VA_ARGS__)
#define lethe_warn(...)  lethe_logf(LETHE_LOG_WARN, __VA_ARGS__)
#define lethe_error(...) lethe_logf(LETHE_LOG_ERROR, __VA_ARGS__)

#endif
