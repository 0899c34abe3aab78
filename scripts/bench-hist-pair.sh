#!/usr/bin/env bash
# Paired file-history cost: two ndmpd binaries (BASE, NEW) alternated, each backup of TREE on a
# fresh `ndmpd serve`, dump and tar, HIST=n and HIST=y, by `ndmpd dma backup` (the binary's own
# DMA, recording into a scratch catalog) and by Amanda's `ndmjob -c [-I]` when installed.
# One line per backup: round dma kind hist bin wall_s server_cpu_s dma_cpu_s entries hwm_kib
# dma_hwm_kib load1
# (CPU = user + sys: the server's from /proc/PID/stat, the DMA's from /usr/bin/time).
# Usage: scripts/bench-hist-pair.sh BASE NEW [ROUNDS=3] [TREE]   (WORK=/dev/shm/... for the tapes)
# TREE defaults to bench.sh's HISTORY_FILES=1000000 tree, target/bench/trees/hist-1000000.
# DMAS="ndmpd" and KINDS="dump" narrow the runs (default: both DMAs, dump and tar). PIN=1 holds
# each server to CPU 0 and each DMA to CPU 1 (standing in for a DMA on a host of its own, as far
# as two vCPUs that may share a physical core can).
set -euo pipefail
base=${1:?usage: scripts/bench-hist-pair.sh BASE NEW [ROUNDS] [TREE]}
new=${2:?usage: scripts/bench-hist-pair.sh BASE NEW [ROUNDS] [TREE]}
rounds=${3:-3}
cd "$(dirname "$0")/.."
tree=$(cd "${4:-target/bench/trees/hist-1000000}" && pwd)
work=${WORK:-$PWD/target/bench/hist-pair}
dmas=(ndmpd)
[ -x /usr/lib/amanda/ndmjob ] && dmas+=(ndmjob)
[ -n "${DMAS:-}" ] && read -r -a dmas <<< "$DMAS"
kinds=(dump tar)
[ -n "${KINDS:-}" ] && read -r -a kinds <<< "$KINDS"

one() { # bin kind hist dma -> "wall server_cpu dma_cpu entries hwm dma_hwm"
    local bin=$1 kind=$2 hist=$3 dma=$4 port spid tape=vtape0 t0 t1 n st spin=() dpin=()
    [ "${PIN:-0}" = 1 ] && spin=(taskset -c 0) && dpin=(taskset -c 1)
    rm -rf "$work"
    mkdir -p "$work"
    printf 'bench-pw' > "$work/pw"
    port=$((30000 + RANDOM % 5000))
    # created before the server starts, so the wait below never looks for a missing file
    : > "$work/serve.log"
    "${spin[@]}" "$bin" serve --listen "127.0.0.1:$port" --data-dir "$work/data" --export "$tree" \
        --user ndmp --password-file "$work/pw" > "$work/serve.log" 2>&1 &
    spid=$!
    for _ in $(seq 100); do grep -q listening "$work/serve.log" && break; sleep 0.1; done
    [ "$kind" = tar ] && tape=vtape1
    t0=$(date +%s.%N)
    if [ "$dma" = ndmpd ]; then
        local h=()
        [ "$hist" = n ] && h=(--no-history)
        NDMPD_CATALOG=$work/catalog.db /usr/bin/time -f "%U %S %M" -o "$work/time" "${dpin[@]}" "$bin" dma backup \
            --overwrite "${h[@]}" --butype "$kind" --tape "$tape" "$tree" \
            --server "127.0.0.1:$port" --password-file "$work/pw" > "$work/cmd.log" 2>&1 ||
            { tail "$work/cmd.log" >&2; kill "$spid"; exit 1; }
        n=$(sed -n 's/.*, \([0-9]*\) history entries$/\1/p' "$work/cmd.log")
    else
        local i=()
        [ "$hist" = y ] && i=(-I "$work/index")
        /usr/bin/time -f "%U %S %M" -o "$work/time" "${dpin[@]}" /usr/lib/amanda/ndmjob -c \
            -D "127.0.0.1:$port/4t,ndmp,bench-pw" -B "$kind" -b 128 -f "$tape" -C "$tree" \
            "${i[@]}" > "$work/cmd.log" 2>&1 || true
        grep -q "Operation ended OKAY" "$work/cmd.log" ||
            { tail "$work/cmd.log" >&2; kill "$spid"; exit 1; }
        n=0
        [ "$hist" = y ] && n=$(grep -c '^DH[fdn] ' "$work/index")
    fi
    t1=$(date +%s.%N)
    read -r -a st < <(cut -d' ' -f14,15 "/proc/$spid/stat")
    local hwm du ds dm
    hwm=$(awk '/^VmHWM/ { print $2 }' "/proc/$spid/status")
    kill "$spid"
    wait "$spid" 2> /dev/null || true
    read -r du ds dm < "$work/time"
    awk -v a="$t0" -v b="$t1" -v su="${st[0]}" -v ss="${st[1]}" -v t="$(getconf CLK_TCK)" \
        -v du="$du" -v ds="$ds" -v n="$n" -v h="$hwm" -v dm="$dm" \
        'BEGIN { printf "%.2f %.2f %.2f %s %d %d", b - a, (su + ss) / t, du + ds, n, h, dm }'
}

for r in $(seq "$rounds"); do
    for d in "${dmas[@]}"; do for k in "${kinds[@]}"; do for h in n y; do
        # every other round the new binary first
        if [ $((r % 2)) = 1 ]; then order="base new"; else order="new base"; fi
        for tag in $order; do
            bin=$base
            [ "$tag" = new ] && bin=$new
            echo "$r $d $k $h $tag $(one "$bin" "$k" "$h" "$d") $(cut -d' ' -f1 /proc/loadavg)"
        done
    done; done; done
done
rm -rf "$work"
