/* command.c — see command.h. */
#define _GNU_SOURCE
#include "lethed/command.h"

#include <errno.h>
#include <libgen.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define PID_DIGITS 20

void lethed_free_words(char **argv)
{
    if (!argv)
        return;
    for (char **p = argv; *p; p++)
        free(*p);
    free(argv);
}

static int push_word(char ***argv, size_t *n, size_t *cap, const char *word, size_t len)
{
    if (*n + 2 > *cap) {
        size_t ncap = *cap ? *cap * 2 : 8;
        char **grown = realloc(*argv, ncap * sizeof(char *));
        if (!grown)
            return -ENOMEM;
        *argv = grown;
        *cap = ncap;
    }
    char *w = strndup(word, len);
    if (!w)
        return -ENOMEM;
    (*argv)[(*n)++] = w;
    (*argv)[*n] = NULL;
    return 0;
}

int lethed_split_command(const char *line, char ***argv_out)
{
    char **argv = calloc(1, sizeof(char *));
    size_t n = 0, cap = 1;
    char *word = malloc(strlen(line) + 1);
    if (!argv || !word) {
        free(argv);
        free(word);
        return -ENOMEM;
    }
    int rc = 0;
    const char *p = line;
    for (;;) {
        while (*p == ' ' || *p == '\t' || *p == '\n')
            p++;
        if (!*p)
            break;
        size_t len = 0;
        while (*p && *p != ' ' && *p != '\t' && *p != '\n') {
            if (*p == '\'') {
                const char *close = strchr(p + 1, '\'');
                if (!close) {
                    rc = -EINVAL;
                    goto out;
                }
                memcpy(word + len, p + 1, (size_t)(close - p - 1));
                len += (size_t)(close - p - 1);
                p = close + 1;
            } else if (*p == '"') {
                p++;
                while (*p && *p != '"') {
                    if (*p == '\\' && p[1] && strchr("\"\\$`", p[1]))
                        p++;
                    word[len++] = *p++;
                }
                if (*p != '"') {
                    rc = -EINVAL;
                    goto out;
                }
                p++;
            } else if (*p == '\\') {
                if (!p[1]) {
                    rc = -EINVAL;
                    goto out;
                }
                word[len++] = p[1];
                p += 2;
            } else {
                word[len++] = *p++;
            }
        }
        rc = push_word(&argv, &n, &cap, word, len);
        if (rc < 0)
            goto out;
    }
out:
    free(word);
    if (rc < 0) {
        lethed_free_words(argv);
        return rc;
    }
    *argv_out = argv;
    return (int)n;
}

static bool needs_quotes(const char *w)
{
    if (!*w)
        return true;
    for (; *w; w++)
        if (!strchr("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-+=.,/:@%^",
                    *w))
            return true;
    return false;
}

void lethed_format_command(char *const *argv, char *out, size_t len)
{
    size_t off = 0;
    out[0] = '\0';
    for (size_t i = 0; argv[i] && off + 1 < len; i++) {
        const char *w = argv[i];
        if (i)
            out[off++] = ' ';
        if (!needs_quotes(w)) {
            off += (size_t)snprintf(out + off, len - off, "%s", w);
        } else {
            if (off + 1 < len)
                out[off++] = '\'';
            for (; *w && off + 5 < len; w++) {
                if (*w == '\'') {
                    memcpy(out + off, "'\\''", 4);
                    off += 4;
                } else {
                    out[off++] = *w;
                }
            }
            if (off + 1 < len)
                out[off++] = '\'';
        }
        if (off >= len)
            off = len - 1;
        out[off] = '\0';
    }
}

/* 0 when path is an executable regular file, -EACCES when it exists but is not, else -ENOENT. */
static int check_executable(const char *path)
{
    struct stat st;
    if (stat(path, &st) != 0)
        return errno == EACCES ? -EACCES : -ENOENT;
    if (S_ISDIR(st.st_mode) || access(path, X_OK) != 0)
        return -EACCES;
    return 0;
}

int lethed_find_executable(const char *name, char *out, size_t len)
{
    if (!*name)
        return -ENOENT;
    if (strchr(name, '/')) {
        if ((size_t)snprintf(out, len, "%s", name) >= len)
            return -ENAMETOOLONG;
        return check_executable(out);
    }
    const char *path = getenv("PATH");
    if (!path || !*path)
        path = "/usr/local/bin:/usr/bin:/bin";
    int result = -ENOENT;
    while (*path) {
        const char *colon = strchr(path, ':');
        size_t dlen = colon ? (size_t)(colon - path) : strlen(path);
        char candidate[PATH_MAX];
        int n = dlen ? snprintf(candidate, sizeof(candidate), "%.*s/%s", (int)dlen, path, name)
                     : snprintf(candidate, sizeof(candidate), "%s", name);
        if (n > 0 && (size_t)n < sizeof(candidate)) {
            int rc = check_executable(candidate);
            if (rc == 0) {
                if ((size_t)snprintf(out, len, "%s", candidate) >= len)
                    return -ENAMETOOLONG;
                return 0;
            }
            if (rc == -EACCES)
                result = -EACCES; /* remember, but keep looking like execvp does */
        }
        if (!colon)
            break;
        path = colon + 1;
    }
    return result;
}

int lethed_find_preload(char *out, size_t len)
{
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
    if (n < 0)
        return -errno;
    exe[n] = '\0';
    char *dir = dirname(exe); /* .../bin */
    if ((size_t)snprintf(out, len, "%s/../lib/liblethe.so", dir) >= len)
        return -ENAMETOOLONG;
    char real[PATH_MAX];
    if (!realpath(out, real))
        return -ENOENT;
    if ((size_t)snprintf(out, len, "%s", real) >= len)
        return -ENAMETOOLONG;
    return 0;
}

static bool is_var(const char *entry, const char *name)
{
    size_t n = strlen(name);
    return strncmp(entry, name, n) == 0 && entry[n] == '=';
}

static int push_var(char ***env, size_t *n, size_t *cap, const char *name, const char *value)
{
    char *entry;
    if (asprintf(&entry, "%s=%s", name, value) < 0)
        return -ENOMEM;
    int rc = push_word(env, n, cap, entry, strlen(entry));
    free(entry);
    return rc;
}

char **lethed_build_env(char *const *base, const struct lethed_env_vars *v, char **pid_slot)
{
    static const char *const replaced[] = {"LD_PRELOAD",       "LETHE_CONFIG",    "LETHE_MEMNODE",
                                           "LETHE_TOKEN_FILE", "LETHE_STATS_SHM", "LETHE_PID",
                                           "LETHE_OPTIONS",    "LETHE_CONTROL"};
    char **env = calloc(1, sizeof(char *));
    size_t n = 0, cap = 1;
    if (!env)
        return NULL;
    const char *old_preload = NULL;
    for (char *const *e = base; e && *e; e++) {
        bool skip = false;
        for (size_t i = 0; i < sizeof(replaced) / sizeof(replaced[0]); i++)
            if (is_var(*e, replaced[i]))
                skip = true;
        if (is_var(*e, "LD_PRELOAD"))
            old_preload = *e + strlen("LD_PRELOAD=");
        if (!skip && push_word(&env, &n, &cap, *e, strlen(*e)) < 0)
            goto fail;
    }
    char *preload = NULL;
    if (old_preload && *old_preload) {
        if (asprintf(&preload, "%s:%s", v->preload, old_preload) < 0)
            goto fail;
    } else {
        preload = strdup(v->preload);
    }
    if (!preload)
        goto fail;
    int rc = push_var(&env, &n, &cap, "LD_PRELOAD", preload);
    free(preload);
    if (rc < 0)
        goto fail;
    if (push_var(&env, &n, &cap, "LETHE_CONFIG", v->config) < 0 ||
        push_var(&env, &n, &cap, "LETHE_STATS_SHM", v->stats_shm) < 0 ||
        (v->memnode && push_var(&env, &n, &cap, "LETHE_MEMNODE", v->memnode) < 0) ||
        (v->token_file && push_var(&env, &n, &cap, "LETHE_TOKEN_FILE", v->token_file) < 0) ||
        (v->control && push_var(&env, &n, &cap, "LETHE_CONTROL", v->control) < 0))
        goto fail;
    char pid_entry[32];
    snprintf(pid_entry, sizeof(pid_entry), "LETHE_PID=%0*d", PID_DIGITS, 0);
    if (push_word(&env, &n, &cap, pid_entry, strlen(pid_entry)) < 0)
        goto fail;
    *pid_slot = env[n - 1] + strlen("LETHE_PID=");
    return env;
fail:
    lethed_free_words(env);
    return NULL;
}

void lethed_env_set_pid(char *pid_slot, long pid)
{
    char digits[PID_DIGITS];
    int n = 0;
    do {
        digits[n++] = (char)('0' + pid % 10);
        pid /= 10;
    } while (pid > 0 && n < PID_DIGITS);
    for (int i = 0; i < n; i++)
        pid_slot[i] = digits[n - 1 - i];
    pid_slot[n] = '\0';
}
