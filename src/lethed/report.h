/* report.h — what lethed says about a run: the control port's JSON (GET /stats), Prometheus
 * text (GET /metrics) and health verdict (GET /health), and the line lethed prints at the end.
 *
 * Every function renders from a session and one stats snapshot read from the shared segment
 * (have_snap false: none could be read yet), into a FILE (an open_memstream for the control
 * port). One table lists every field of struct lethe_stats with its metric name, type and
 * help; /stats and /metrics both walk it, so they always carry the same counters.
 */
#ifndef LETHED_REPORT_H
#define LETHED_REPORT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#include "core/stats_shm.h"
#include "lethed/session.h"

/* Health: 200 "ok" while the program runs and its runtime published within
 * LETHE_STATS_FRESH_NS; otherwise 503 with the reason in *why. */
int lethed_health(const struct lethed_session *s, const struct lethe_stats_snapshot *snap,
                  bool have_snap, const char **why);

void lethed_report_json(FILE *out, const struct lethed_session *s,
                        const struct lethe_stats_snapshot *snap, bool have_snap);
void lethed_report_prometheus(FILE *out, const struct lethed_session *s,
                              const struct lethe_stats_snapshot *snap, bool have_snap);
/* "lethed: `cmd` exited with status 0 after 1.23 s; faults ..., swap-ins ..., ..." */
void lethed_report_final_line(FILE *out, const struct lethed_session *s,
                              const struct lethe_stats_snapshot *snap, bool have_snap);

/* Writes s as a JSON string literal (quotes included). */
void lethed_json_string(FILE *out, const char *s);
/* Fields of struct lethe_stats the table describes (tests check it covers the struct). */
size_t lethed_stat_field_count(void);

#endif
