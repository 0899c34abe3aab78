#!/usr/bin/env bash
# A LOCAL backup against a three-way one (DATA on one server, the tape on a second over loopback
# TCP), alternating, a sync and 2 s before each; one line per pair with each server's CPU ticks.
# Usage: scripts/bench-threeway-pair.sh BIN ROUNDS TREE
set -euo pipefail
bin=$1 rounds=$2 tree=$3
tree=$(realpath "$tree"); bin=$(realpath "$bin")
. "$(dirname "$0")/pair-lib.sh"
pair_init three
pair_serve "$bin" 21825 d "$tree"; a=$served
pair_serve "$bin" 21826 t "$tree"; t=$served
b() { "$bin" dma backup --server 127.0.0.1:21825 --password-file "$W/pw" --overwrite --no-history --catalog "$W/c.db" "$@" "$tree" > /dev/null; }
b; b --tape-server 127.0.0.1:21826
for r in $(seq "$rounds"); do
  sync; sleep 2; c0=$(ticks $a); t0=$(date +%s.%N); b; t1=$(date +%s.%N); c1=$(ticks $a)
  sync; sleep 2; c2=$(ticks $a); d2=$(ticks $t); t2=$(date +%s.%N); b --tape-server 127.0.0.1:21826; t3=$(date +%s.%N); c3=$(ticks $a); d3=$(ticks $t)
  awk -v a=$t0 -v b=$t1 -v c=$t2 -v d=$t3 -v l=$((c1-c0)) -v x=$((c3-c2)) -v y=$((d3-d2)) \
    'BEGIN{printf "local %.3f (%d ticks) tcp %.3f (data %d + tape %d ticks) tcp/local %.2f\n", b-a, l, d-c, x, y, (b-a)/(d-c)}'
done
