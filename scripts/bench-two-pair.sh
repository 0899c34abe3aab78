#!/usr/bin/env bash
# One backup against two at once (onto vtape0 and vtape1 of one server), alternating, a sync and
# 2 s before each; one line per pair. Usage: scripts/bench-two-pair.sh BIN ROUNDS TREE
set -euo pipefail
bin=$1 rounds=$2 tree=$3
tree=$(realpath "$tree"); bin=$(realpath "$bin")
. "$(dirname "$0")/pair-lib.sh"
pair_init two
pair_serve "$bin" 21811 d "$tree"
b() { "$bin" dma backup --server 127.0.0.1:21811 --password-file "$W/pw" --overwrite --no-history --catalog "$W/c$1.db" --tape vtape$1 "$tree" > /dev/null; }
b 0; b 1
for r in $(seq "$rounds"); do
  sync; sleep 2; t0=$(date +%s.%N); b 0; t1=$(date +%s.%N)
  sync; sleep 2; t2=$(date +%s.%N); b 0 & p=$!; b 1; wait $p; t3=$(date +%s.%N)
  awk -v a=$t0 -v b=$t1 -v c=$t2 -v d=$t3 'BEGIN{printf "one %.3f two %.3f together %.2fx\n", b-a, d-c, 2*(b-a)/(d-c)}'
done
