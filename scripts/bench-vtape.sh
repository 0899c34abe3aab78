#!/usr/bin/env bash
# Sequential throughput of a virtual cartridge against dd on the same filesystem, same run:
# write = `ndmpd vtape append` (256 KiB records, then fsync) vs `dd bs=256k conv=fsync`;
# read  = `ndmpd vtape cat` vs `dd bs=256k` of the copy, each from a cold page cache when we
# may drop it (root), else from the cache. Prints MB/s per round and medians.
# Usage: scripts/bench-vtape.sh [MB=2048] [ROUNDS=3]   (NDMPD_BENCH_DIR picks the filesystem;
# NDMPD=BINARY measures that binary instead of building this tree)
set -euo pipefail
cd "$(dirname "$0")/.."
mb=${1:-2048}
rounds=${2:-3}
bin=${NDMPD:-}
if [ -z "$bin" ]; then
    cargo build --release -q
    bin=$PWD/target/release/ndmpd
fi
dir=$(mktemp -d "${NDMPD_BENCH_DIR:-$PWD/target}/bench-vtape.XXXXXX")
trap 'rm -rf "$dir"' EXIT
head -c $((mb << 20)) /dev/urandom > "$dir/src"
bytes=$((mb << 20))
mbps() { awk -v b="$bytes" -v s="$1" 'BEGIN { printf "%.0f", b / s / 1e6 }'; }
secs() { local t0 t1; t0=$(date +%s.%N); "$@" > /dev/null; t1=$(date +%s.%N); awk -v a="$t0" -v b="$t1" 'BEGIN { print b - a }'; }
vt() { "$bin" vtape --data-dir "$dir/data" "$@"; }
cold() { sync; if [ -w /proc/sys/vm/drop_caches ]; then echo 3 > /proc/sys/vm/drop_caches; fi; }
[ -w /proc/sys/vm/drop_caches ] && echo "reads start from a cold page cache" || echo "reads come from the page cache (not root)"
declare -a vw vr dw dr
for r in $(seq "$rounds"); do
    rm -rf "$dir/data" "$dir/copy"
    vt create --label BENCH --capacity $((bytes * 2)) > /dev/null
    vw+=("$(mbps "$(secs vt append BENCH "$dir/src" --record-size 262144 2>/dev/null)")")
    dw+=("$(mbps "$(secs dd if="$dir/src" of="$dir/copy" bs=256k conv=fsync status=none)")")
    cold
    vr+=("$(mbps "$(secs vt cat BENCH --file 0)")")
    cold
    dr+=("$(mbps "$(secs dd if="$dir/copy" of=/dev/null bs=256k status=none)")")
    echo "round $r: vtape write ${vw[-1]} MB/s, dd write ${dw[-1]} MB/s; vtape read ${vr[-1]} MB/s, dd read ${dr[-1]} MB/s"
done
median() { printf '%s\n' "$@" | sort -n | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'; }
w=$(median "${vw[@]}"); dwm=$(median "${dw[@]}"); rd=$(median "${vr[@]}"); drm=$(median "${dr[@]}")
echo "median: write vtape $w / dd $dwm MB/s ($((100 * w / dwm))%), read vtape $rd / dd $drm MB/s ($((100 * rd / drm))%)"
