/* main.c — lethed's command line: parse the options, load the configuration, then dispatch
 * to --help, --version, --check or the launcher (lethed_launch(), in its own file).
 *
 * Exit status: 0 success, 2 a usage error or a configuration with problems, 1 a failure to
 * launch; otherwise the application's own status (from lethed_launch()).
 */
#include <errno.h>
#include <getopt.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "core/config.h"
#include "core/log.h"
#include "lethed/lethed.h"

#define EXIT_USAGE 2
#define MAX_SETS   32

struct options {
    const char *config_path;
    bool check;
    bool help;
    bool version;
    unsigned n_sets; /* --set SECTION.KEY=VALUE, applied over the file in order */
    const char *sets[MAX_SETS];
    int argc; /* the command after the options */
    char **argv;
};

static void usage(FILE *out)
{
    fputs("usage: lethed -c FILE [--set SECTION.KEY=VALUE]... [--check] [--] [command args...]\n"
          "\n"
          "Runs a program with its memory managed by Lethe: a local page cache of\n"
          "cache_size bytes backed by remote memory on a memory node.\n"
          "\n"
          "options:\n"
          "  -c, --config FILE  the configuration (lethe.conf); required\n"
          "  -s, --set SECTION.KEY=VALUE\n"
          "                     override one key of the file (repeatable), e.g.\n"
          "                     --set cache.cache_size=256M\n"
          "      --check        load and validate the configuration, print the effective\n"
          "                     configuration and exit (0: valid, 2: problems on stderr)\n"
          "  -h, --help         print this help and exit\n"
          "  -V, --version      print the version and exit\n"
          "\n"
          "Without a command, lethed runs the [app] command of the configuration.\n"
          "See docs/CONFIG.md for every configuration key.\n",
          out);
}

/* Returns 0, or EXIT_USAGE after printing what is wrong. */
static int parse_options(int argc, char **argv, struct options *o)
{
    enum { OPT_CHECK = 256 };
    static const struct option longopts[] = {
        {"config", required_argument, NULL, 'c'},
        {"check", no_argument, NULL, OPT_CHECK},
        {"set", required_argument, NULL, 's'},
        {"help", no_argument, NULL, 'h'},
        {"version", no_argument, NULL, 'V'},
        {NULL, 0, NULL, 0},
    };
    memset(o, 0, sizeof(*o));
    opterr = 0;
    int ch;
    /* '+': stop at the first non-option, which begins the application's command line. */
    while ((ch = getopt_long(argc, argv, "+:c:s:hV", longopts, NULL)) != -1) {
        switch (ch) {
        case 'c':
            o->config_path = optarg;
            break;
        case OPT_CHECK:
            o->check = true;
            break;
        case 's':
            if (o->n_sets == MAX_SETS) {
                fprintf(stderr, "lethed: at most %d --set options\n", MAX_SETS);
                goto bad;
            }
            o->sets[o->n_sets++] = optarg;
            break;
        case 'h':
            o->help = true;
            break;
        case 'V':
            o->version = true;
            break;
        case ':':
            fprintf(stderr, "lethed: %s needs an argument\n", argv[optind - 1]);
            goto bad;
        default:
            if (optopt)
                fprintf(stderr, "lethed: unknown option -%c\n", optopt);
            else
                fprintf(stderr, "lethed: unknown option %s\n", argv[optind - 1]);
            goto bad;
        }
    }
    o->argc = argc - optind;
    o->argv = argv + optind;
    if (!o->help && !o->version && !o->config_path) {
        fputs("lethed: no configuration: give one with -c FILE (conf/lethe.conf is a sample)\n",
              stderr);
        goto bad;
    }
    return 0;
bad:
    fputs("usage: lethed -c FILE [--check] [--] [command args...]  (lethed --help for more)\n",
          stderr);
    return EXIT_USAGE;
}

/* Loads and validates; prints every problem. Returns 0 or EXIT_USAGE. */
static int load_config(const char *path, struct lethe_config *cfg)
{
    lethe_config_defaults(cfg);
    int n = lethe_config_load(cfg, path, stderr);
    if (n < 0) {
        fprintf(stderr, "lethed: cannot read %s: %s\n", path, strerror(-n));
        return EXIT_USAGE;
    }
    if (n > 0) {
        fprintf(stderr, "lethed: %s: %d problem%s\n", path, n, n == 1 ? "" : "s");
        return EXIT_USAGE;
    }
    return 0;
}

/* Applies the --set overrides, then checks the whole configuration again. Returns 0 or
 * EXIT_USAGE after printing every problem. */
static int apply_sets(const struct options *o, struct lethe_config *cfg)
{
    int problems = 0;
    for (unsigned i = 0; i < o->n_sets; i++) {
        char buf[LETHE_COMMAND_MAX + 64];
        snprintf(buf, sizeof(buf), "%s", o->sets[i]);
        char *eq = strchr(buf, '=');
        char *dot = strchr(buf, '.');
        if (!eq || !dot || dot > eq || dot == buf || dot + 1 == eq) {
            fprintf(stderr, "lethed: --set %s: expected SECTION.KEY=VALUE\n", o->sets[i]);
            problems++;
            continue;
        }
        *dot = '\0';
        *eq = '\0';
        char err[512];
        if (lethe_config_set(cfg, buf, dot + 1, eq + 1, err, sizeof(err)) < 0) {
            fprintf(stderr, "lethed: --set %s: %s\n", o->sets[i], err);
            problems++;
        }
    }
    if (problems == 0 && o->n_sets > 0)
        problems = lethe_config_validate(cfg, "--set", stderr);
    return problems ? EXIT_USAGE : 0;
}

/* Placeholder until the launcher is linked in: its file's strong definition replaces it. */
__attribute__((weak)) int lethed_launch(const struct lethe_config *cfg, int argc, char **argv)
{
    fprintf(stderr, "lethed: launching programs is not implemented yet (use --check)\n");
    return 1;
}

int main(int argc, char **argv)
{
    lethe_log_init("lethed");
    lethe_log_set_role("main");

    struct options o;
    int rc = parse_options(argc, argv, &o);
    if (rc)
        return rc;
    if (o.help) {
        usage(stdout);
        return 0;
    }
    if (o.version) {
        printf("lethed %s\n", LETHE_VERSION);
        return 0;
    }

    struct lethe_config cfg;
    rc = load_config(o.config_path, &cfg);
    if (rc)
        return rc;
    rc = apply_sets(&o, &cfg);
    if (rc)
        return rc;
    lethe_log_set_level((enum lethe_log_level)cfg.log_level);
    if (o.check) {
        lethe_config_print(&cfg, stdout);
        return 0;
    }
    return lethed_launch(&cfg, o.argc, o.argv);
}
