#!/usr/bin/env bash
# Paired backups (as root or not): two ndmpd binaries (BASE, NEW), one server each, `ndmpd dma backup --overwrite`
# dump then tar (LOCAL, no history), alternating, `sync` and 3 s before each; wall of the whole DMA run.
# Usage: BASE=BIN [NEW=BIN] scripts/bench-backup-pair.sh ROUNDS TREE
set -euo pipefail
rounds=${1:-5}; TREE=$(cd "${2:?usage: scripts/bench-backup-pair.sh ROUNDS TREE}" && pwd)
cd "$(dirname "$0")/.."; mkdir -p target/bench; W=$(mktemp -d "$PWD/target/bench/abk.XXXX"); printf 'ab-pw' > $W/pw
declare -A BIN=([base]=${BASE:?BASE=binary} [new]=${NEW:-$PWD/target/release/ndmpd})
declare -A PORT=([base]=21311 [new]=21312)
pids=()
for k in base new; do
  ${BIN[$k]} serve --listen 127.0.0.1:${PORT[$k]} --data-dir $W/data-$k --export $TREE --user ndmp --password-file $W/pw > $W/$k.log 2>&1 & pids+=($!)
done
trap 'kill ${pids[@]} 2>/dev/null; rm -rf $W' EXIT
sleep 1.5
declare -A B T
for r in $(seq $rounds); do
  order="base new"; [ $((r % 2)) = 0 ] && order="new base"
  for k in $order; do
    for bt in dump tar; do
      sync; sleep 3
      t0=$(date +%s.%N)
      NDMPD_CATALOG=$W/cat-$k.db ${BIN[$k]} dma backup --server 127.0.0.1:${PORT[$k]} --password-file $W/pw --overwrite --no-history --butype $bt --tape $([ $bt = dump ] && echo vtape0 || echo vtape1) $TREE > $W/o.log 2>&1 || { cat $W/o.log; exit 1; }
      t1=$(date +%s.%N)
      v=$(awk -v a=$t0 -v b=$t1 'BEGIN{printf "%.3f", b-a}')
      if [ $bt = dump ]; then B[$k]+="$v "; else T[$k]+="$v "; fi
    done
  done
done
med() { printf '%s\n' $@ | sort -n | awk '{v[NR]=$1} END{m=(NR%2)?v[(NR+1)/2]:(v[NR/2]+v[NR/2+1])/2; printf "%.2f s (%.2f-%.2f)", m, v[1], v[NR]}'; }
for k in base new; do echo "$k: backup dump $(med ${B[$k]})  backup tar $(med ${T[$k]})   [${B[$k]}] [${T[$k]}]"; done
