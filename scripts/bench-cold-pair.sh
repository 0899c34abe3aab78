#!/usr/bin/env bash
# Backups onto a used cartridge whose pages were dropped from the page cache first, two
# binaries alternating. Usage: scripts/bench-cold-pair.sh BASE NEW ROUNDS TREE
set -euo pipefail
base=$1 new=$2 rounds=$3 tree=$4
tree=$(realpath "$tree"); base=$(realpath "$base"); new=$(realpath "$new")
. "$(dirname "$0")/pair-lib.sh"
pair_init cold
pair_serve "$base" 21831 da "$tree"
pair_serve "$new" 21832 dn "$tree"
b() { "$1" dma backup --server 127.0.0.1:$2 --password-file "$W/pw" --overwrite --no-history --catalog "$W/c$2.db" "$tree" > /dev/null; }
drop() { sync; for f in "$W"/$1/vtl/cartridges/*; do python3 -c "import os,sys; fd=os.open(sys.argv[1],os.O_RDONLY); os.posix_fadvise(fd,0,0,os.POSIX_FADV_DONTNEED)" "$f"; done; }
b "$base" 21831; b "$new" 21832
for r in $(seq "$rounds"); do
  for k in base new; do
    if [ $k = base ]; then bin=$base port=21831 d=da; else bin=$new port=21832 d=dn; fi
    drop $d; sleep 2
    t0=$(date +%s.%N); b "$bin" $port; t1=$(date +%s.%N)
    awk -v k=$k -v a=$t0 -v b=$t1 'BEGIN{printf "%s %.3f  ", k, b-a}'
  done; echo
done
