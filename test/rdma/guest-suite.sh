#!/bin/bash
# guest-suite.sh SOURCE_DIR BUILD_DIR LOG_DIR — Lethe's RDMA / old-kernel cases, run INSIDE
# rdma-vm (Linux 6.1, soft-RoCE rxe0 at $RDMA_VM_IP) by run-vm-suite.sh, all in one boot.
#
# Each case runs in its own subshell with its output in LOG_DIR/CASE.log; a case ends PASS,
# FAIL (its log's tail is printed) or SKIP (with the reason). Processes a case starts in the
# background are killed by pid when it ends. The last line sums up; the exit status is 0
# when no case failed, else 1.
#
# Cases, in order (LETHE_RDMA_CASES="a b" runs a subset):
#   rdma_sanity         rxe0 is listed and active; rping verifies data over RDMA CM
#   uffd_kernel         userfaultfd works as root on this kernel, and the kernel is the old
#                       one we want (6.1: write-protect, but no MOVE, WP_ASYNC, PAGEMAP_SCAN)
#   fault_tests         the guest runtime's Criterion tests (test_fault_*), on 6.1's paths
#   verbs_tests         the verbs transport's own Criterion tests (test_transport_verbs), whose
#                       end-to-end part needs an RDMA device: here none may skip
#   verbs_transport     a memory node serving over RDMA CM; a client swaps pages through the
#                       verbs transport on 4 channels (4 QPs) and verifies every byte
#   verbs_isolation     a second client never reaches the first one's region, through the
#                       transport and with raw RDMA (another client's rkey, past its end)
#   verbs_bad_token     a client with a wrong token gets nothing
#   lethed_verbs        the whole stack on 6.1: lethed runs a heap-heavy program with the
#                       verbs transport on the runtime's fallback paths, with thread and with
#                       signal delivery; its output must match a run without Lethe, and the
#                       summary must name the fallback paths
#   lethed_embedded_verbs  the same with memnode = embedded (lethed starts the node itself)
#   verbs_node_killed   the memory node is killed while a transport client and a program
#                       under lethed swap through it: both stop with an error naming the node,
#                       and neither ever takes zeros for data
#   verbs_real_size     the verbs path at the shipped size: a node lending 4G (allocated and
#                       locked at start-up: rxe has no on-demand paging), a 4G region whose
#                       ALLOC and channel connects stay well inside the shipped 5 s timeout,
#                       its last slot reached; then lethed with the shipped [transport]
#                       (remote_size = 4G, connect_timeout = 5s) runs a program over it.
#                       Needs ~5 GiB of guest memory (run-vm-suite.sh boots with 6G)
#   verbs_replicas      three memory nodes over RDMA, replicas = 2: one node is killed while a
#                       program under lethed swaps through them; the program runs to the end
#                       with its output as without Lethe, and the summary says 2 of 3 nodes
#                       live and that copies were re-created
# A missing program fails its case, unless LETHE_RDMA_ALLOW_MISSING=1 (then it is skipped).
set -u

SRC=$1
BUILD=$2
LOGS=$3
IP=${RDMA_VM_IP:?not inside rdma-vm}
PROGS=$BUILD/test-progs
TESTS=$BUILD/tests
BIN=$BUILD/bin
RDMA_BIN=$BUILD/test-rdma

ALL_CASES="rdma_sanity uffd_kernel fault_tests verbs_tests verbs_transport verbs_isolation
           verbs_bad_token lethed_verbs lethed_embedded_verbs verbs_node_killed verbs_real_size
           verbs_replicas"
CASES=${LETHE_RDMA_CASES:-$ALL_CASES}

now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.2f", b - a }'; }

# ---------------------------------------------------------------- helpers for cases
BG_PIDS=()
# Starts a command in the background, remembering its pid for the case's cleanup.
bg() {
    "$@" &
    BG_PIDS+=($!)
}
any_alive() {
    local p
    for p in "$@"; do kill -0 "$p" 2>/dev/null && return 0; done
    return 1
}
# SIGTERM first, so that `timeout` and lethed pass it on to what they run; SIGKILL after 2 s.
cleanup_bg() {
    local p i
    for p in "${BG_PIDS[@]}"; do kill -TERM "$p" 2>/dev/null; done
    for i in $(seq 10); do
        any_alive "${BG_PIDS[@]}" || break
        sleep 0.2
    done
    for p in "${BG_PIDS[@]}"; do
        kill -KILL "$p" 2>/dev/null
        wait "$p" 2>/dev/null
    done
    BG_PIDS=()
}
skip() {
    echo "$*" > "$CASE_SKIP"
    exit 77
}
fail() {
    echo "FAIL: $*"
    exit 1
}
# need FILE...: the programs a case runs.
need() {
    local f missing=()
    for f in "$@"; do [ -x "$f" ] || missing+=("$f"); done
    [ ${#missing[@]} -eq 0 ] && return 0
    if [ "${LETHE_RDMA_ALLOW_MISSING:-0}" = 1 ]; then
        skip "not built: ${missing[*]}"
    fi
    fail "not built: ${missing[*]}"
}
# expect FILE REGEX WHAT...: FILE has a line matching the extended REGEX; WHAT says what that
# means (several words are joined).
expect() {
    local what="${*:3}"
    grep -Eq -- "$2" "$1" || fail "$what: no line matching /$2/ in $1"
    echo "ok: $what"
}
expect_not() {
    local what="${*:3}"
    ! grep -Eq -- "$2" "$1" ||
        fail "$what: unexpected line matching /$2/ in $1: $(grep -Em1 -- "$2" "$1")"
    echo "ok: $what"
}
# wait_for FILE REGEX SECONDS: until FILE has a matching line.
wait_for() {
    local deadline=$(( $(date +%s) + $3 ))
    while ! grep -Eq -- "$2" "$1" 2>/dev/null; do
        [ "$(date +%s)" -lt "$deadline" ] || return 1
        sleep 0.1
    done
}

# ---------------------------------------------------------------- cases
case_rdma_sanity() {
    ibv_devices | tee /tmp/devices
    expect /tmp/devices '^[[:space:]]*rxe0[[:space:]]' "ibv_devices lists rxe0"
    ibv_devinfo -d rxe0 | tee /tmp/devinfo
    expect /tmp/devinfo 'state:[[:space:]]+PORT_ACTIVE' "rxe0 port is active"
    bg timeout 30 rping -s -a "$IP" -p 7470 -C 5 -S 4000 -V
    local server=${BG_PIDS[-1]} try
    for try in 1 2 3 4 5 6; do    # until the server listens
        sleep 0.3
        timeout 30 rping -c -a "$IP" -p 7470 -C 5 -S 4000 -V -v > /tmp/rping && break
    done
    [ "$(grep -c 'ping data' /tmp/rping)" -eq 5 ] || fail "rping: expected 5 verified pings"
    wait "$server" || fail "rping server failed"
    echo "ok: rping: 5 pings of 4000 bytes verified over RDMA CM on $IP"
}

case_uffd_kernel() {
    need "$PROGS/rdma_uffd_probe"
    "$PROGS/rdma_uffd_probe" | tee /tmp/probe
    [ "${PIPESTATUS[0]}" -eq 0 ] || fail "userfaultfd operations failed on $(uname -r)"
    expect /tmp/probe 'WP=yes' "uffd write-protect present"
    case $(uname -r) in
    6.1.*)
        expect /tmp/probe 'WP_ASYNC=no MOVE=no PAGEMAP_SCAN=no' \
            "6.1 lacks WP_ASYNC, UFFDIO_MOVE and PAGEMAP_SCAN (so the fallbacks run)" ;;
    *) echo "note: kernel $(uname -r) is not 6.1; fallback checks are weaker" ;;
    esac
}

# criterion_run BIN [CRITERION OPTIONS]: runs a Criterion test program with a 30 s limit per
# test; prints its failures; returns non-zero when a test failed, crashed or never finished.
criterion_run() {
    local t=$1 s out=/tmp/${1##*/}.out rc unfinished
    shift
    s=$(now)
    timeout 150 "$t" --jobs 1 --timeout 30 --verbose "$@" > "$out" 2>&1
    rc=$?
    echo "${t##*/}: exit $rc in $(elapsed "$s") s: $(grep -E 'Synthesis' "$out")"
    grep -E '^\[(FAIL|SKIP|----)\]|Timed out|CRASH|signal' "$out" | grep -v 'Criterion v' |
        head -n 40
    # A test that timed out or died prints [RUN ] and nothing else, and Criterion may still
    # exit 0: every test that started must have ended.
    unfinished=$(awk '/^\[RUN \]/ { run[$3] = 1 }
                      /^\[(PASS|FAIL|SKIP)\]/ { n = $2; sub(/:$/, "", n); end[n] = 1 }
                      END { for (k in run) if (!(k in end)) print k }' "$out")
    if [ -n "$unfinished" ]; then
        echo "${t##*/}: these tests never finished (timed out after 30 s, or crashed):"
        echo "$unfinished" | sed 's/^/    /'
        [ $rc -ne 0 ] || rc=1
    fi
    [ $rc -eq 0 ] &&
        echo "ok: ${t##*/} on $(uname -r): $(grep -E 'Synthesis' "$out" | sed 's/.*Synthesis: //')"
    return $rc
}

case_fault_tests() {
    local t ran=0 failed=()
    for t in "$TESTS"/test_fault*; do
        [ -x "$t" ] || continue
        ran=$((ran + 1))
        if [ "${t##*/}" = test_fault_delivery ]; then
            # Its many-thread tests measure concurrency, not what the kernel version changes,
            # and cost half a minute under emulation; lethed_verbs runs threads on 6.1.
            criterion_run "$t" --filter 'fault_delivery/!(*eight_threads*|*many_threads*)' ||
                failed+=("${t##*/}")
        else
            criterion_run "$t" || failed+=("${t##*/}")
        fi
    done
    [ "$ran" -gt 0 ] || need "$TESTS/test_fault_ops"
    [ ${#failed[@]} -eq 0 ] || fail "Criterion tests failed on $(uname -r): ${failed[*]}"
}

case_verbs_tests() {
    need "$TESTS/test_transport_verbs"
    criterion_run "$TESTS/test_transport_verbs" || fail "test_transport_verbs failed inside rdma-vm"
    expect_not "/tmp/test_transport_verbs.out" '^\[SKIP\] verbs_e2e' \
        "the end-to-end verbs tests ran (none skipped) on rxe0"
}

TOKEN=/tmp/lethe-vm.token
# start_memnode TCP_PORT RDMA_PORT [CAPACITY]: a memory node on this guest's address, TCP for
# control, RDMA CM for data; its log is LOGS/memnode-CASE.log. Sets MEMNODE_PID and NODE
# (host:port). rxe has no on-demand paging, so the node allocates and locks CAPACITY at
# start-up (about 5 s a GiB here): the default, 16M, is what the transport cases need.
start_memnode() {
    local conf=/tmp/memnode-$1.conf cap=${3:-16M}
    cat > "$conf" <<EOF
[memnode]
capacity = $cap
tcp_listen = $IP:$1
rdma_listen = $IP:$2
unix_socket = off
max_clients = 16
token_file = $TOKEN
EOF
    need "$BIN/memnode"
    MEMNODE_LOG=$LOGS/memnode-$CASE-$1.log
    bg "$BIN/memnode" -c "$conf" > "$MEMNODE_LOG" 2>&1
    MEMNODE_PID=${BG_PIDS[-1]}
    NODE=$IP:$1
    wait_for "$MEMNODE_LOG" 'ready:' 120 || fail "memnode did not start: $(tail -n 5 "$MEMNODE_LOG")"
    echo "memnode up: $(grep -m1 'ready:' "$MEMNODE_LOG")"
}
# stop_memnode: SIGTERM, so that it logs its final stats, and waits for it.
stop_memnode() {
    kill -TERM "$MEMNODE_PID" 2>/dev/null
    wait "$MEMNODE_PID"
    local rc=$?
    [ $rc -eq 0 ] || fail "memnode exited with status $rc on SIGTERM"
}

case_verbs_transport() {
    need "$RDMA_BIN/verbs_check"
    start_memnode 7400 7471
    timeout 120 "$RDMA_BIN/verbs_check" --node "$NODE" --token-file "$TOKEN" --vcpus 4 \
        --pages 64 --rounds 2 verify > /tmp/out 2>&1
    local rc=$?
    cat /tmp/out
    [ $rc -eq 0 ] || fail "verbs_check verify exited $rc"
    expect /tmp/out "verbs $IP:7400" "the client used the verbs transport"
    expect /tmp/out '4 channels in parallel, 64 slots each, 2 rounds: all pages verified' \
        "4 channels (4 QPs) wrote, read back and verified 256 pages, singly and in batches"
    expect /tmp/out 'neighbour.s pages correctly' \
        "pages written on one QP read correctly on another"
    expect /tmp/out 'never-written slots read as zeros' "a fresh region reads as zeros"
    expect /tmp/out 'slot beyond the region refused' "a slot beyond the region is refused"
    grep -E 'median' /tmp/out | sed 's/^verbs_check: */note: verbs latency: /'
    stop_memnode
    cat "$MEMNODE_LOG"
    expect_not "$MEMNODE_LOG" ' error: ' "the memory node logged no error"
    expect "$MEMNODE_LOG" 'stopped: .* reads 0 \(0 pages\), writes 0 \(0 pages\)' \
        "the memory node's CPU served no page: they all moved by one-sided RDMA"
}

case_verbs_isolation() {
    need "$RDMA_BIN/verbs_check" "$RDMA_BIN/verbs_attack"
    start_memnode 7402 7473
    timeout 60 "$RDMA_BIN/verbs_check" --node "$NODE" --token-file "$TOKEN" isolation \
        > /tmp/out 2>&1
    local rc=$?
    cat /tmp/out
    [ $rc -eq 0 ] || fail "verbs_check isolation exited $rc"
    expect /tmp/out 'none of A.s pages reach B' \
        "a second client's fresh region holds none of the first one's pages"
    expect /tmp/out 'A.s pages are intact after B wrote' \
        "the second client's writes leave the first one's pages intact"
    timeout 120 "$RDMA_BIN/verbs_attack" --node "$NODE" --token-file "$TOKEN" > /tmp/attack 2>&1
    rc=$?
    cat /tmp/attack
    grep '^ok: ' /tmp/attack | sed 's/^ok: /ok: raw RDMA: /'
    [ $rc -eq 0 ] || fail "raw RDMA isolation: $(grep -c '^FAIL' /tmp/attack) check(s) failed:" \
        "$(grep '^FAIL' /tmp/attack | cut -c1-300)"
    stop_memnode
}

case_verbs_bad_token() {
    need "$RDMA_BIN/verbs_check"
    start_memnode 7404 7475
    timeout 60 "$RDMA_BIN/verbs_check" --node "$NODE" --token-file "$TOKEN" bad-token \
        > /tmp/out 2>&1
    local rc=$?
    cat /tmp/out
    [ $rc -eq 0 ] || fail "verbs_check bad-token exited $rc"
    expect /tmp/out 'wrong token (refused|: channel refused)' \
        "a client with a wrong token is refused"
    stop_memnode
    cat "$MEMNODE_LOG"
    expect "$MEMNODE_LOG" 'auth' "the memory node logged the refused authentication"
}

# lethe_conf FILE PORT CACHE [KEY=VALUE in [fault]...]: a lethe.conf for the verbs transport to
# the memory node at $IP:PORT.
lethe_conf() {
    local f=$1 port=$2 cache=$3
    shift 3
    {
        echo "[cache]"
        echo "cache_size = $cache"
        echo "region_size = 1G"
        echo "[fault]"
        echo "vcpus = 2"
        local kv
        for kv in "$@"; do echo "${kv%%=*} = ${kv#*=}"; done
        echo "[transport]"
        echo "transport = verbs"
        echo "memnode = $IP:$port"
        echo "remote_size = 64M"
        echo "connect_timeout = 30s"
        echo "token_file = $TOKEN"
        echo "[control]"
        echo "listen = off"
        echo "[log]"
        echo "summary = stderr"
    } > "$f"
}

# lethed_run DELIVERY MIB ROUNDS THREADS: runs rdma_heap_churn under lethed with the verbs
# transport to the node started by the case (port 7408), fault_delivery DELIVERY, a 4 MiB
# cache; checks its output against a run without Lethe and the summary's paths and counters.
lethed_run() {
    local delivery=$1 s rc want swapins swapouts
    shift
    "$PROGS/rdma_heap_churn" "$@" > /tmp/native || fail "rdma_heap_churn fails without Lethe"
    want=$(grep 'heap-churn: ok' /tmp/native)
    echo "without Lethe: $want"
    lethe_conf /tmp/lethe-$delivery.conf 7408 4M "fault_delivery=$delivery"
    s=$(now)
    timeout 150 "$BIN/lethed" -c /tmp/lethe-$delivery.conf -- "$PROGS/rdma_heap_churn" "$@" \
        > /tmp/app.out 2> /tmp/app.err
    rc=$?
    echo "lethed (fault_delivery = $delivery) ran for $(elapsed "$s") s, exit $rc"
    cat /tmp/app.out /tmp/app.err
    [ $rc -eq 0 ] || fail "lethed (fault_delivery = $delivery) exited $rc"
    expect /tmp/app.out "^${want}\$" \
        "$delivery delivery: the heap-heavy program's output under Lethe equals its output" \
        "without it"
    expect /tmp/app.err \
        "paths +delivery=$delivery move=(copy|copy\\+WP) dirty=none parking=move transport=verbs $IP:7408" \
        "$delivery delivery: the summary names the fallback paths (no UFFDIO_MOVE, no dirty" \
        "tracking) and the verbs transport"
    swapins=$(sed -n 's/.*[^0-9]\([0-9][0-9]*\) swap-ins.*/\1/p' /tmp/app.err | head -n1)
    swapouts=$(sed -n 's/.*[^0-9]\([0-9][0-9]*\) swap-outs.*/\1/p' /tmp/app.err | head -n1)
    [ "${swapins:-0}" -gt 0 ] && [ "${swapouts:-0}" -gt 0 ] ||
        fail "no swapping happened (swap-ins ${swapins:-?}, swap-outs ${swapouts:-?})"
    echo "ok: $delivery delivery: it swapped through RDMA: $swapins swap-ins, $swapouts swap-outs" \
        "with a 4 MiB cache, in $(elapsed "$s") s"
    grep -E "swap-in +[0-9.]+ us average" /tmp/app.err | sed "s/^ */note: $delivery delivery: /"
}

case_lethed_verbs() {
    need "$BIN/lethed" "$BUILD/lib/liblethe.so" "$PROGS/rdma_heap_churn"
    start_memnode 7408 7479 128M
    lethed_run thread 12 2 2
    lethed_run signal 8 2 2
    stop_memnode
    cat "$MEMNODE_LOG"
    expect "$MEMNODE_LOG" 'stopped: .* reads 0 \(0 pages\), writes 0 \(0 pages\)' \
        "the memory node's CPU served no page: every page moved by one-sided RDMA"
}

# The default set-up, memnode = embedded, with transport = verbs: lethed starts its own node
# and the program swaps through it over rxe0.
case_lethed_embedded_verbs() {
    need "$BIN/lethed" "$BUILD/lib/liblethe.so" "$PROGS/rdma_heap_churn"
    "$PROGS/rdma_heap_churn" 8 2 2 > /tmp/native || fail "rdma_heap_churn fails without Lethe"
    local want rc
    want=$(grep 'heap-churn: ok' /tmp/native)
    cat > /tmp/lethe-embedded.conf <<EOF
[cache]
cache_size = 4M
region_size = 1G
[fault]
vcpus = 2
[transport]
transport = verbs
memnode = embedded
remote_size = 64M
connect_timeout = 30s
[control]
listen = off
EOF
    timeout 150 "$BIN/lethed" -c /tmp/lethe-embedded.conf -- "$PROGS/rdma_heap_churn" 8 2 2 \
        > /tmp/app.out 2> /tmp/app.err
    rc=$?
    cat /tmp/app.out /tmp/app.err
    [ $rc -eq 0 ] || fail "lethed with an embedded memory node and transport = verbs exited $rc"
    expect /tmp/app.out "^${want}\$" \
        "embedded node: the program's output under Lethe equals its output without it"
    expect /tmp/app.err "paths +delivery=thread .* transport=verbs " \
        "embedded node: the summary names the verbs transport"
}

case_verbs_node_killed() {
    need "$RDMA_BIN/verbs_check" "$BIN/lethed" "$BUILD/lib/liblethe.so" "$PROGS/rdma_heap_churn"
    start_memnode 7406 7477 128M
    # Two clients swap through the node when it dies: the transport driven directly (every
    # page read back is checked), and a program under lethed (which checks its heap).
    bg timeout 150 "$RDMA_BIN/verbs_check" --node "$NODE" --token-file "$TOKEN" --vcpus 4 \
        --pages 32 --seconds 120 until-error > /tmp/out 2>&1
    local client=${BG_PIDS[-1]}
    lethe_conf /tmp/lethe-kill.conf 7406 4M
    bg timeout 150 "$BIN/lethed" -c /tmp/lethe-kill.conf -- "$PROGS/rdma_heap_churn" 64 100 2 \
        > /tmp/app.out 2> /tmp/app.err
    local app=${BG_PIDS[-1]}
    wait_for /tmp/out 'until-error: ready' 60 ||
        { cat /tmp/out; fail "the client never got going"; }
    wait_for /tmp/app.err 'swapper started' 60 ||
        { cat /tmp/app.err; fail "lethed never got going"; }
    sleep 2
    local t0 rc app_rc client_took= app_took=
    t0=$(now)
    kill -KILL "$MEMNODE_PID"
    echo "memnode (pid $MEMNODE_PID) killed with SIGKILL while both clients were swapping"
    while [ -z "$client_took" ] || [ -z "$app_took" ]; do
        if [ -z "$client_took" ] && ! kill -0 "$client" 2>/dev/null; then
            client_took=$(elapsed "$t0")
        fi
        if [ -z "$app_took" ] && ! kill -0 "$app" 2>/dev/null; then
            app_took=$(elapsed "$t0")
        fi
        sleep 0.2
    done
    wait "$client"
    rc=$?
    wait "$app"
    app_rc=$?
    echo "--- verbs_check (exit $rc, ${client_took} s after the kill):"
    cat /tmp/out
    echo "--- lethed (exit $app_rc, ${app_took} s after the kill):"
    cat /tmp/app.out /tmp/app.err
    echo "---"
    [ $rc -ne 4 ] || fail "the transport client read a page back wrong after the memory node died"
    [ $rc -ne 5 ] || fail "the transport client saw no error within 120 s of the node's death"
    [ $rc -eq 3 ] || fail "verbs_check until-error exited $rc, expected 3 (stopped on an error)"
    expect /tmp/out "stopped after [0-9]+ rounds: verbs $IP:7406: " \
        "the transport client stopped with an error naming the node, ${client_took} s after" \
        "the kill"
    expect_not /tmp/out 'DATA MISMATCH' \
        "the transport client took no page for data after the node died"
    [ $app_rc -ne 0 ] || fail "the program under lethed exited 0 although its memory node died"
    [ $app_rc -ne 124 ] || fail "the program under lethed hung after its memory node died"
    expect /tmp/app.err "error: .*verbs $IP:7406" \
        "under lethed, the program stopped (exit $app_rc) with an error naming the node," \
        "${app_took} s after the kill"
    expect_not /tmp/app.out 'heap-churn: ok' "the program did not run on as if nothing happened"
    expect_not /tmp/app.err 'WRONG DATA' "the program never read a wrong (zero) page"
}

# Several nodes over verbs with two copies of every page: losing one node mid-run costs the
# program nothing.
case_verbs_replicas() {
    need "$BIN/lethed" "$BUILD/lib/liblethe.so" "$PROGS/rdma_heap_churn"
    local pids=() i rc want s app
    "$PROGS/rdma_heap_churn" 24 3 2 > /tmp/native || fail "rdma_heap_churn fails without Lethe"
    want=$(grep 'heap-churn: ok' /tmp/native)
    for i in 0 1 2; do
        start_memnode $((7410 + i)) $((7490 + i)) 128M
        pids+=("$MEMNODE_PID")
    done
    lethe_conf /tmp/lethe-replicas.conf 7410 4M
    sed -i "s|^memnode = .*|memnode = $IP:7410,$IP:7411,$IP:7412|; s|^remote_size = .*|remote_size = 96M|" \
        /tmp/lethe-replicas.conf
    sed -i '/^remote_size = /a replicas = 2' /tmp/lethe-replicas.conf
    cat /tmp/lethe-replicas.conf
    s=$(now)
    bg timeout 300 "$BIN/lethed" -c /tmp/lethe-replicas.conf -- "$PROGS/rdma_heap_churn" 24 3 2 \
        > /tmp/app.out 2> /tmp/app.err
    app=${BG_PIDS[-1]}
    wait_for /tmp/app.err 'swapper started' 60 ||
        { cat /tmp/app.err; fail "lethed never got going"; }
    sleep 3
    kill -0 "$app" 2>/dev/null ||
        { cat /tmp/app.out /tmp/app.err; fail "the program ended before a node could be killed"; }
    kill -KILL "${pids[0]}"
    echo "memnode $IP:7410 (pid ${pids[0]}) killed with SIGKILL $(elapsed "$s") s into the run"
    wait "$app"
    rc=$?
    echo "lethed ran for $(elapsed "$s") s, exit $rc"
    cat /tmp/app.out /tmp/app.err
    [ $rc -eq 0 ] || fail "lethed with replicas = 2 exited $rc after losing one of three nodes"
    expect /tmp/app.out "^${want}\$" \
        "the program's output with a node killed mid-run equals its output without Lethe"
    expect /tmp/app.err "memnode $IP:7410.*lost|lost.*$IP:7410" "the lost node was reported"
    expect /tmp/app.err "2 of 3 memory nodes live, 2 replicas" \
        "the summary counts 2 of 3 nodes live and 2 replicas"
    expect /tmp/app.err "redundancy restored: [0-9]+ pages copied" \
        "the copies the lost node held were re-created on the other two"
    expect_not /tmp/app.err 'WRONG DATA' "the program never read a wrong page"
    kill -TERM "${pids[1]}" "${pids[2]}"
    wait "${pids[1]}" "${pids[2]}"
}

# The verbs path at the size Lethe ships with. Without on-demand paging every page of a
# region must exist before its MR does; the node allocates what it lends at start-up, so the
# client's ALLOC only registers an MR over pages already there and its connects only create
# QPs: both must fit the shipped connect_timeout (5 s) with a 4G region.
case_verbs_real_size() {
    need "$RDMA_BIN/verbs_check" "$BIN/lethed" "$BUILD/lib/liblethe.so" "$PROGS/rdma_heap_churn"
    local avail s rc want alloc_ms open_ms reg
    avail=$(awk '/^MemAvailable:/ { print int($2 / 1024) }' /proc/meminfo)
    [ "$avail" -ge 4800 ] || fail "the guest has $avail MiB available; lending 4G pinned needs" \
        "about 4.8 GiB (boot with RDMA_VM_MEM=6G, as run-vm-suite.sh does)"
    s=$(now)
    start_memnode 7410 7481 4G
    echo "memnode lending 4G up in $(elapsed "$s") s"
    expect "$MEMNODE_LOG" 'verbs: rxe0 has no on-demand paging: allocating and locking the 4G' \
        "without on-demand paging the node takes the 4G it lends at start-up"
    grep -m1 'arena ready in' "$MEMNODE_LOG" | sed 's/.*verbs: /note: start-up: /'

    # A 4G region through the transport, with the shipped 5 s timeout, 4 channels.
    timeout 120 "$RDMA_BIN/verbs_check" --node "$NODE" --token-file "$TOKEN" --vcpus 4 \
        --pages 64 --rounds 1 --remote-size 4G --connect-timeout 5000 verify > /tmp/out 2>&1
    rc=$?
    cat /tmp/out
    [ $rc -eq 0 ] || fail "verbs_check verify with a 4G region exited $rc"
    expect /tmp/out 'opened verbs .*: 1048576 slots granted' "a 4G region was granted"
    expect /tmp/out "the region's last slot \(1048575, at 4.0 GiB\) round-trips" \
        "the whole 4G is registered: its last slot round-trips"
    expect /tmp/out '4 channels in parallel, 64 slots each, 1 rounds: all pages verified' \
        "4 channels over the 4G region wrote, read back and verified their pages"
    alloc_ms=$(sed -n 's/.*slots granted in \([0-9.]*\) ms.*/\1/p' /tmp/out)
    open_ms=$(sed -n 's/.*connect) took at most \([0-9.]*\) ms.*/\1/p' /tmp/out)
    reg=$(sed -n 's/.*for RDMA (MR registered in \([0-9.]*\) s).*/\1/p' "$MEMNODE_LOG" | head -n1)
    echo "note: 4G region: connect, handshake and ALLOC ${alloc_ms} ms (the node's MR" \
        "registration ${reg} s of it); slowest of 4 RDMA CM connects ${open_ms} ms"
    awk -v a="$alloc_ms" -v o="$open_ms" 'BEGIN { exit !(a < 4000 && o < 4000) }' ||
        fail "ALLOC ${alloc_ms} ms or connect ${open_ms} ms is too close to the 5 s timeout"
    echo "ok: ALLOC and connects of a 4G region are well inside the 5 s connect_timeout"
    wait_for "$MEMNODE_LOG" 'region 1 released' 60 || fail "the 4G region was not released"
    grep -m1 'region 1 released' "$MEMNODE_LOG" | sed 's/.*info: /note: release: /'

    # lethed with the shipped lethe.conf: only where the node is (transport, memnode,
    # token_file) and a small cache (so that pages travel) differ.
    sed -e 's/^transport = shm$/transport = verbs/' \
        -e "s/^memnode = embedded\$/memnode = $IP:7410/" \
        -e "s|^token_file =\$|token_file = $TOKEN|" \
        -e 's/^cache_size = 512M$/cache_size = 4M/' "$SRC/conf/lethe.conf" > /tmp/lethe-shipped.conf
    local k
    for k in 'transport = verbs' "memnode = $IP:7410" "token_file = $TOKEN" 'cache_size = 4M' \
        'remote_size = 4G' 'connect_timeout = 5s'; do
        grep -qx -- "$k" /tmp/lethe-shipped.conf ||
            fail "conf/lethe.conf no longer reads as this case expects: no line '$k'"
    done
    echo "ok: lethe.conf as shipped (remote_size = 4G, connect_timeout = 5s), with" \
        "transport = verbs, memnode = $IP:7410, cache_size = 4M"
    "$PROGS/rdma_heap_churn" 12 2 2 > /tmp/native || fail "rdma_heap_churn fails without Lethe"
    want=$(grep 'heap-churn: ok' /tmp/native)
    s=$(now)
    timeout 150 "$BIN/lethed" -c /tmp/lethe-shipped.conf -- "$PROGS/rdma_heap_churn" 12 2 2 \
        > /tmp/app.out 2> /tmp/app.err
    rc=$?
    echo "lethed ran for $(elapsed "$s") s, exit $rc"
    cat /tmp/app.out /tmp/app.err
    [ $rc -eq 0 ] || fail "lethed with the shipped remote_size = 4G over verbs exited $rc"
    expect /tmp/app.out "^${want}\$" \
        "with a 4G region over verbs, the program's output under Lethe equals its output" \
        "without it"
    expect /tmp/app.err "transport=verbs $IP:7410" "the summary names the verbs transport"
    expect "$MEMNODE_LOG" 'region 2 of 4G lent for RDMA' "lethed's region was the shipped 4G"
    stop_memnode
    expect_not "$MEMNODE_LOG" ' error: ' "the memory node logged no error"
}

# ---------------------------------------------------------------- driver
echo "guest: $(uname -r), $(nproc) CPUs, rxe0 at $IP; cases: $CASES"
suite_start=$(now)
passed=0 failed=0 skipped=0 failed_names=()
for c in $CASES; do
    if ! declare -F "case_$c" >/dev/null; then
        echo "--- FAIL $c: no such case (known: $ALL_CASES)"
        failed=$((failed + 1)); failed_names+=("$c")
        continue
    fi
    log=$LOGS/$c.log
    CASE=$c
    CASE_SKIP=$LOGS/$c.skip
    rm -f "$CASE_SKIP"
    s=$(now)
    ( trap cleanup_bg EXIT; "case_$c" ) > "$log" 2>&1 < /dev/null
    rc=$?
    t=$(elapsed "$s")
    if [ $rc -eq 0 ]; then
        echo "--- PASS $c (${t} s)"
        grep -E '^(ok|note): ' "$log" | sed 's/^/      /'
        passed=$((passed + 1))
    elif [ $rc -eq 77 ]; then
        echo "--- SKIP $c (${t} s): $(cat "$CASE_SKIP" 2>/dev/null)"
        skipped=$((skipped + 1))
    else
        echo "--- FAIL $c (${t} s, exit $rc); last lines of $log:"
        tail -n 40 "$log" | sed 's/^/    | /'
        failed=$((failed + 1)); failed_names+=("$c")
    fi
done
echo "guest suite: $passed passed, $failed failed, $skipped skipped" \
    "in $(elapsed "$suite_start") s" \
    "on $(uname -r)${failed_names[*]:+ (failed: ${failed_names[*]})}"
[ "$failed" -eq 0 ]
