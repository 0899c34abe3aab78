#!/usr/bin/env bash
# One backup against two at once (onto vtape0 and vtape1 of one server), alternating, a sync and
# 2 s before each; one line per pair. Usage: scripts/bench-two-pair.sh BIN ROUNDS TREE
set -euo pipefail
bin=$1 rounds=$2 tree=$3
tree=$(realpath "$tree"); bin=$(realpath "$bin")
cd "$(dirname "$0")/.."; mkdir -p target/bench
W=$(mktemp -d $PWD/target/bench/two.XXXX); printf 'two-pw' > "$W/pw"
"$bin" serve --listen 127.0.0.1:21811 --data-dir "$W/d" --export "$tree" --user ndmp --password-file "$W/pw" > "$W/log" 2>&1 & spid=$!
trap 'kill $spid 2>/dev/null || true; rm -rf "$W"' EXIT
sleep 1.5
b() { "$bin" dma backup --server 127.0.0.1:21811 --password-file "$W/pw" --overwrite --no-history --catalog "$W/c$1.db" --tape vtape$1 "$tree" > /dev/null; }
b 0; b 1
for r in $(seq "$rounds"); do
  sync; sleep 2; t0=$(date +%s.%N); b 0; t1=$(date +%s.%N)
  sync; sleep 2; t2=$(date +%s.%N); b 0 & p=$!; b 1; wait $p; t3=$(date +%s.%N)
  awk -v a=$t0 -v b=$t1 -v c=$t2 -v d=$t3 'BEGIN{printf "one %.3f two %.3f together %.2fx\n", b-a, d-c, 2*(b-a)/(d-c)}'
done
