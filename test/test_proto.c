/* test_proto.c — the memory node's wire protocol: encoders round-trip through the parser,
 * each malformed-request class gets the verdict and errno the protocol promises, the
 * regression corpus test/corpus/proto/ replays through the same walk as the fuzzer, and the
 * RDMA CM private data encodes and refuses garbage. */
#include <criterion/criterion.h>
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../fuzz/proto_check.h"
#include "rdma/proto.h"

static uint8_t buf[LETHE_PROTO_HDR_LEN + LETHE_PROTO_MAX_PAYLOAD + 64];

static size_t put_msg(uint8_t type, uint16_t flags, uint64_t id, const void *payload, uint32_t len)
{
    lethe_proto_put_hdr(buf, type, flags, id, len, 0);
    if (len)
        memcpy(buf + LETHE_PROTO_HDR_LEN, payload, len);
    return LETHE_PROTO_HDR_LEN + len;
}

static enum lethe_parse_verdict parse(size_t len, struct lethe_proto_request *req, size_t *used)
{
    return lethe_proto_parse_request(buf, len, req, used);
}

Test(proto, header_round_trips_little_endian)
{
    lethe_proto_put_hdr(buf, LETHE_MSG_READ, LETHE_F_REPLY, 0x0102030405060708ULL, 0x1234, -5);
    cr_assert_eq(memcmp(buf, "LTH1", 4), 0, "magic reads LTH1 on the wire");
    cr_assert_eq(buf[8], 0x08, "request id is little-endian");
    struct lethe_proto_hdr h;
    lethe_proto_get_hdr(buf, &h);
    cr_assert_eq(h.magic, LETHE_PROTO_MAGIC);
    cr_assert_eq(h.version, LETHE_PROTO_VERSION);
    cr_assert_eq(h.type, LETHE_MSG_READ);
    cr_assert_eq(h.flags, LETHE_F_REPLY);
    cr_assert_eq(h.req_id, 0x0102030405060708ULL);
    cr_assert_eq(h.length, 0x1234);
    cr_assert_eq(h.status, -5);
}

Test(proto, encoded_write_parses_back_with_its_slots_and_pages)
{
    uint64_t slots[3] = {9, 0, 123456789012ULL};
    size_t n = lethe_proto_put_io(buf, LETHE_MSG_WRITE, 77, slots, 3);
    for (int i = 0; i < 3; i++)
        memset(buf + n + (size_t)i * LETHE_PROTO_PAGE, 'a' + i, LETHE_PROTO_PAGE);
    size_t total = n + 3 * LETHE_PROTO_PAGE;
    struct lethe_proto_request req;
    size_t used;
    cr_assert_eq(parse(total, &req, &used), LETHE_PARSE_OK, "%s", req.why);
    cr_assert_eq(used, total);
    cr_assert_eq(req.hdr.req_id, 77);
    cr_assert_eq(req.u.io.count, 3);
    for (uint32_t i = 0; i < 3; i++)
        cr_assert_eq(lethe_proto_slot(&req, i), slots[i]);
    cr_assert_eq(req.u.io.data[0], 'a');
    cr_assert_eq(req.u.io.data[2 * LETHE_PROTO_PAGE], 'c');
}

Test(proto, a_message_arriving_byte_by_byte_asks_for_more_until_whole)
{
    uint64_t slot = 5;
    size_t n = lethe_proto_put_io(buf, LETHE_MSG_READ, 1, &slot, 1);
    struct lethe_proto_request req;
    size_t used;
    for (size_t have = 0; have < n; have++) {
        cr_assert_eq(parse(have, &req, &used), LETHE_PARSE_MORE, "at %zu bytes", have);
        cr_assert_gt(used, have, "asks for more than it has");
    }
    cr_assert_eq(parse(n, &req, &used), LETHE_PARSE_OK);
}

static void expect(size_t len, enum lethe_parse_verdict v, int err)
{
    struct lethe_proto_request req;
    size_t used;
    enum lethe_parse_verdict got = parse(len, &req, &used);
    cr_assert_eq(got, v, "verdict %d, want %d (%s)", got, v, req.why ? req.why : "");
    cr_assert_eq(req.error, err, "errno %d, want %d (%s)", req.error, err, req.why);
    if (v == LETHE_PARSE_BAD)
        cr_assert_eq(used, len, "a BAD message is skipped whole");
}

Test(proto, broken_framing_is_fatal)
{
    size_t n = put_msg(LETHE_MSG_STATS, 0, 1, NULL, 0);
    buf[0] ^= 0xff;
    expect(n, LETHE_PARSE_FATAL, EPROTO);
    n = put_msg(LETHE_MSG_STATS, 0, 1, NULL, 0);
    buf[4] = 9;
    expect(n, LETHE_PARSE_FATAL, EPROTONOSUPPORT);
    lethe_proto_put_hdr(buf, LETHE_MSG_WRITE, 0, 1, LETHE_PROTO_MAX_PAYLOAD + 1, 0);
    expect(LETHE_PROTO_HDR_LEN, LETHE_PARSE_FATAL, EMSGSIZE);
}

Test(proto, well_framed_but_invalid_requests_are_bad_and_skippable)
{
    expect(put_msg(42, 0, 1, "xyz", 3), LETHE_PARSE_BAD, ENOSYS);
    expect(put_msg(LETHE_MSG_HELLO, 0, 1, buf + 100, LETHE_HELLO_LEN), LETHE_PARSE_BAD, EPROTO);
    expect(put_msg(LETHE_MSG_STATS, LETHE_F_REPLY, 1, NULL, 0), LETHE_PARSE_BAD, EINVAL);
    expect(put_msg(LETHE_MSG_STATS, 0x4000, 1, NULL, 0), LETHE_PARSE_BAD, EINVAL);
    expect(put_msg(LETHE_MSG_STATS, 0, 1, "z", 1), LETHE_PARSE_BAD, EBADMSG);
    expect(put_msg(LETHE_MSG_AUTH, 0, 1, buf + 200, 10), LETHE_PARSE_BAD, EBADMSG);
    uint8_t sz[8];
    lethe_put_le64(sz, 0);
    expect(put_msg(LETHE_MSG_ALLOC, 0, 1, sz, 8), LETHE_PARSE_BAD, EINVAL);
    lethe_put_le64(sz, 4096 + 1);
    expect(put_msg(LETHE_MSG_ALLOC, 0, 1, sz, 8), LETHE_PARSE_BAD, EINVAL);
    lethe_put_le64(sz, 4096);
    expect(put_msg(LETHE_MSG_ALLOC, LETHE_F_ALLOC_SHM | LETHE_F_ALLOC_RDMA, 1, sz, 8),
           LETHE_PARSE_BAD, EINVAL);
    expect(put_msg(LETHE_MSG_READ, LETHE_F_ALLOC_SHM, 1, NULL, 0), LETHE_PARSE_BAD, EINVAL);
    /* a request's status must be 0 */
    lethe_proto_put_hdr(buf, LETHE_MSG_STATS, 0, 1, 0, 3);
    expect(LETHE_PROTO_HDR_LEN, LETHE_PARSE_BAD, EINVAL);
}

Test(proto, page_counts_are_checked_against_the_payload_and_the_batch_limit)
{
    uint8_t p[8 + 8 * 300] = {0};
    /* count 2, but only one slot: truncated payload */
    lethe_put_le32(p, 2);
    expect(put_msg(LETHE_MSG_READ, 0, 1, p, 8 + 8), LETHE_PARSE_BAD, EBADMSG);
    /* count 1 with two slots: longer than its count */
    lethe_put_le32(p, 1);
    expect(put_msg(LETHE_MSG_READ, 0, 1, p, 8 + 16), LETHE_PARSE_BAD, EBADMSG);
    /* zero pages */
    lethe_put_le32(p, 0);
    expect(put_msg(LETHE_MSG_READ, 0, 1, p, 8), LETHE_PARSE_BAD, EINVAL);
    /* beyond the batch limit, even with a consistent length */
    lethe_put_le32(p, LETHE_PROTO_MAX_BATCH + 1);
    expect(put_msg(LETHE_MSG_READ, 0, 1, p, 8 + 8 * (LETHE_PROTO_MAX_BATCH + 1)), LETHE_PARSE_BAD,
           E2BIG);
    /* a count that would overflow 32-bit arithmetic */
    lethe_put_le32(p, 0xffffffffu);
    expect(put_msg(LETHE_MSG_WRITE, 0, 1, p, 16), LETHE_PARSE_BAD, E2BIG);
    /* reserved word set */
    lethe_put_le32(p, 1);
    lethe_put_le32(p + 4, 1);
    expect(put_msg(LETHE_MSG_READ, 0, 1, p, 16), LETHE_PARSE_BAD, EINVAL);
    /* WRITE whose pages are missing */
    lethe_put_le32(p + 4, 0);
    expect(put_msg(LETHE_MSG_WRITE, 0, 1, p, 16), LETHE_PARSE_BAD, EBADMSG);
    /* no count at all */
    expect(put_msg(LETHE_MSG_READ, 0, 1, p, 3), LETHE_PARSE_BAD, EBADMSG);
}

Test(proto, the_largest_write_is_accepted)
{
    uint64_t slots[LETHE_PROTO_MAX_BATCH];
    for (unsigned i = 0; i < LETHE_PROTO_MAX_BATCH; i++)
        slots[i] = i;
    size_t n = lethe_proto_put_io(buf, LETHE_MSG_WRITE, 1, slots, LETHE_PROTO_MAX_BATCH);
    n += (size_t)LETHE_PROTO_MAX_BATCH * LETHE_PROTO_PAGE;
    cr_assert_eq(n, LETHE_PROTO_HDR_LEN + LETHE_PROTO_MAX_PAYLOAD);
    expect(n, LETHE_PARSE_OK, 0);
}

Test(proto, reply_lengths_follow_the_request)
{
    cr_assert_eq(lethe_proto_reply_len(LETHE_MSG_READ, 3), 3 * 4096);
    cr_assert_eq(lethe_proto_reply_len(LETHE_MSG_WRITE, 3), 0);
    cr_assert_eq(lethe_proto_reply_len(LETHE_MSG_ALLOC, 0), LETHE_ALLOC_REPLY_LEN);
    cr_assert_eq(lethe_proto_reply_len(LETHE_MSG_STATS, 0), -1);
    cr_assert_str_eq(lethe_proto_type_name(LETHE_MSG_ATTACH), "ATTACH");
    cr_assert_str_eq(lethe_proto_type_name(200), "?");
}

Test(verbs_private_data, round_trips_and_refuses_garbage)
{
    struct lethe_verbs_connect c = {.region_id = 12, .seq = 3}, c2;
    memset(c.proof, 0x5a, sizeof(c.proof));
    uint8_t pd[64] = {0};
    lethe_verbs_put_connect(pd, &c);
    cr_assert_eq(lethe_verbs_get_connect(pd, sizeof(pd), &c2), 0, "padded private data is fine");
    cr_assert_eq(c2.region_id, 12);
    cr_assert_eq(c2.seq, 3);
    cr_assert_eq(memcmp(c2.proof, c.proof, 32), 0);
    cr_assert_eq(lethe_verbs_get_connect(pd, LETHE_VERBS_CONNECT_LEN - 1, &c2), -EPROTO);
    cr_assert_eq(lethe_verbs_get_connect(NULL, 0, &c2), -EPROTO);
    pd[0] ^= 1;
    cr_assert_eq(lethe_verbs_get_connect(pd, sizeof(pd), &c2), -EPROTO);

    struct lethe_verbs_accept a = {.addr = 0x7f0000001000ULL, .rkey = 0xabcd, .length = 1 << 20};
    struct lethe_verbs_accept a2;
    lethe_verbs_put_accept(pd, &a);
    cr_assert_eq(lethe_verbs_get_accept(pd, LETHE_VERBS_ACCEPT_LEN, &a2), 0);
    cr_assert_eq(a2.addr, a.addr);
    cr_assert_eq(a2.rkey, a.rkey);
    cr_assert_eq(a2.length, a.length);
    cr_assert_eq(lethe_verbs_get_accept(pd, 31, &a2), -EPROTO);

    lethe_verbs_put_reject(pd, EPERM);
    cr_assert_eq(lethe_verbs_get_reject(pd, LETHE_VERBS_REJECT_LEN), EPERM);
    cr_assert_eq(lethe_verbs_get_reject(pd, 4), -EPROTO);
    lethe_put_le32(pd + 4, 0);
    cr_assert_eq(lethe_verbs_get_reject(pd, LETHE_VERBS_REJECT_LEN), -EPROTO,
                 "status 0 is no reason");
}

/* The regression corpus: every file walks cleanly, and its name's prefix is the verdict of
 * its first message (any- files: only the invariants). */
Test(proto_corpus, replays_every_file_with_its_expected_verdict)
{
    const char *dir = LETHE_SOURCE_DIR "/test/corpus/proto";
    DIR *d = opendir(dir);
    cr_assert(d, "cannot open %s", dir);
    static const char *const prefixes[] = {"more-", "ok-", "bad-", "fatal-"};
    unsigned files = 0, seen[4] = {0};
    struct dirent *e;
    static uint8_t data[LETHE_PROTO_HDR_LEN + LETHE_PROTO_MAX_PAYLOAD + 4096];
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.')
            continue;
        char path[512];
        snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
        FILE *f = fopen(path, "rb");
        cr_assert(f, "%s", path);
        size_t len = fread(data, 1, sizeof(data), f);
        fclose(f);
        /* A copy on the heap of exactly len bytes, so ASan catches any read past the end. */
        uint8_t *copy = malloc(len ? len : 1);
        memcpy(copy, data, len);
        int first;
        unsigned messages;
        const char *broken = proto_check_stream(copy, len, &first, &messages);
        free(copy);
        cr_assert_null(broken, "%s: %s", e->d_name, broken);
        int want = -1;
        for (int i = 0; i < 4; i++)
            if (strncmp(e->d_name, prefixes[i], strlen(prefixes[i])) == 0)
                want = i;
        if (want >= 0) {
            cr_assert_eq(first, want, "%s: first verdict %d, its name says %d", e->d_name, first,
                         want);
            seen[want]++;
        } else {
            cr_assert(strncmp(e->d_name, "any-", 4) == 0, "%s: unknown prefix", e->d_name);
        }
        files++;
    }
    closedir(d);
    cr_assert_geq(files, 30, "the corpus is there (%u files)", files);
    for (int i = 0; i < 4; i++)
        cr_assert_gt(seen[i], 0, "the corpus covers verdict %s", prefixes[i]);
}

Test(proto_corpus, pipelined_stream_parses_every_message)
{
    const char *path = LETHE_SOURCE_DIR "/test/corpus/proto/ok-pipeline.bin";
    FILE *f = fopen(path, "rb");
    cr_assert(f);
    size_t len = fread(buf, 1, sizeof(buf), f);
    fclose(f);
    int first;
    unsigned messages;
    cr_assert_null(proto_check_stream(buf, len, &first, &messages));
    cr_assert_eq(messages, 4, "WRITE, READ, STATS, BYE");
}
