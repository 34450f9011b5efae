#!/usr/bin/env bash
# run-vm-suite.sh SOURCE_DIR BUILD_DIR — Lethe's RDMA / old-kernel suite, host side.
#
# Boots ONE rdma-vm guest (Debian 12, Linux 6.1, soft-RoCE device rxe0) and runs every case
# of test/rdma/guest-suite.sh inside it: the verbs transport end to end against a memory node
# listening on RDMA CM, isolation between clients, a wrong token, a memory node killed
# mid-run, and the whole runtime (lethed + liblethe.so) on the 6.1 kernel's fallback paths.
# Registered with ctest as `rdma_vm` (test/rdma/CMakeLists.txt). In a ThreadSanitizer build
# (LETHE_SANITIZE=thread) it skips; in an ASan build it runs the transport cases only.
#
# Exit status: 0 all cases passed, 1 a case failed (its log is printed), 77 skipped (the
# reason is printed first: no rdma-vm tool, or it cannot run here), 124 the VM timed out.
#
# Environment:
#   LETHE_RDMA_VM     the tool (default: SOURCE_DIR/../shared/tools/rdma-vm)
#   LETHE_RDMA_CASES  space-separated subset of cases (default: all; see guest-suite.sh)
#   RDMA_VM_TIMEOUT   passed to the tool (default here: 600 s)
#   RDMA_VM_MEM       guest memory, passed to the tool (default here: 6G, not the tool's 2G:
#                     rxe has no on-demand paging, so the verbs_real_size case's node pins
#                     the 4G it lends; QEMU allocates guest memory only as it is touched)
set -uo pipefail

if [ $# -ne 2 ]; then
    echo "usage: $0 SOURCE_DIR BUILD_DIR" >&2
    exit 2
fi
src=$(realpath -e -- "$1") || exit 2
build=$(realpath -e -- "$2") || exit 2
tool=${LETHE_RDMA_VM:-$src/../shared/tools/rdma-vm}

skip() {
    echo "rdma_vm: SKIPPED: $*"
    exit 77
}

[ -x "$tool" ] || skip "no rdma-vm tool at $tool (set LETHE_RDMA_VM to its path to run this suite)"
tool=$(realpath -e -- "$tool")
if ! command -v qemu-system-x86_64 >/dev/null && [ "$(id -u)" -ne 0 ]; then
    skip "rdma-vm needs qemu-system-x86, which is not installed, and only root may install it"
fi
case "${LETHE_SANITIZE:-}" in
thread)
    skip "not run in the ThreadSanitizer build (TSan under QEMU/TCG is too slow; the normal" \
        "build runs it)" ;;
address)
    # The transport and the memory node under ASan+UBSan get checked only here, where an RDMA
    # device exists. The lethed cases need liblethe.so preloaded into an ASan program, which
    # the ASan build does not support, and the runtime's tests run under ASan on the host.
    if [ -z "${LETHE_RDMA_CASES:-}" ]; then
        LETHE_RDMA_CASES="rdma_sanity verbs_tests verbs_transport verbs_isolation"
        export LETHE_RDMA_CASES="$LETHE_RDMA_CASES verbs_bad_token"
        echo "rdma_vm: ASan build: running the transport cases only ($LETHE_RDMA_CASES)"
    fi ;;
esac

logs=$build/rdma-vm-logs
rm -rf -- "$logs"
mkdir -p -- "$logs" || exit 1

echo "rdma_vm: booting $tool (Linux 6.1 guest, soft-RoCE) for the whole suite; logs in $logs"
start=$(date +%s.%N)
# The guest shares the current directory read-write and sees the rest of this machine's
# filesystem read-only, so running from the build directory lets it write logs there.
# Where the source tree is outside the current directory (a build directory elsewhere) or in
# a path the guest replaces with a fresh tmpfs (/tmp, /var/tmp, /run, /dev/shm), share it
# read-write explicitly so the guest sees the suite and the programs.
case "$build/" in
"$src"/*) ;;
*) export RDMA_VM_SHARE="${RDMA_VM_SHARE:+$RDMA_VM_SHARE:}$build" ;;
esac
export RDMA_VM_SHARE="${RDMA_VM_SHARE:+$RDMA_VM_SHARE:}$src"
cd -- "$build" || exit 1
RDMA_VM_MEM=${RDMA_VM_MEM:-6G} RDMA_VM_TIMEOUT=${RDMA_VM_TIMEOUT:-600} "$tool" /bin/bash "$src/test/rdma/guest-suite.sh" \
    "$src" "$build" "$logs"
rc=$?
end=$(date +%s.%N)
wall=$(awk -v a="$start" -v b="$end" 'BEGIN { printf "%.1f", b - a }')

case $rc in
0) echo "rdma_vm: PASSED in ${wall} s (boot included)" ;;
77) echo "rdma_vm: SKIPPED inside the guest (see above), ${wall} s" ;;
124) echo "rdma_vm: FAILED: the VM timed out after ${wall} s (RDMA_VM_TIMEOUT)"; rc=1 ;;
125) echo "rdma_vm: FAILED: the VM did not run the suite (rdma-vm exit 125; see its messages above)"
     rc=1 ;;
*) echo "rdma_vm: FAILED (exit $rc) after ${wall} s; logs in $logs"; rc=1 ;;
esac
exit "$rc"
