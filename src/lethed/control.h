/* control.h — lethed's control port: a small HTTP/1.x server (libevent evhttp) on the
 * session's event loop. The API is documented in docs/LETHED.md:
 *   GET  /            the list of endpoints
 *   GET  /stats       JSON: every runtime counter, per-shard stats, config, files, program
 *   GET  /metrics     Prometheus text exposition (version 0.0.4)
 *   GET  /health      200 "ok" while the program runs with fresh stats, else 503 and why
 *   GET  /cache_size  the cache size now (JSON)
 *   PUT  /cache_size  body "256M": grows or shrinks the cache of the running program
 * HEAD works wherever GET does. Unknown paths get 404, other methods 405 (with Allow).
 * It reads the session (never writes it) and talks to the program only through the stats
 * segment, so a stuck program cannot stall the port.
 */
#ifndef LETHED_CONTROL_H
#define LETHED_CONTROL_H

#include "lethed/session.h"

struct lethed_control;

/* Binds `listen` ("host:port"; port 0 picks a free one) on s->base and serves s. Writes the
 * bound address to s->control_address. Returns 0 or a negative errno (logged). */
int lethed_control_start(struct lethed_session *s, const char *listen, struct lethed_control **out);
/* Answers a pending cache size request (503) and closes the port. */
void lethed_control_stop(struct lethed_control *c);

#endif
