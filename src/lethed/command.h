/* command.h — the program lethed runs: splitting [app] command, finding the executable,
 * and the environment that injects liblethe.so (internal to src/lethed).
 */
#ifndef LETHED_COMMAND_H
#define LETHED_COMMAND_H

#include <stddef.h>

/* Splits a command line into words like a shell would, without any expansion: blanks
 * separate words; '...' keeps everything literally; "..." keeps everything but lets a
 * backslash escape " \ $ and `; a backslash outside quotes escapes the next character.
 * On success *argv_out is a NULL-terminated array (free with lethed_free_words) and the
 * result is the number of words (0 for a blank line). -EINVAL: an unterminated quote or a
 * trailing backslash; -ENOMEM. */
int lethed_split_command(const char *line, char ***argv_out);
void lethed_free_words(char **argv);

/* The command line for display: words joined by spaces, quoted when they need it. */
void lethed_format_command(char *const *argv, char *out, size_t len);

/* Finds the executable for `name` as execvp would (a name with a '/' is taken as is, else
 * each directory of PATH, default "/usr/local/bin:/usr/bin:/bin"). Returns 0 with the path
 * in out, -ENOENT when there is none, -EACCES when one exists but cannot be executed. */
int lethed_find_executable(const char *name, char *out, size_t len);

/* Where liblethe.so lives: ../lib/liblethe.so next to this lethed (/proc/self/exe).
 * Returns 0, or -ENOENT (out holds the path looked at). */
int lethed_find_preload(char *out, size_t len);

/* Variables lethed sets for the program. */
struct lethed_env_vars {
    const char *preload;    /* liblethe.so, prepended to LD_PRELOAD */
    const char *config;     /* LETHE_CONFIG */
    const char *memnode;    /* LETHE_MEMNODE, or NULL */
    const char *token_file; /* LETHE_TOKEN_FILE, or NULL */
    const char *stats_shm;  /* LETHE_STATS_SHM */
    const char *control;    /* LETHE_CONTROL (informational), or NULL */
};

/* Builds the program's environment from `base` (lethed's own): lethed's variables replace
 * any of the same name (and LETHE_OPTIONS is dropped: the configuration lethed validated is
 * the one that applies). The entry "LETHE_PID=" is followed by room for the pid, which
 * the child writes with lethed_env_set_pid() after fork. Free with lethed_free_words. */
char **lethed_build_env(char *const *base, const struct lethed_env_vars *v, char **pid_slot);
/* Writes pid in decimal into the slot (async-signal-safe: for the child after fork). */
void lethed_env_set_pid(char *pid_slot, long pid);

#endif
