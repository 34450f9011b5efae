/* client.h — the client side of a memory-node connection over a blocking stream socket
 * (internal to src/rdma; used by the shm, tcp and verbs transports and by tests).
 *
 * A connection is opened with lethe_mnc_connect() (TCP "host:port", "[v6addr]:port", or a
 * Unix socket path), then lethe_mnc_handshake() reads the node's HELLO, proves the token and
 * checks the node's proof (auth.h). After that the connection is used for ALLOC or ATTACH
 * and then for requests. Every call takes the socket's time limits as they are set: the
 * handshake applies the connect timeout, lethe_mnc_set_timeout() sets the one for later
 * I/O. Sends never raise SIGPIPE.
 *
 * Errors are negative errnos with a sentence in err[] that does not name the node (callers
 * prefix it): "connection closed by peer", "node refused: capacity exhausted (...)", ...
 */
#ifndef LETHE_RDMA_CLIENT_H
#define LETHE_RDMA_CLIENT_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#include "core/config.h"
#include "rdma/proto.h"

#define LETHE_MNC_ERR 224

struct lethe_mnc {
    int fd;
    bool is_unix;
    uint8_t ns[LETHE_NONCE_LEN]; /* this connection's nonces, for ATTACH proofs */
    uint8_t nc[LETHE_NONCE_LEN];
    uint32_t max_payload; /* the node's limits from HELLO */
    uint32_t max_batch;
    uint64_t next_id; /* request ids on this connection */
};

/* What ALLOC returned. */
struct lethe_mnc_region {
    uint64_t id;
    uint64_t pages;
    uint8_t key[LETHE_REGION_KEY_LEN];
    uint16_t rdma_port; /* 0: the node has no RDMA listener */
    int memfd;          /* LETHE_F_ALLOC_SHM: the region's memfd, else -1 */
};

/* Splits "host:port" or "[v6]:port". Returns 0 or -EINVAL. */
int lethe_split_hostport(const char *addr, char *host, size_t hostlen, char *port, size_t portlen);

/* addr is a Unix socket path when it contains a '/', else host:port. */
int lethe_mnc_connect(struct lethe_mnc *c, const char *addr, uint64_t timeout_us, char *err);
int lethe_mnc_handshake(struct lethe_mnc *c, const char *token, uint64_t timeout_us, char *err);
int lethe_mnc_alloc(struct lethe_mnc *c, uint64_t bytes, uint16_t flags, struct lethe_mnc_region *r,
                    char *err);
int lethe_mnc_attach(struct lethe_mnc *c, uint64_t region_id,
                     const uint8_t key[LETHE_REGION_KEY_LEN], uint64_t *pages, char *err);
/* Fills up to n counters (enum lethe_stat_field order); *got = how many the node sent. */
int lethe_mnc_stats(struct lethe_mnc *c, uint64_t *fields, unsigned n, unsigned *got, char *err);
void lethe_mnc_close(struct lethe_mnc *c);
int lethe_mnc_set_timeout(struct lethe_mnc *c, uint64_t timeout_us);

/* Low-level I/O, for the transports' data paths. */
int lethe_mnc_send(struct lethe_mnc *c, struct iovec *iov, int iovcnt, char *err);
int lethe_mnc_recv(struct lethe_mnc *c, void *buf, size_t n, char *err);
/* Receives n bytes scattered over iov (which it consumes). */
int lethe_mnc_recvv(struct lethe_mnc *c, struct iovec *iov, int iovcnt, size_t n, char *err);
/* Reads one reply header and checks magic/version/flags; for an error reply, reads its text
 * into err ("node replied ERANGE: slot 9 is beyond the region's 8 pages") and returns
 * -status. Returns 0 with *h filled otherwise. */
int lethe_mnc_recv_hdr(struct lethe_mnc *c, struct lethe_proto_hdr *h, char *err);
/* Sends a request with a small payload and reads its reply into out[outlen] (exactly). */
int lethe_mnc_call(struct lethe_mnc *c, uint8_t type, uint16_t flags, const void *payload,
                   uint32_t len, void *out, uint32_t outlen, int *passed_fd, char *err);

/* A thread that sleeps in poll() on a connection the node never writes to unasked (the
 * transport's control connection) and notes when the node goes away, so that data paths that
 * do not involve the node's CPU (shm, verbs) can fail instead of carrying on. */
struct lethe_mnc_watch {
    int fd;
    int wake_fd;
    pthread_t thread;
    int gone; /* atomic: set once, after `why` is written */
    char why[96];
};

int lethe_mnc_watch_start(struct lethe_mnc_watch *w, int fd);
void lethe_mnc_watch_stop(struct lethe_mnc_watch *w);
/* NULL while the node is there, else why it is not ("memnode closed the connection"). */
static inline const char *lethe_mnc_watch_gone(const struct lethe_mnc_watch *w)
{
    return __atomic_load_n(&w->gone, __ATOMIC_ACQUIRE) ? w->why : NULL;
}

#endif
