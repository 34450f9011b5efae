/* proto.h — the memory node's wire protocol (docs/PROTOCOL.md), shared by the node and the
 * shm, tcp and verbs clients: message layout, encoders, and the parsers.
 *
 * Every message is a fixed 24-byte little-endian header followed by `length` payload bytes:
 *     u32 magic 'LTH1' | u8 version | u8 type | u16 flags | u64 request id | u32 length |
 *     i32 status
 * Requests carry status 0; a reply repeats the request's type and id, sets LETHE_F_REPLY,
 * and carries 0 or a positive errno (an error reply's payload is a short text saying why).
 *
 * The parsers are pure functions over a byte buffer: no allocation, no I/O, no global state,
 * so the node's request parser can be fuzzed (fuzz/) and replayed over a corpus (test/).
 * lethe_proto_parse_request() takes whatever bytes have arrived and answers one of
 *   LETHE_PARSE_MORE   not a whole message yet; *used = the bytes needed in all (at least
 *                      the header's 24 until the header is in)
 *   LETHE_PARSE_OK     one valid request of *used bytes, decoded into *req (pointers into buf)
 *   LETHE_PARSE_BAD    a well-framed message of *used bytes that is not a valid request:
 *                      answer req->error (req->hdr is valid) and go on after it
 *   LETHE_PARSE_FATAL  the framing itself is broken (bad magic or version, oversized length):
 *                      answer req->error and close the connection
 * The same checks bound every count against the payload length, so a valid request never
 * points outside buf. Slot ranges are the caller's business: the parser does not know the
 * client's region.
 */
#ifndef LETHE_PROTO_H
#define LETHE_PROTO_H

#include <endian.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "rdma/auth.h"

#define LETHE_PROTO_MAGIC   0x3148544cu /* "LTH1" */
#define LETHE_PROTO_VERSION 1
#define LETHE_PROTO_HDR_LEN 24
#define LETHE_PROTO_PAGE    4096u
/* Pages in one READ or WRITE request; larger batches are split into several requests. */
#define LETHE_PROTO_MAX_BATCH 256u
/* Largest payload either side accepts: a full WRITE. */
#define LETHE_PROTO_MAX_PAYLOAD (8u + LETHE_PROTO_MAX_BATCH * (8u + LETHE_PROTO_PAGE))
/* Error replies carry at most this much text. */
#define LETHE_PROTO_MAX_ERROR 240u

enum lethe_msg_type {
    LETHE_MSG_HELLO = 1,  /* node -> client on connect: the challenge */
    LETHE_MSG_AUTH = 2,   /* client nonce + proof; reply: node proof */
    LETHE_MSG_ALLOC = 3,  /* u64 bytes; reply: region id, pages, key, rdma port (+ memfd) */
    LETHE_MSG_ATTACH = 4, /* region id + attach proof; reply: pages */
    LETHE_MSG_READ = 5,   /* count + slots; reply: count pages */
    LETHE_MSG_WRITE = 6,  /* count + slots + pages; reply: empty */
    LETHE_MSG_STATS = 7,  /* reply: the node's counters */
    LETHE_MSG_BYE = 8,    /* reply: empty; then the node closes the connection */
};
#define LETHE_MSG_TYPE_MAX 8

/* Header flags. */
#define LETHE_F_REPLY      0x0001u /* set on every reply */
#define LETHE_F_ALLOC_SHM  0x0002u /* ALLOC: send the region's memfd (Unix socket only) */
#define LETHE_F_ALLOC_RDMA 0x0004u /* ALLOC: the client will use RDMA CM (node needs RDMA) */
#define LETHE_F_KNOWN      (LETHE_F_REPLY | LETHE_F_ALLOC_SHM | LETHE_F_ALLOC_RDMA)

struct lethe_proto_hdr {
    uint32_t magic;
    uint8_t version;
    uint8_t type;
    uint16_t flags;
    uint64_t req_id;
    uint32_t length;
    int32_t status;
};

/* Payload sizes of the fixed-size messages. */
#define LETHE_HELLO_LEN        (LETHE_NONCE_LEN + 8)
#define LETHE_AUTH_LEN         (LETHE_NONCE_LEN + LETHE_MAC_LEN)
#define LETHE_AUTH_REPLY_LEN   LETHE_MAC_LEN
#define LETHE_ALLOC_LEN        8
#define LETHE_ALLOC_REPLY_LEN  (8 + 8 + LETHE_REGION_KEY_LEN + 8)
#define LETHE_ATTACH_LEN       (8 + LETHE_MAC_LEN)
#define LETHE_ATTACH_REPLY_LEN 8
#define LETHE_IO_FIXED         8 /* u32 count, u32 reserved before the slots */

/* Counters in a STATS reply, in this order (u32 count, u32 0, then count u64s). A newer node
 * may send more; a reader takes the ones it knows. */
enum lethe_stat_field {
    LETHE_STAT_CLIENTS,
    LETHE_STAT_CONNECTIONS,
    LETHE_STAT_CAPACITY,
    LETHE_STAT_BYTES_LENT,
    LETHE_STAT_READS,
    LETHE_STAT_WRITES,
    LETHE_STAT_PAGES_READ,
    LETHE_STAT_PAGES_WRITTEN,
    LETHE_STAT_ERRORS,
    LETHE_STAT_AUTH_FAILURES,
    LETHE_STAT_CLIENTS_TOTAL,
    LETHE_STAT_NFIELDS
};

/* A decoded request; pointers point into the parsed buffer. */
struct lethe_proto_request {
    struct lethe_proto_hdr hdr;
    int error;       /* BAD/FATAL: positive errno to answer with */
    const char *why; /* BAD/FATAL: a static text saying what is wrong */
    union {
        struct {
            const uint8_t *nonce;
            const uint8_t *proof;
        } auth;
        struct {
            uint64_t bytes;
        } alloc;
        struct {
            uint64_t region_id;
            const uint8_t *proof;
        } attach;
        struct {
            uint32_t count;
            const uint8_t *slots; /* count little-endian u64s */
            const uint8_t *data;  /* WRITE: count pages */
        } io;
    } u;
};

enum lethe_parse_verdict {
    LETHE_PARSE_MORE = 0,
    LETHE_PARSE_OK = 1,
    LETHE_PARSE_BAD = 2,
    LETHE_PARSE_FATAL = 3,
};

static inline uint64_t lethe_le64(const uint8_t *p)
{
    uint64_t v;
    memcpy(&v, p, 8);
    return le64toh(v);
}

static inline uint32_t lethe_le32(const uint8_t *p)
{
    uint32_t v;
    memcpy(&v, p, 4);
    return le32toh(v);
}

static inline void lethe_put_le64(uint8_t *p, uint64_t v)
{
    v = htole64(v);
    memcpy(p, &v, 8);
}

static inline void lethe_put_le32(uint8_t *p, uint32_t v)
{
    v = htole32(v);
    memcpy(p, &v, 4);
}

static inline uint64_t lethe_proto_slot(const struct lethe_proto_request *r, uint32_t i)
{
    return lethe_le64(r->u.io.slots + 8 * (size_t)i);
}

/* Writes a header into out[LETHE_PROTO_HDR_LEN]. */
void lethe_proto_put_hdr(uint8_t *out, uint8_t type, uint16_t flags, uint64_t req_id,
                         uint32_t length, int32_t status);
/* Decodes a header without judging it. buf holds at least LETHE_PROTO_HDR_LEN bytes. */
void lethe_proto_get_hdr(const uint8_t *buf, struct lethe_proto_hdr *h);
/* Checks magic, version and length bound; returns 0 or a positive errno with *why set. */
int lethe_proto_check_hdr(const struct lethe_proto_hdr *h, const char **why);

/* The request parser described above. */
enum lethe_parse_verdict lethe_proto_parse_request(const uint8_t *buf, size_t len,
                                                   struct lethe_proto_request *req, size_t *used);

/* Payload bytes a request of this type and page count carries (READ/WRITE), for encoders. */
static inline uint32_t lethe_proto_io_len(uint8_t type, uint32_t count)
{
    uint32_t len = LETHE_IO_FIXED + 8 * count;
    if (type == LETHE_MSG_WRITE)
        len += count * LETHE_PROTO_PAGE;
    return len;
}

/* Encodes the fixed part of a READ/WRITE request (header, count, slots) into out, which has
 * room for LETHE_PROTO_HDR_LEN + LETHE_IO_FIXED + 8 * count bytes; returns the bytes written.
 * A WRITE's pages follow it on the wire. */
size_t lethe_proto_put_io(uint8_t *out, uint8_t type, uint64_t req_id, const uint64_t *slots,
                          uint32_t count);

/* The expected payload length of a reply to a request, or -1 when it varies (error text,
 * STATS). Used by clients to reject replies of the wrong size. */
long lethe_proto_reply_len(uint8_t type, uint32_t count);

const char *lethe_proto_type_name(uint8_t type);

/* RDMA CM private data (verbs). A client that holds a region (ALLOC with LETHE_F_ALLOC_RDMA
 * on its control connection) connects one RDMA CM id per channel with a CONNECT message;
 * the node accepts with ACCEPT (where the region is) or rejects with REJECT (why). Receivers
 * accept private data longer than these sizes (InfiniBand CM pads it). */
#define LETHE_VERBS_MAGIC       0x3156544cu /* "LTV1" */
#define LETHE_VERBS_CONNECT_LEN 56          /* the most RDMA CM carries in a connect on IB */
#define LETHE_VERBS_ACCEPT_LEN  32
#define LETHE_VERBS_REJECT_LEN  8

struct lethe_verbs_connect {
    uint64_t region_id;
    uint64_t seq;                 /* grows with every connection to this region */
    uint8_t proof[LETHE_MAC_LEN]; /* lethe_auth_verbs_proof(region key, region_id, seq) */
};

struct lethe_verbs_accept {
    uint64_t addr; /* the region's address in the node's MR */
    uint32_t rkey;
    uint64_t length; /* bytes */
};

void lethe_verbs_put_connect(uint8_t out[LETHE_VERBS_CONNECT_LEN],
                             const struct lethe_verbs_connect *c);
/* Returns 0, or -EPROTO when buf is too short or not a CONNECT. */
int lethe_verbs_get_connect(const void *buf, size_t len, struct lethe_verbs_connect *c);
void lethe_verbs_put_accept(uint8_t out[LETHE_VERBS_ACCEPT_LEN],
                            const struct lethe_verbs_accept *a);
int lethe_verbs_get_accept(const void *buf, size_t len, struct lethe_verbs_accept *a);
void lethe_verbs_put_reject(uint8_t out[LETHE_VERBS_REJECT_LEN], int err);
/* Returns the node's positive errno, or -EPROTO when buf is not a Lethe REJECT. */
int lethe_verbs_get_reject(const void *buf, size_t len);

#endif
