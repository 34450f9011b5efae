#!/usr/bin/env bash
# kernel-swap.sh — runs a command under kernel swap with a memory limit: the baseline that
# Lethe is compared with (bench/compare uses it; it is usable on its own).
#
#   kernel-swap.sh run --device zram|loop|none --limit BYTES [--swap-size BYTES]
#                      [--swappiness N] [--stats FILE] -- COMMAND [ARGS...]
#   kernel-swap.sh cleanup      remove what an interrupted run left behind
#
# run: sets up one swap device (zram with lz4, or a loop device over a file in RAM), a cgroup
# v1 memory cgroup with memory.limit_in_bytes = BYTES (swap not limited,
# so the kernel swaps instead of killing), runs COMMAND inside it, and then puts everything
# back: the command's process group is stopped, swapoff, loop device detached and its file
# removed, zram device reset and removed, cgroup removed. That also happens on SIGINT or
# SIGTERM and when a step fails. The exit status is COMMAND's.
#
# --stats FILE gets key=value lines after the run: pswpin/pswpout (pages swapped in and out,
# /proc/vmstat deltas), the cgroup's peak usage with and without swap, its failcnt, for zram
# the compressed size at peak, and oom_nudges (below). They prove that the run swapped.
#
# The memcg OOM killer: on this kernel (6.18, cgroup v1, no MGLRU) a process that swaps pages
# in while it allocates new ones is OOM-killed now and then even with free swap: charge-time
# reclaim gives up after its retries while every page sits on the active list. A killed
# baseline measures nothing, so the cgroup runs with the OOM killer disabled
# (memory.oom_control), and a watchdog that finds it stalled in OOM raises the limit by 1%
# (at least 1 MiB) for 100 ms, which wakes the stalled task, and then restores it. Each
# nudge is counted (oom_nudges); it lends the kernel a little memory, never takes any away.
#
# The loop device's file lives on a private ramfs mount, not on /dev/shm: tmpfs pages can be
# swapped themselves, and a tmpfs page swapped out to the very loop device it backs
# deadlocks the device for good (seen here: the platform's DAMON pageout picked the backing
# file; swap-ins, the exiting benchmark and every `ps` that read its memory hung in D state).
# ramfs pages are never swapped, so the recursion cannot happen. Like /dev/shm it is RAM.
#
# Needs root, cgroup v1's memory controller at /sys/fs/cgroup/memory, and for zram
# /sys/class/zram-control. Each run records what it created in /run/lethe-kernel-swap/PID,
# so `cleanup` can undo a run killed with SIGKILL.
set -uo pipefail

CG_ROOT=/sys/fs/cgroup/memory
STATE_DIR=/run/lethe-kernel-swap
me=kernel-swap.sh

die() { echo "$me: $*" >&2; exit 1; }
usage() { sed -n '2,22p' "$0" | sed 's/^# \{0,1\}//'; exit 2; }

need_root() {
  [ "$(id -u)" -eq 0 ] || die "needs root (cgroups, swapon, zram and loop devices)"
  [ -w "$CG_ROOT/memory.limit_in_bytes" ] || [ -d "$CG_ROOT" ] ||
    die "no cgroup v1 memory controller at $CG_ROOT"
}

# Undo what a state file lists, in reverse order of creation. Tolerates partial state.
undo_state() {
  local file=$1 kind a b
  [ -f "$file" ] || return 0
  tac "$file" | while read -r kind a b; do
    case $kind in
      cgroup)
        # the command may still be exiting: give its charges a moment to drain
        for _ in 1 2 3 4 5 6 7 8 9 10; do rmdir "$a" 2>/dev/null && break; sleep 0.2; done
        [ -d "$a" ] && echo "$me: could not remove cgroup $a" >&2 ;;
      swap)
        grep -q "^$a " /proc/swaps && { swapoff "$a" || echo "$me: swapoff $a failed" >&2; } ;;
      zram)
        echo 1 > "/sys/block/zram$a/reset" 2>/dev/null
        echo "$a" > /sys/class/zram-control/hot_remove 2>/dev/null ||
          echo "$me: could not remove zram$a" >&2 ;;
      loop)
        losetup -d "$a" 2>/dev/null || echo "$me: could not detach $a" >&2 ;;
      file)
        rm -f "$a" ;;
      mount)
        umount "$a" 2>/dev/null || echo "$me: could not unmount $a" >&2
        rmdir "$a" 2>/dev/null ;;
    esac
  done
  rm -f "$file"
}

cmd_cleanup() {
  need_root
  local f pid n=0
  for f in "$STATE_DIR"/*; do
    [ -f "$f" ] || continue
    pid=${f##*/}
    if kill -0 "$pid" 2>/dev/null; then
      echo "$me: run $pid is still going; leaving its devices alone"
      continue
    fi
    echo "$me: undoing what run $pid left: $(tr '\n' ' ' < "$f")"
    undo_state "$f"
    n=$((n + 1))
  done
  echo "$me: cleanup done ($n stale run(s))"
}

# Polls the cgroup every 50 ms while `pid` lives; nudges it out of an OOM stall (see the top
# comment). Sets oom_nudges. Sleeps with read -t on a pipe that never delivers: no forks.
oom_nudges=0
watch_oom() {
  local cg=$1 limit=$2 pid=$3 key value under raised=0 fd
  local bump=$(( limit / 100 > 1048576 ? limit / 100 : 1048576 ))
  exec {fd}<> <(:)
  while kill -0 "$pid" 2>/dev/null; do
    read -r -t 0.05 -u "$fd"
    under=0
    while read -r key value; do
      [ "$key" = under_oom ] && under=$value
    done < "$cg/memory.oom_control"
    if [ "$raised" -gt 0 ]; then
      raised=$((raised - 1))
      # restore; if the kernel cannot reclaim down to it yet, try again next round
      if [ "$raised" -eq 0 ]; then
        echo "$limit" > "$cg/memory.limit_in_bytes" 2>/dev/null || raised=1
      fi
    elif [ "$under" = 1 ]; then
      echo $((limit + bump)) > "$cg/memory.limit_in_bytes" 2>/dev/null && {
        oom_nudges=$((oom_nudges + 1))
        raised=2
      }
    fi
  done
  exec {fd}<&-
  [ "$raised" -gt 0 ] && echo "$limit" > "$cg/memory.limit_in_bytes" 2>/dev/null
  return 0
}

vmstat() { awk -v k="$1" '$1 == k { print $2 }' /proc/vmstat; }

cmd_run() {
  local device="" limit="" swap_size="" swappiness="" stats=""
  while [ $# -gt 0 ]; do
    case $1 in
      --device) device=$2; shift 2 ;;
      --limit) limit=$2; shift 2 ;;
      --swap-size) swap_size=$2; shift 2 ;;
      --swappiness) swappiness=$2; shift 2 ;;
      --stats) stats=$2; shift 2 ;;
      --) shift; break ;;
      *) echo "$me: unknown option $1" >&2; usage ;;
    esac
  done
  [ $# -gt 0 ] || { echo "$me: no command given" >&2; usage; }
  case $device in zram|loop|none) ;; *) die "--device must be zram, loop or none" ;; esac
  [[ $limit =~ ^[0-9]+$ ]] || die "--limit must be a number of bytes"
  [ "$device" = none ] || [[ $swap_size =~ ^[0-9]+$ ]] || die "--swap-size must be bytes"
  need_root

  if [ "$device" != none ] && [ "$(wc -l < /proc/swaps)" -gt 1 ]; then
    echo "$me: warning: other swap devices are active; the kernel may use them too:" >&2
    tail -n +2 /proc/swaps >&2
  fi

  mkdir -p "$STATE_DIR"
  state=$STATE_DIR/$$
  : > "$state"
  child=""
  finish() {
    trap - INT TERM EXIT
    if [ -n "$child" ] && kill -0 "$child" 2>/dev/null; then
      kill -TERM -- "-$child" 2>/dev/null || kill -TERM "$child" 2>/dev/null
      for _ in $(seq 50); do kill -0 "$child" 2>/dev/null || break; sleep 0.1; done
      kill -KILL -- "-$child" 2>/dev/null
      wait "$child" 2>/dev/null
    fi
    undo_state "$state"
  }
  trap 'finish; exit 130' INT
  trap 'finish; exit 143' TERM
  trap 'finish' EXIT

  local dev=""
  case $device in
    zram)
      local id
      id=$(cat /sys/class/zram-control/hot_add) || die "cannot add a zram device"
      echo "zram $id" >> "$state"
      grep -qw lz4 "/sys/block/zram$id/comp_algorithm" &&
        echo lz4 > "/sys/block/zram$id/comp_algorithm"
      echo "$swap_size" > "/sys/block/zram$id/disksize" || die "cannot size zram$id"
      dev=/dev/zram$id ;;
    loop)
      local dir=$STATE_DIR/ramfs-$$ file
      mkdir -p "$dir" && echo "mount $dir" >> "$state"
      mount -t ramfs -o mode=0700 lethe-swap "$dir" || die "cannot mount a ramfs on $dir"
      file=$dir/swap.img
      echo "file $file" >> "$state"
      truncate -s "$swap_size" "$file" || die "cannot create $file"
      dev=$(losetup --find --show "$file") || die "cannot attach a loop device to $file"
      echo "loop $dev" >> "$state" ;;
  esac
  if [ -n "$dev" ]; then
    mkswap -q "$dev" >/dev/null || die "mkswap $dev failed"
    swapon -p 32767 "$dev" || die "swapon $dev failed"
    echo "swap $dev" >> "$state"
  fi

  local cg=$CG_ROOT/lethe-kswap-$$
  mkdir "$cg" || die "cannot create cgroup $cg"
  echo "cgroup $cg" >> "$state"
  echo "$limit" > "$cg/memory.limit_in_bytes" || die "cannot set the limit on $cg"
  [ -n "$swappiness" ] && echo "$swappiness" > "$cg/memory.swappiness"

  echo 1 > "$cg/memory.oom_control" 2>/dev/null ||
    echo "$me: warning: cannot disable the OOM killer of $cg" >&2

  local in0 out0 rc
  in0=$(vmstat pswpin); out0=$(vmstat pswpout)
  # own process group, so that finish() can stop the command and all its children
  setsid bash -c 'echo $$ > "$1/cgroup.procs" && shift && exec "$@"' _ "$cg" "$@" &
  child=$!
  watch_oom "$cg" "$limit" "$child"
  wait "$child"; rc=$?
  child=""

  if [ -n "$stats" ]; then
    {
      echo "device=$device"
      echo "limit_bytes=$limit"
      echo "pswpin=$(( $(vmstat pswpin) - in0 ))"
      echo "pswpout=$(( $(vmstat pswpout) - out0 ))"
      echo "max_usage_bytes=$(cat "$cg/memory.max_usage_in_bytes")"
      [ -f "$cg/memory.memsw.max_usage_in_bytes" ] &&
        echo "memsw_max_usage_bytes=$(cat "$cg/memory.memsw.max_usage_in_bytes")"
      echo "failcnt=$(cat "$cg/memory.failcnt")"
      echo "oom_nudges=$oom_nudges"
      if [ "$device" = zram ]; then
        # mm_stat: orig_data_size compr_data_size mem_used_total mem_limit mem_used_max ...
        read -r _ _ _ _ zmax _ < "/sys/block/${dev#/dev/}/mm_stat"
        echo "zram_mem_used_max_bytes=$zmax"
      fi
    } > "$stats"
  fi
  return "$rc"
}

case ${1:-} in
  run) shift; cmd_run "$@"; exit $? ;;
  cleanup) shift; cmd_cleanup ;;
  -h|--help|"") usage ;;
  *) echo "$me: unknown command $1" >&2; usage ;;
esac
