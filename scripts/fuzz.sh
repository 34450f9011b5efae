#!/usr/bin/env bash
# fuzz.sh [SECONDS] — builds the memory node's request-parser fuzz target with clang and
# libFuzzer (ASan + UBSan) in build-fuzz/, and runs it for SECONDS (default 60), starting
# from the regression corpus test/corpus/proto/ (which it does not modify). New interesting
# inputs go to build-fuzz/corpus/; a crash leaves build-fuzz/crash-* and exits non-zero:
# copy such a file into test/corpus/proto/ as any-NAME.bin so the normal test suite replays
# it from then on.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-60}
case $seconds in ''|*[!0-9]*) echo "usage: $0 [SECONDS]" >&2; exit 2 ;; esac
command -v clang >/dev/null || { echo "fuzz.sh: clang is needed (Debian package clang)" >&2; exit 2; }

out=build-fuzz
mkdir -p "$out/corpus"
clang -std=gnu17 -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
    -Isrc -Ifuzz fuzz/fuzz_proto.c src/rdma/proto.c -o "$out/fuzz_proto"
echo "fuzz.sh: running $out/fuzz_proto for $seconds s"
"$out/fuzz_proto" -max_total_time="$seconds" -max_len=$((24 + 8 + 256 * (8 + 4096) + 64)) \
    -print_final_stats=1 -artifact_prefix="$out/" "$out/corpus" test/corpus/proto
