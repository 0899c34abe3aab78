#!/usr/bin/env bash
# A backup onto a used cartridge against `tar cf` over its previous archive and into a new
# file, alternating, a sync and 2 s before each. Usage: scripts/bench-tar-pair.sh BIN ROUNDS TREE [BUTYPE]
set -euo pipefail
bin=$1 rounds=$2 tree=$3 bt=${4:-dump}
tree=$(realpath "$tree"); bin=$(realpath "$bin")
. "$(dirname "$0")/pair-lib.sh"
pair_init tp
pair_serve "$bin" 21821 d "$tree"
b() { "$bin" dma backup --server 127.0.0.1:21821 --password-file "$W/pw" --overwrite --no-history --butype $bt --catalog "$W/c.db" "$tree" > /dev/null; }
b; tar cf "$W/tree.tar" -C "$tree" .
for r in $(seq "$rounds"); do
  sync; sleep 2; t0=$(date +%s.%N); b; t1=$(date +%s.%N)
  sync; sleep 2; t2=$(date +%s.%N); tar cf "$W/tree.tar" -C "$tree" .; t3=$(date +%s.%N)
  rm -f "$W/tree.tar"; sync; sleep 2; t4=$(date +%s.%N); tar cf "$W/tree.tar" -C "$tree" .; t5=$(date +%s.%N)
  awk -v a=$t0 -v b=$t1 -v c=$t2 -v d=$t3 -v e=$t4 -v f=$t5 'BEGIN{printf "backup %.3f tar-cf-over %.3f (%.2fx) tar-cf-new %.3f (%.2fx)\n", b-a, d-c, (d-c)/(b-a), f-e, (f-e)/(b-a)}'
done
