/* proto.c — encoders and the pure request parser of the memory node's protocol (proto.h).
 * Every length is checked before it is used, in an order that cannot overflow: the header's
 * length against LETHE_PROTO_MAX_PAYLOAD first, a request's page count against
 * LETHE_PROTO_MAX_BATCH before any size is computed from it. */
#include "rdma/proto.h"

#include <errno.h>

void lethe_proto_put_hdr(uint8_t *out, uint8_t type, uint16_t flags, uint64_t req_id,
                         uint32_t length, int32_t status)
{
    lethe_put_le32(out, LETHE_PROTO_MAGIC);
    out[4] = LETHE_PROTO_VERSION;
    out[5] = type;
    out[6] = (uint8_t)flags;
    out[7] = (uint8_t)(flags >> 8);
    lethe_put_le64(out + 8, req_id);
    lethe_put_le32(out + 16, length);
    lethe_put_le32(out + 20, (uint32_t)status);
}

void lethe_proto_get_hdr(const uint8_t *buf, struct lethe_proto_hdr *h)
{
    h->magic = lethe_le32(buf);
    h->version = buf[4];
    h->type = buf[5];
    h->flags = (uint16_t)(buf[6] | buf[7] << 8);
    h->req_id = lethe_le64(buf + 8);
    h->length = lethe_le32(buf + 16);
    h->status = (int32_t)lethe_le32(buf + 20);
}

int lethe_proto_check_hdr(const struct lethe_proto_hdr *h, const char **why)
{
    if (h->magic != LETHE_PROTO_MAGIC) {
        *why = "bad magic (not a Lethe memnode message)";
        return EPROTO;
    }
    if (h->version != LETHE_PROTO_VERSION) {
        *why = "unsupported protocol version";
        return EPROTONOSUPPORT;
    }
    if (h->length > LETHE_PROTO_MAX_PAYLOAD) {
        *why = "payload length exceeds the protocol maximum";
        return EMSGSIZE;
    }
    return 0;
}

static enum lethe_parse_verdict bad(struct lethe_proto_request *req, int error, const char *why)
{
    req->error = error;
    req->why = why;
    return LETHE_PARSE_BAD;
}

static enum lethe_parse_verdict parse_io(const uint8_t *p, struct lethe_proto_request *req)
{
    uint32_t length = req->hdr.length;
    if (length < LETHE_IO_FIXED)
        return bad(req, EBADMSG, "truncated payload: no page count");
    uint32_t count = lethe_le32(p);
    if (lethe_le32(p + 4) != 0)
        return bad(req, EINVAL, "reserved field is not zero");
    if (count == 0)
        return bad(req, EINVAL, "page count is zero");
    if (count > LETHE_PROTO_MAX_BATCH)
        return bad(req, E2BIG, "page count exceeds the protocol's batch limit");
    uint32_t want = lethe_proto_io_len(req->hdr.type, count);
    if (length < want)
        return bad(req, EBADMSG, "truncated payload: shorter than its page count says");
    if (length > want)
        return bad(req, EBADMSG, "payload longer than its page count says");
    req->u.io.count = count;
    req->u.io.slots = p + LETHE_IO_FIXED;
    req->u.io.data = req->hdr.type == LETHE_MSG_WRITE ? p + LETHE_IO_FIXED + 8 * count : NULL;
    return LETHE_PARSE_OK;
}

enum lethe_parse_verdict lethe_proto_parse_request(const uint8_t *buf, size_t len,
                                                   struct lethe_proto_request *req, size_t *used)
{
    memset(req, 0, sizeof(*req));
    if (len < LETHE_PROTO_HDR_LEN) {
        *used = LETHE_PROTO_HDR_LEN;
        return LETHE_PARSE_MORE;
    }
    lethe_proto_get_hdr(buf, &req->hdr);
    int err = lethe_proto_check_hdr(&req->hdr, &req->why);
    if (err) {
        req->error = err;
        *used = LETHE_PROTO_HDR_LEN;
        return LETHE_PARSE_FATAL;
    }
    size_t total = LETHE_PROTO_HDR_LEN + (size_t)req->hdr.length;
    *used = total;
    if (len < total)
        return LETHE_PARSE_MORE;

    const uint8_t *p = buf + LETHE_PROTO_HDR_LEN;
    uint32_t length = req->hdr.length;
    uint16_t flags = req->hdr.flags;
    if (flags & LETHE_F_REPLY)
        return bad(req, EINVAL, "a reply was sent where a request was expected");
    if (flags & ~LETHE_F_KNOWN)
        return bad(req, EINVAL, "unknown header flags");
    if (req->hdr.status != 0)
        return bad(req, EINVAL, "a request's status field must be zero");
    if (req->hdr.type != LETHE_MSG_ALLOC && (flags & (LETHE_F_ALLOC_SHM | LETHE_F_ALLOC_RDMA)))
        return bad(req, EINVAL, "ALLOC flags on a request that is not ALLOC");

    switch (req->hdr.type) {
    case LETHE_MSG_HELLO:
        return bad(req, EPROTO, "HELLO comes from the node, not from a client");
    case LETHE_MSG_AUTH:
        if (length != LETHE_AUTH_LEN)
            return bad(req, EBADMSG, "AUTH payload must be 64 bytes");
        req->u.auth.nonce = p;
        req->u.auth.proof = p + LETHE_NONCE_LEN;
        return LETHE_PARSE_OK;
    case LETHE_MSG_ALLOC:
        if (length != LETHE_ALLOC_LEN)
            return bad(req, EBADMSG, "ALLOC payload must be 8 bytes");
        if ((flags & LETHE_F_ALLOC_SHM) && (flags & LETHE_F_ALLOC_RDMA))
            return bad(req, EINVAL, "ALLOC cannot ask for both shm and RDMA");
        req->u.alloc.bytes = lethe_le64(p);
        if (req->u.alloc.bytes == 0)
            return bad(req, EINVAL, "ALLOC of zero bytes");
        if (req->u.alloc.bytes % LETHE_PROTO_PAGE)
            return bad(req, EINVAL, "ALLOC size is not a multiple of the 4096-byte page");
        return LETHE_PARSE_OK;
    case LETHE_MSG_ATTACH:
        if (length != LETHE_ATTACH_LEN)
            return bad(req, EBADMSG, "ATTACH payload must be 40 bytes");
        req->u.attach.region_id = lethe_le64(p);
        req->u.attach.proof = p + 8;
        return LETHE_PARSE_OK;
    case LETHE_MSG_READ:
    case LETHE_MSG_WRITE:
        return parse_io(p, req);
    case LETHE_MSG_STATS:
    case LETHE_MSG_BYE:
        if (length != 0)
            return bad(req, EBADMSG, "this request carries no payload");
        return LETHE_PARSE_OK;
    default:
        return bad(req, ENOSYS, "unknown message type");
    }
}

size_t lethe_proto_put_io(uint8_t *out, uint8_t type, uint64_t req_id, const uint64_t *slots,
                          uint32_t count)
{
    lethe_proto_put_hdr(out, type, 0, req_id, lethe_proto_io_len(type, count), 0);
    uint8_t *p = out + LETHE_PROTO_HDR_LEN;
    lethe_put_le32(p, count);
    lethe_put_le32(p + 4, 0);
    p += LETHE_IO_FIXED;
    for (uint32_t i = 0; i < count; i++)
        lethe_put_le64(p + 8 * (size_t)i, slots[i]);
    return LETHE_PROTO_HDR_LEN + LETHE_IO_FIXED + 8 * (size_t)count;
}

long lethe_proto_reply_len(uint8_t type, uint32_t count)
{
    switch (type) {
    case LETHE_MSG_HELLO:
        return LETHE_HELLO_LEN;
    case LETHE_MSG_AUTH:
        return LETHE_AUTH_REPLY_LEN;
    case LETHE_MSG_ALLOC:
        return LETHE_ALLOC_REPLY_LEN;
    case LETHE_MSG_ATTACH:
        return LETHE_ATTACH_REPLY_LEN;
    case LETHE_MSG_READ:
        return (long)count * LETHE_PROTO_PAGE;
    case LETHE_MSG_WRITE:
    case LETHE_MSG_BYE:
        return 0;
    default:
        return -1;
    }
}

const char *lethe_proto_type_name(uint8_t type)
{
    static const char *const names[] = {"?",    "HELLO", "AUTH",  "ALLOC", "ATTACH",
                                        "READ", "WRITE", "STATS", "BYE"};
    return type <= LETHE_MSG_TYPE_MAX ? names[type] : "?";
}

void lethe_verbs_put_connect(uint8_t out[LETHE_VERBS_CONNECT_LEN],
                             const struct lethe_verbs_connect *c)
{
    lethe_put_le32(out, LETHE_VERBS_MAGIC);
    lethe_put_le32(out + 4, 0);
    lethe_put_le64(out + 8, c->region_id);
    lethe_put_le64(out + 16, c->seq);
    memcpy(out + 24, c->proof, LETHE_MAC_LEN);
}

int lethe_verbs_get_connect(const void *buf, size_t len, struct lethe_verbs_connect *c)
{
    const uint8_t *p = buf;
    if (!p || len < LETHE_VERBS_CONNECT_LEN || lethe_le32(p) != LETHE_VERBS_MAGIC ||
        lethe_le32(p + 4) != 0)
        return -EPROTO;
    c->region_id = lethe_le64(p + 8);
    c->seq = lethe_le64(p + 16);
    memcpy(c->proof, p + 24, LETHE_MAC_LEN);
    return 0;
}

void lethe_verbs_put_accept(uint8_t out[LETHE_VERBS_ACCEPT_LEN], const struct lethe_verbs_accept *a)
{
    lethe_put_le32(out, LETHE_VERBS_MAGIC);
    lethe_put_le32(out + 4, 0);
    lethe_put_le64(out + 8, a->addr);
    lethe_put_le32(out + 16, a->rkey);
    lethe_put_le32(out + 20, 0);
    lethe_put_le64(out + 24, a->length);
}

int lethe_verbs_get_accept(const void *buf, size_t len, struct lethe_verbs_accept *a)
{
    const uint8_t *p = buf;
    if (!p || len < LETHE_VERBS_ACCEPT_LEN || lethe_le32(p) != LETHE_VERBS_MAGIC ||
        lethe_le32(p + 4) != 0)
        return -EPROTO;
    a->addr = lethe_le64(p + 8);
    a->rkey = lethe_le32(p + 16);
    a->length = lethe_le64(p + 24);
    return 0;
}

void lethe_verbs_put_reject(uint8_t out[LETHE_VERBS_REJECT_LEN], int err)
{
    lethe_put_le32(out, LETHE_VERBS_MAGIC);
    lethe_put_le32(out + 4, (uint32_t)err);
}

int lethe_verbs_get_reject(const void *buf, size_t len)
{
    const uint8_t *p = buf;
    if (!p || len < LETHE_VERBS_REJECT_LEN || lethe_le32(p) != LETHE_VERBS_MAGIC)
        return -EPROTO;
    int err = (int)lethe_le32(p + 4);
    return err > 0 && err < 4096 ? err : -EPROTO;
}
