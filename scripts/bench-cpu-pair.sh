#!/usr/bin/env bash
# Paired server CPU of backups: two ndmpd binaries (BASE, NEW), one server each, `ndmpd dma
# backup --overwrite` (LOCAL, no history) of TREE with BUTYPE, alternating, `sync` and 1 s
# before each. One line per backup: binary, wall seconds, the server's CPU (user + sys, in
# ticks of 10 ms, from /proc/PID/stat). CPU is the figure to compare when the wall time swings
# with the disk. The first round warms the page cache and new cartridges: read it apart.
# Usage: scripts/bench-cpu-pair.sh BASE NEW ROUNDS TREE [BUTYPE=dump]
set -euo pipefail
base=${1:?usage: scripts/bench-cpu-pair.sh BASE NEW ROUNDS TREE [BUTYPE]}
new=${2:?usage}; rounds=${3:?usage}; tree=$(cd "${4:?usage}" && pwd); bt=${5:-dump}
cd "$(dirname "$0")/.."; mkdir -p target/bench
W=$(mktemp -d "$PWD/target/bench/cpu.XXXX"); printf 'cpu-pw' > "$W/pw"
pids=()
"$base" serve --listen 127.0.0.1:21801 --data-dir "$W/da" --export "$tree" --user ndmp --password-file "$W/pw" > "$W/la" 2>&1 & pids+=($!)
"$new" serve --listen 127.0.0.1:21802 --data-dir "$W/dn" --export "$tree" --user ndmp --password-file "$W/pw" > "$W/ln" 2>&1 & pids+=($!)
trap 'kill "${pids[@]}" 2>/dev/null; rm -rf "$W"' EXIT
sleep 1.5
declare -A P=([base]=${pids[0]} [new]=${pids[1]}) PORT=([base]=21801 [new]=21802) BIN=([base]=$base [new]=$new)
cpu() { awk '{print $14 + $15}' "/proc/$1/stat"; }
for r in $(seq "$rounds"); do
    for k in base new; do
        sync; sleep 1
        s=$(cpu "${P[$k]}"); t0=$(date +%s.%N)
        NDMPD_CATALOG=$W/cat-$k.db "${BIN[$k]}" dma backup --server 127.0.0.1:${PORT[$k]} \
            --password-file "$W/pw" --overwrite --no-history --butype "$bt" "$tree" > /dev/null
        t1=$(date +%s.%N); e=$(cpu "${P[$k]}")
        awk -v k=$k -v r=$r -v a=$t0 -v b=$t1 -v c=$((e - s)) \
            'BEGIN{printf "round %d %s wall %.3f cpu %d\n", r, k, b - a, c}'
    done
done
