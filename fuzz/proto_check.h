/* proto_check.h — walks a byte stream through lethe_proto_parse_request() the way the memory
 * node does (serve or skip each message until more bytes are needed or the framing breaks)
 * and checks the parser's contract on every step: verdicts carry what they promise, `used`
 * stays within the buffer, every pointer of a valid request lies inside its message, and
 * every byte a request points at is read (so ASan sees any overread).
 *
 * Shared by the libFuzzer target (fuzz/fuzz_proto.c) and the corpus replay in
 * test/test_proto.c: both go through this one entry point.
 */
#ifndef LETHE_FUZZ_PROTO_CHECK_H
#define LETHE_FUZZ_PROTO_CHECK_H

#include <stddef.h>
#include <stdint.h>

#include "rdma/proto.h"

static inline int proto_check_within(const uint8_t *p, size_t n, const uint8_t *lo,
                                     const uint8_t *hi)
{
    return p >= lo && p <= hi && (size_t)(hi - p) >= n;
}

/* Where the walk reads the parsed bytes to, so that a sanitizer sees every byte read. */
static volatile uint8_t proto_check_sink;

/* Returns NULL when every invariant held, else what broke. *first: the first message's
 * verdict (-1 for an empty walk); *messages: how many messages were parsed. */
static inline const char *proto_check_stream(const uint8_t *buf, size_t len, int *first,
                                             unsigned *messages)
{
    size_t off = 0;
    *first = -1;
    *messages = 0;
    for (;;) {
        struct lethe_proto_request req;
        size_t used = 0;
        size_t left = len - off;
        enum lethe_parse_verdict v = lethe_proto_parse_request(buf + off, left, &req, &used);
        if (*first < 0)
            *first = (int)v;
        const uint8_t *lo = buf + off, *hi = buf + off + used;
        switch (v) {
        case LETHE_PARSE_MORE:
            if (used <= left)
                return "MORE although the bytes it asks for are there";
            if (used < LETHE_PROTO_HDR_LEN || used > LETHE_PROTO_HDR_LEN + LETHE_PROTO_MAX_PAYLOAD)
                return "MORE asks for an impossible message size";
            return NULL;
        case LETHE_PARSE_FATAL:
            if (req.error <= 0 || !req.why)
                return "FATAL without an errno and a reason";
            return NULL;
        case LETHE_PARSE_BAD:
            if (req.error <= 0 || !req.why)
                return "BAD without an errno and a reason";
            if (used < LETHE_PROTO_HDR_LEN || used > left)
                return "BAD consumed bytes outside the buffer";
            break;
        case LETHE_PARSE_OK:
            if (used < LETHE_PROTO_HDR_LEN || used > left)
                return "OK consumed bytes outside the buffer";
            if (used != LETHE_PROTO_HDR_LEN + (size_t)req.hdr.length)
                return "OK consumed other than header + length";
            switch (req.hdr.type) {
            case LETHE_MSG_AUTH:
                if (!proto_check_within(req.u.auth.nonce, LETHE_NONCE_LEN, lo, hi) ||
                    !proto_check_within(req.u.auth.proof, LETHE_MAC_LEN, lo, hi))
                    return "AUTH points outside its message";
                for (unsigned i = 0; i < LETHE_NONCE_LEN; i++)
                    proto_check_sink ^= req.u.auth.nonce[i] ^ req.u.auth.proof[i];
                break;
            case LETHE_MSG_ALLOC:
                if (req.u.alloc.bytes == 0 || req.u.alloc.bytes % LETHE_PROTO_PAGE)
                    return "ALLOC of a size that is not whole pages";
                break;
            case LETHE_MSG_ATTACH:
                if (!proto_check_within(req.u.attach.proof, LETHE_MAC_LEN, lo, hi))
                    return "ATTACH points outside its message";
                break;
            case LETHE_MSG_READ:
            case LETHE_MSG_WRITE: {
                uint32_t n = req.u.io.count;
                if (n == 0 || n > LETHE_PROTO_MAX_BATCH)
                    return "READ/WRITE page count out of bounds";
                if (!proto_check_within(req.u.io.slots, 8 * (size_t)n, lo, hi))
                    return "slots outside the message";
                for (uint32_t i = 0; i < n; i++)
                    proto_check_sink ^= (uint8_t)lethe_proto_slot(&req, i);
                if (req.hdr.type == LETHE_MSG_WRITE) {
                    size_t bytes = (size_t)n * LETHE_PROTO_PAGE;
                    if (!proto_check_within(req.u.io.data, bytes, lo, hi) ||
                        req.u.io.data + bytes != hi)
                        return "WRITE data is not the rest of its message";
                    for (size_t i = 0; i < bytes; i += 512)
                        proto_check_sink ^= req.u.io.data[i];
                    proto_check_sink ^= req.u.io.data[bytes - 1];
                } else if (req.u.io.data) {
                    return "READ with a data pointer";
                }
                break;
            }
            case LETHE_MSG_STATS:
            case LETHE_MSG_BYE:
                if (req.hdr.length)
                    return "STATS/BYE with a payload";
                break;
            default:
                return "OK for a type that is not a request";
            }
            break;
        default:
            return "unknown verdict";
        }
        (*messages)++;
        off += used;
        if (off == len)
            return NULL;
    }
}

#endif
