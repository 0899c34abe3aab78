#!/usr/bin/env bash
# Backup throughput of the DATA server + mover, same tree, same disk, same run:
#   tar      : tar cf - -C TREE . > FILE                    (the disk's own pace for this tree)
#   bundled  : ndmpd dma backup TREE, two-way (LOCAL), without and with file history
#   ndmjob   : Amanda's ndmjob -c -B dump -D ndmpd (LOCAL), without and with history (-I)
#   reference: the same ndmjob DMA against `ndmjob -o daemon` (tar butype through the oracle's
#              wrapper), when ../shared/oracle is present (ORACLE=DIR to point elsewhere)
# The tree (~1 GiB: 4 x 208 MiB random files + 20,000 files of 1-20 KiB in 400 directories) is
# generated once, or taken from BENCH_TREE. Rates are tree bytes / wall seconds (MB = 10^6) and
# files / second, page cache (no fsync), median of ROUNDS interleaved rounds. Every ndmjob job
# carries the DMA's own fixed ~1 s overhead, in both ndmjob rows.
# Usage: scripts/bench-backup.sh [ROUNDS=3]   (NDMPD_BENCH_DIR picks the filesystem)
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-3}
cargo build --release -q
bin=$PWD/target/release/ndmpd
ndmjob=/usr/lib/amanda/ndmjob
oracle=${ORACLE:-$PWD/../shared/oracle}
work=$(mktemp -d "${NDMPD_BENCH_DIR:-$PWD/target}/bench-backup.XXXXXX")
port=$((20000 + RANDOM % 10000)); ref_port=$((port + 1))
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2> /dev/null || true; done
    [ -x "$oracle/ndmjob-refserver.sh" ] && "$oracle/ndmjob-refserver.sh" stop "$ref_port" > /dev/null 2>&1 || true
    rm -rf "$work"
}
trap cleanup EXIT

tree=${BENCH_TREE:-$work/tree}
if [ -z "${BENCH_TREE:-}" ]; then
    echo "generating the tree in $tree ..."
    mkdir -p "$tree/big"
    for i in 1 2 3 4; do head -c $((208 << 20)) /dev/urandom > "$tree/big/large$i.bin"; done
    python3 - "$tree" << 'PY'
import os, random, sys
root = sys.argv[1]; rnd = random.Random(42); blob = os.urandom(1 << 20)
for n in range(20000):
    d = os.path.join(root, "small", "d%03d" % (n // 100), "sub%d" % ((n // 100) % 7))
    if n % 100 == 0:
        os.makedirs(d, exist_ok=True)
    size = rnd.randint(1024, 20 * 1024); off = rnd.randint(0, len(blob) - size)
    with open(os.path.join(d, "f%05d.dat" % n), "wb") as f:
        f.write(blob[off:off + size])
PY
fi
tree=$(cd "$tree" && pwd)
bytes=$(du -sb --apparent-size "$tree" | cut -f1)
files=$(find "$tree" -type f | wc -l)
echo "tree: $bytes bytes, $files files"

printf 'bench-pw' > "$work/pw"
"$bin" serve --listen "127.0.0.1:$port" --data-dir "$work/data" --export "$tree" \
    --user ndmp --password-file "$work/pw" > "$work/ndmpd.log" 2>&1 &
pids+=($!)
ref=0
if [ -x "$oracle/ndmjob-refserver.sh" ] && [ -x "$ndmjob" ]; then
    "$oracle/ndmjob-refserver.sh" start "$ref_port" "$work/ref" > /dev/null && ref=1
fi
sleep 1

now() { date +%s.%N; }
declare -A rate fps
add() { # name t0 t1
    local s; s=$(awk -v a="$2" -v b="$3" 'BEGIN { print b - a }')
    rate[$1]+="$(awk -v n="$bytes" -v s="$s" 'BEGIN { printf "%.0f", n / s / 1e6 }') "
    fps[$1]+="$(awk -v n="$files" -v s="$s" 'BEGIN { printf "%.0f", n / s }') "
}
ok() { grep -q "Operation ended OKAY" "$1" || { echo "ndmjob failed:"; tail -20 "$1"; exit 1; }; }
A="127.0.0.1:$port/4t,ndmp,bench-pw"
for r in $(seq "$rounds"); do
    t0=$(now); tar cf - -C "$tree" . > "$work/tar.out"; t1=$(now); add tar "$t0" "$t1"; rm -f "$work/tar.out"
    t0=$(now); "$bin" dma backup --server "127.0.0.1:$port" --password-file "$work/pw" --no-history "$tree" > /dev/null; t1=$(now)
    add "bundled, no history" "$t0" "$t1"
    t0=$(now); "$bin" dma backup --server "127.0.0.1:$port" --password-file "$work/pw" "$tree" > /dev/null; t1=$(now)
    add "bundled, history" "$t0" "$t1"
    t0=$(now); timeout 900 "$ndmjob" -c -v -D "$A" -B dump -f vtape0 -C "$tree" -b 128 > "$work/j.log" 2>&1 || true; t1=$(now)
    ok "$work/j.log"; add "ndmjob -> ndmpd, no history" "$t0" "$t1"
    t0=$(now); timeout 900 "$ndmjob" -c -v -D "$A" -B dump -f vtape0 -C "$tree" -b 128 -I "$work/idx" > "$work/j.log" 2>&1 || true; t1=$(now)
    ok "$work/j.log"; add "ndmjob -> ndmpd, history" "$t0" "$t1"; rm -f "$work/idx"
    if [ $ref = 1 ]; then
        : > "$work/ref.tape"
        t0=$(now); timeout 900 "$ndmjob" -c -v -D 127.0.0.1:$ref_port/4t,ndmp,ndmp -B tar -f "$work/ref.tape" -C "$tree" -b 128 > "$work/j.log" 2>&1 || true; t1=$(now)
        ok "$work/j.log"; add "ndmjob -> reference daemon, no history" "$t0" "$t1"
        : > "$work/ref.tape"
        t0=$(now); timeout 900 "$ndmjob" -c -v -D 127.0.0.1:$ref_port/4t,ndmp,ndmp -B tar -f "$work/ref.tape" -C "$tree" -b 128 -I "$work/idx" > "$work/j.log" 2>&1 || true; t1=$(now)
        ok "$work/j.log"; add "ndmjob -> reference daemon, history" "$t0" "$t1"; rm -f "$work/idx" "$work/ref.tape"
    fi
    echo "round $r done"
done
median() { printf '%s\n' $1 | sort -n | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'; }
for k in "tar" "bundled, no history" "bundled, history" "ndmjob -> ndmpd, no history" "ndmjob -> ndmpd, history" \
         "ndmjob -> reference daemon, no history" "ndmjob -> reference daemon, history"; do
    [ -n "${rate[$k]:-}" ] || continue
    printf '%-40s %6s MB/s %7s files/s   (rounds: %s MB/s)\n' "$k" "$(median "${rate[$k]}")" "$(median "${fps[$k]}")" "${rate[$k]}"
done
