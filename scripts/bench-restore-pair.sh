#!/usr/bin/env bash
# Paired restore comparison (as root): ndmpd dma restore (dump image) vs tar xf of the same tree, each into a fresh no-journal ext4 loop fs; sync+sleep before each
set -euo pipefail
rounds=${1:-5}; TREE=${2:?usage: scripts/bench-restore-pair.sh ROUNDS TREE (as root)}
TREE=$(cd "$TREE" && pwd); cd "$(dirname "$0")/.."; mkdir -p target/bench; W=$(mktemp -d "$PWD/target/bench/rab.XXXX"); mkdir -p $W/out; printf 'pw' > $W/pw
B=${NDMPD:-$PWD/target/release/ndmpd}
$B serve --listen 127.0.0.1:21600 --data-dir $W/data --export $TREE --export $W/out --user ndmp --password-file $W/pw > $W/log 2>&1 & SP=$!
trap 'kill $SP 2>/dev/null || true; umount $W/out/m 2>/dev/null || true; rm -rf $W' EXIT
sleep 1.5
export NDMPD_CATALOG=$W/cat.db
$B dma backup --server 127.0.0.1:21600 --password-file $W/pw --overwrite --no-history $TREE > /dev/null
tar cf $W/tree.tar -C $TREE .
n=$(find $TREE | wc -l); bytes=$(du -sb --apparent-size $TREE | cut -f1)
fresh() { mkdir -p $W/out/m; rm -f $W/img; truncate -s $(((bytes*2>>20)+1024))M $W/img; mkfs.ext4 -q -F -O ^has_journal -N $((n*2+65536)) -E lazy_itable_init=0,lazy_journal_init=0,nodiscard $W/img; mount -o loop $W/img $W/out/m; rmdir $W/out/m/lost+found; sync; sleep 5; }
done_() { diff -rq $TREE $W/out/m >/dev/null || { echo DIFF; exit 1; }; umount $W/out/m; }
for r in $(seq $rounds); do
  for k in ndmpd tar; do
    fresh
    t0=$(date +%s.%N)
    if [ $k = ndmpd ]; then $B dma restore --server 127.0.0.1:21600 --password-file $W/pw --file 0 $W/out/m > /dev/null 2>&1; else tar xf $W/tree.tar -C $W/out/m; fi
    t1=$(date +%s.%N)
    printf '%s %s %.3f\n' $r $k $(echo "$t1 - $t0" | bc)
    done_
  done
done
