#!/usr/bin/env bash
# Backup throughput of the MOVER against a plain copy, same bytes, same filesystem, same run:
# a loopback TCP data connection into virtual tape vtape0 of an in-process ndmpd (MOVER_LISTEN,
# READ mode) vs a loopback socket read in records of the same size and written to a plain file.
# 64 KiB and 256 KiB records, rounds alternating mover and copy; the clock runs from the first
# byte sent to the last byte in the page cache (truncation before and fsync after each run are
# untimed in both); sender and receiver pinned to two CPUs (MOVER_BENCH_PIN=0: unpinned).
# Prints MB/s per round, medians, and mover/copy. MOVER_BENCH_FRAMED=1 makes the copy write
# vtape's framing (32-byte header + CRC-32 per record), which isolates the cost of the format.
# MOVER_BENCH_SYNC=1 stops both clocks once the bytes are on disk (TAPE_CLOSE, fsync).
# Usage: scripts/bench-mover.sh [MB=512] [ROUNDS=9]   (NDMPD_BENCH_DIR picks the filesystem)
set -euo pipefail
cd "$(dirname "$0")/.."
export MOVER_BENCH_MB=${1:-${MOVER_BENCH_MB:-512}}
export MOVER_BENCH_ROUNDS=${2:-${MOVER_BENCH_ROUNDS:-9}}
exec cargo bench -q --bench mover
