#!/usr/bin/env bash
# Incrementals from a kept btrfs snapshot against the full attribute walk, one sitting:
# a btrfs file system in a loop-mounted image holds FILES small files (1-8 KiB, 100 per
# directory); a level 0 with UPDATE=Y keeps its snapshot; CHANGED files are rewritten; then
# ROUNDS pairs of level 1 backups (UPDATE=N, so every one starts from the level 0), one with
# FIND_CHANGES=walk and one from the snapshot's generations, interleaved (`ndmpd dma backup`,
# LOCAL onto a virtual tape, with history; the DATA server's time). Each pair's history must
# have as many entries, and one more pair through Amanda's ndmjob must give equal -I indexes
# holding exactly the changed files, or the script fails. Page cache warm; COLD=1 drops it
# before every timed backup.
# Needs root (mount, btrfs ioctls), mkfs.btrfs and /usr/lib/amanda/ndmjob.
# Usage: scripts/bench-incremental.sh [ROUNDS=5]   (FILES=200000 CHANGED=100 BENCH_DIR=target/bench)
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-5}
files=${FILES:-200000}
changed=${CHANGED:-100}
ndmjob=/usr/lib/amanda/ndmjob
for t in mkfs.btrfs python3 "$ndmjob"; do
    command -v "$t" > /dev/null || { echo "bench-incremental.sh: $t is not installed" >&2; exit 1; }
done
[ "$(id -u)" = 0 ] || { echo "bench-incremental.sh: needs root (loop mount, btrfs ioctls)" >&2; exit 1; }
bin=${NDMPD:-}
if [ -z "$bin" ]; then
    cargo build --release -q
    bin=$PWD/target/release/ndmpd
fi
root=${BENCH_DIR:-$PWD/target/bench}
mkdir -p "$root"
work=$(mktemp -d "$(cd "$root" && pwd)/incr.XXXXXX")
pid=
cleanup() {
    [ -n "$pid" ] && kill "$pid" 2> /dev/null && wait "$pid" 2> /dev/null || true
    umount "$work/mnt" 2> /dev/null || umount -l "$work/mnt" 2> /dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

truncate -s 8G "$work/img"
mkfs.btrfs -q "$work/img" > /dev/null
mkdir "$work/mnt"
mount -o loop "$work/img" "$work/mnt"
btrfs subvolume create "$work/mnt/vol" > /dev/null
vol=$work/mnt/vol
echo "generating $files files in $vol ..." >&2
python3 - "$vol/tree" "$files" << 'PY'
import os, random, sys
root, n = sys.argv[1], int(sys.argv[2])
rnd = random.Random(21)
blob = os.urandom(1 << 20)
for i in range(n):
    d = os.path.join(root, "d%04d" % (i // 100))
    if i % 100 == 0:
        os.makedirs(d)
    size = rnd.randint(1024, 8192)
    off = rnd.randrange(0, len(blob) - size)
    fd = os.open(os.path.join(d, "f%06d" % i), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    os.write(fd, blob[off:off + size])
    os.close(fd)
PY
sync
sleep 1.1

cat > "$work/ndmpd.toml" << TOML
listen = ["127.0.0.1:0"]
data_dir = "$work/data"
[[export]]
path = "$vol"
[[tape]]
name = "vtape0"
kind = "virtual"
TOML
NDMPD_LOG=info "$bin" serve --config "$work/ndmpd.toml" > "$work/serve.out" 2> "$work/serve.log" &
pid=$!
for _ in $(seq 100); do grep -q "listening on" "$work/serve.out" && break; sleep 0.1; done
addr=$(sed -n 's/^ndmpd: NDMP v4 listening on //p' "$work/serve.out" | head -1)
pw=$(cat "$work/data/password")

# the figure is the DATA server's own time, DATA_START_BACKUP to its halt, as `ndmpd dma
# backup` reports it ("in S s"): the DMA's connection and tape set-up are left out
backup() { # name level env...
    local name=$1 level=$2 args=()
    shift 2
    for e in "$@"; do args+=(--env "$e"); done
    [ "${COLD:-0}" = 1 ] && { sync; echo 3 > /proc/sys/vm/drop_caches; }
    if ! NDMPD_CATALOG="$work/catalog.db" "$bin" dma backup --server "$addr" --password-file "$work/data/password" \
        --tape vtape0 --overwrite --level "$level" "${args[@]}" "$vol" > "$work/$name.out" 2>&1; then
        echo "bench-incremental.sh: backup $name failed" >&2
        tail -20 "$work/$name.out" >&2
        exit 1
    fi
    sed -n 's/.* in \([0-9.]*\) s (.*/\1/p' "$work/$name.out" | head -1
}
# the same backup through Amanda's ndmjob, for its -I index (the whole file history)
indexed() { # name env...
    local name=$1 args=()
    shift
    for e in "$@"; do args+=(-E "$e"); done
    if ! "$ndmjob" -c -v -D "$addr/4t,ndmp,$pw" -B dump -f vtape0 -C "$vol" \
        -I "$work/$name.index" -E HIST=y "${args[@]}" > "$work/$name.log" 2>&1 ||
        ! grep -q "Operation ended OKAY" "$work/$name.log"; then
        echo "bench-incremental.sh: ndmjob backup $name failed" >&2
        tail -20 "$work/$name.log" >&2
        exit 1
    fi
}

echo "level 0 of $files files ..." >&2
l0=$(backup l0 0 UPDATE=Y)
grep -q "kept as" "$work/serve.log" || { echo "bench-incremental.sh: the level 0 kept no snapshot" >&2; exit 1; }
sleep 1.1
python3 - "$vol/tree" "$files" "$changed" << 'PY'
import os, random, sys
root, n, k = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
for i in random.Random(7).sample(range(n), k):
    with open(os.path.join(root, "d%04d" % (i // 100), "f%06d" % i), "r+b") as f:
        f.write(b"changed")
PY

walk=() snap=()
for r in $(seq "$rounds"); do
    walk+=("$(backup walk 1 UPDATE=N FIND_CHANGES=walk)")
    n=$(grep -c "found from btrfs generations" "$work/serve.log" || true)
    snap+=("$(backup snap 1 UPDATE=N)")
    [ "$(grep -c "found from btrfs generations" "$work/serve.log")" -gt "$n" ] ||
        { echo "bench-incremental.sh: the incremental did not use the snapshot" >&2; tail "$work/serve.log" >&2; exit 1; }
    hw=$(sed -n 's/.*, \([0-9]*\) history entries.*/\1/p' "$work/walk.out")
    hs=$(sed -n 's/.*, \([0-9]*\) history entries.*/\1/p' "$work/snap.out")
    [ "$hw" = "$hs" ] || { echo "bench-incremental.sh: round $r: $hw history entries by the walk, $hs from the snapshot" >&2; exit 1; }
done
# the whole file history, through ndmjob's index: equal, and exactly the changed files
indexed iwalk LEVEL=1 UPDATE=N FIND_CHANGES=walk
indexed isnap LEVEL=1 UPDATE=N
hist() { grep -v '^DE ' "$1" | grep -v '^CM '; }
if ! diff <(hist "$work/iwalk.index") <(hist "$work/isnap.index") > /dev/null; then
    echo "bench-incremental.sh: the two level 1 histories differ" >&2
    exit 1
fi
nodes=$(grep -c ' UNIX f- ' "$work/isnap.index" || true)
[ "$nodes" = "$changed" ] || { echo "bench-incremental.sh: $nodes files dumped, $changed changed" >&2; exit 1; }
search=$(sed -n 's/.*found from btrfs generations in \([0-9]*\) ms.*/\1/p' "$work/serve.log" | tail -1)
stats() { printf '%s\n' "$@" | sort -n | awk '{ v[NR] = $1 } END { m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2; printf "%.2f s (%.2f-%.2f)", m, v[1], v[NR] }'; }
med() { printf '%s\n' "$@" | sort -n | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
mw=$(med "${walk[@]}")
ms=$(med "${snap[@]}")
cache=warm
[ "${COLD:-0}" = 1 ] && cache=cold
echo
echo "incremental of $files files, $changed changed (dump, LOCAL, history on; DATA server time; $rounds rounds, page cache $cache)"
echo "$(nproc) CPUs, $(uname -r), $(date -u +%F)"
echo "| level 1 found by | median (min-max) |"
echo "|---|---|"
echo "| full attribute walk (FIND_CHANGES=walk) | $(stats "${walk[@]}") |"
echo "| btrfs generations since the kept snapshot | $(stats "${snap[@]}") |"
echo "ratio walk / snapshot: $(awk -v a="$mw" -v b="$ms" 'BEGIN { printf "%.1f", a / b }')x; the tree search itself: $search ms; level 0: ${l0} s"
echo "history entries equal in every round; ndmjob's whole -I index equal both ways, $changed file nodes"
