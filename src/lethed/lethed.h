/* lethed.h — the supervisor's internal interface between its command line (main.c) and the
 * code that runs the application.
 *
 * main.c parses the options, loads and validates the configuration, and then hands over to
 * lethed_launch(). main.c carries a weak placeholder that says launching is not implemented;
 * the launcher's own file defines the real one, which takes its place at link time.
 */
#ifndef LETHED_LETHED_H
#define LETHED_LETHED_H

#include "core/config.h"

/* Runs the application under Lethe and returns lethed's exit status (the application's, or
 * 1 when it could not be started). argv[0..argc-1] are the command and its arguments given
 * after the options (argc may be 0: then the config's [app] command is the program). */
int lethed_launch(const struct lethe_config *cfg, int argc, char **argv);

#endif
