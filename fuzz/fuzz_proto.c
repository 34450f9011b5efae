/* fuzz_proto.c — libFuzzer target for the memory node's request parser: every input is a
 * byte stream as a client could send it, walked by proto_check_stream() (the same walk the
 * corpus replay in test/test_proto.c does). A broken invariant aborts, so libFuzzer keeps
 * the input. Built and run by scripts/fuzz.sh (clang -fsanitize=fuzzer,address,undefined).
 */
#include <stdio.h>
#include <stdlib.h>

#include "proto_check.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int first;
    unsigned messages;
    const char *broken = proto_check_stream(data, size, &first, &messages);
    if (broken) {
        fprintf(stderr, "proto parser invariant broken: %s\n", broken);
        abort();
    }
    return 0;
}
