#!/usr/bin/env python3
"""make_corpus.py — writes the seed corpus of the memory node's request parser into
test/corpus/proto/ (run from the repository root; it overwrites only the files it names).

A file's name starts with the verdict lethe_proto_parse_request() must give for its FIRST
message: ok-, bad-, fatal- or more-. test_proto.c replays every file (and asserts that
prefix); fuzz/fuzz_proto.c starts from the same files. Inputs found by the fuzzer are kept
as any-NAME (no verdict asserted, only the parser's invariants).
"""
import os
import struct

MAGIC = 0x3148544C
HELLO, AUTH, ALLOC, ATTACH, READ, WRITE, STATS, BYE = range(1, 9)
F_REPLY, F_SHM, F_RDMA = 1, 2, 4
PAGE = 4096


def hdr(typ, length, req_id=1, flags=0, status=0, magic=MAGIC, version=1):
    return struct.pack("<IBBHQIi", magic, version, typ, flags, req_id, length, status)


def msg(typ, payload=b"", **kw):
    return hdr(typ, len(payload), **kw) + payload


def io(typ, slots, req_id=1, count=None, reserved=0, data=True):
    body = struct.pack("<II", len(slots) if count is None else count, reserved)
    body += b"".join(struct.pack("<Q", s) for s in slots)
    if typ == WRITE and data:
        body += b"".join(bytes([(s * 7 + i) & 0xFF]) * PAGE for i, s in enumerate(slots))
    return msg(typ, body, req_id=req_id)


cases = {
    "ok-auth": msg(AUTH, bytes(range(64))),
    "ok-alloc": msg(ALLOC, struct.pack("<Q", 1 << 20)),
    "ok-alloc-shm": msg(ALLOC, struct.pack("<Q", 64 * PAGE), flags=F_SHM),
    "ok-alloc-rdma": msg(ALLOC, struct.pack("<Q", 64 * PAGE), flags=F_RDMA),
    "ok-attach": msg(ATTACH, struct.pack("<Q", 3) + bytes(32)),
    "ok-read-1": io(READ, [7]),
    "ok-read-256": io(READ, list(range(256))),
    "ok-write-1": io(WRITE, [0]),
    "ok-write-3": io(WRITE, [5, 1, 9], req_id=42),
    "ok-stats": msg(STATS),
    "ok-bye": msg(BYE, req_id=0xFFFFFFFFFFFFFFFF),
    "ok-pipeline": io(WRITE, [1]) + io(READ, [1], req_id=2) + msg(STATS, req_id=3) + msg(BYE, req_id=4),
    "bad-unknown-type": msg(99, b"abc"),
    "bad-type-zero": msg(0),
    "bad-hello-from-client": msg(HELLO, bytes(40)),
    "bad-truncated-read-payload": io(READ, [1, 2], count=3),
    "bad-read-longer-than-count": io(READ, [1, 2], count=1),
    "bad-read-no-count": msg(READ, b"\x01\x00"),
    "bad-read-zero-count": io(READ, [], count=0),
    "bad-read-count-over-batch": io(READ, list(range(257))),
    "bad-read-huge-count": io(READ, [1], count=0xFFFFFFFF),
    "bad-read-reserved": io(READ, [1], reserved=9),
    "bad-write-missing-data": io(WRITE, [4, 5], data=False),
    "bad-reply-flag": msg(STATS, flags=F_REPLY),
    "bad-unknown-flag": msg(STATS, flags=0x8000),
    "bad-shm-flag-on-read": hdr(READ, 16, flags=F_SHM) + struct.pack("<IIQ", 1, 0, 0),
    "bad-status-in-request": msg(STATS, status=5),
    "bad-alloc-zero": msg(ALLOC, struct.pack("<Q", 0)),
    "bad-alloc-unaligned": msg(ALLOC, struct.pack("<Q", 4097)),
    "bad-alloc-shm-and-rdma": msg(ALLOC, struct.pack("<Q", PAGE), flags=F_SHM | F_RDMA),
    "bad-alloc-short": msg(ALLOC, b"\x00\x10"),
    "bad-auth-short": msg(AUTH, bytes(63)),
    "bad-attach-long": msg(ATTACH, bytes(41)),
    "bad-stats-payload": msg(STATS, b"x"),
    "fatal-bad-magic": hdr(STATS, 0, magic=0x50545448) + b"GET / HTTP/1.0\r\n\r\n",
    "fatal-bad-version": msg(STATS, version=2),
    "fatal-oversized": hdr(WRITE, 0x7FFFFFFF),
    "fatal-oversized-by-one": hdr(WRITE, 8 + 256 * (8 + PAGE) + 1),
    "more-truncated-header": msg(STATS)[:10],
    "more-truncated-payload": io(WRITE, [1, 2])[:5000],
    "more-empty": b"",
}

out = os.path.join("test", "corpus", "proto")
os.makedirs(out, exist_ok=True)
for name, data in cases.items():
    with open(os.path.join(out, name + ".bin"), "wb") as f:
        f.write(data)
print(f"wrote {len(cases)} files to {out}")
