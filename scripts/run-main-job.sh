#!/usr/bin/env bash
# `make run`: Lethe's main job. Runs lethe-bench under lethed with conf/lethe.conf as it is,
# the local cache set to half of the benchmark's working set, and prints the run's summary.
set -euo pipefail
build=${1:-build}
lethed=$build/bin/lethed
bench=$build/bin/lethe-bench
conf=conf/lethe.conf
[ -x "$lethed" ] || { echo "run: $lethed is missing; build first (make build)" >&2; exit 1; }
echo "run: $lethed --check -c $conf"
"$lethed" --check -c "$conf"
if [ ! -e "$bench" ] || [ ! -e "$build/lib/liblethe.so" ]; then
  echo "run: this build has no lethe-bench or liblethe.so yet: the configuration check above is"
  echo "run: all that Lethe's main job can run so far."
  exit 0
fi
keys=${LETHE_RUN_KEYS:-1000000}
ops=${LETHE_RUN_OPS:-2000000}
# Working set of lethe-bench: about 64 bytes per key (see docs/BENCHMARK.md); half of it local.
cache_mb=$(( (keys * 64 / 2) / (1024 * 1024) ))
[ "$cache_mb" -ge 4 ] || cache_mb=4
echo "run: lethe-bench, $keys keys, $ops operations of workload A (zipfian), under lethed"
echo "run: local cache ${cache_mb}M = 50% of the working set, embedded memory node, shm transport"
exec "$lethed" -c "$conf" --set cache.cache_size="${cache_mb}M" -- \
     "$bench" --mode plain -k "$keys" -o "$ops" -w A -d zipfian --no-progress
