/* embedded.h — a memory node inside lethe-bench, for shm and tcp runs given no address.
 *
 * bench_embedded_start() starts the memory-node library (memnode/memnode.h) in this process
 * with capacity for cfg->remote_size, and points cfg at it: memnodes[0] (the Unix socket for
 * shm, 127.0.0.1:PORT for tcp) and the token file. Builds without the memory-node library
 * return -ENOTSUP. Data still crosses the transport exactly as with a separate node: the
 * shm transport maps the node's memfd, the tcp transport talks over loopback.
 */
#ifndef BENCH_EMBEDDED_H
#define BENCH_EMBEDDED_H

#include "core/config.h"

struct bench_embedded;

int bench_embedded_start(struct lethe_config *cfg, struct bench_embedded **out);
void bench_embedded_stop(struct bench_embedded *e);

#endif
