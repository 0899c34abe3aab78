#!/bin/sh
# Runs one fuzz target as the README's figures were taken: built by cargo fuzz (stable, no
# sanitizer), at nice 19 in one process, with its seeds, dictionary and input size limit;
# new inputs go to corpus/<target>. The readers that restore files run in sandbox.sh as root.
# Usage: ./run.sh TARGET [libFuzzer flags, e.g. -runs=10000000]
set -eu
cd "$(dirname "$0")"
t=$1
shift
cargo fuzz build -s none "$t"
mkdir -p "corpus/$t" "artifacts/$t"
case $t in
dump_read | tar_read | pcap_decode | wire_decode) max=65536 ;;
config_parse) max=16384 ;;
*) max=4096 ;;
esac
set -- -max_len=$max -timeout=30 -print_final_stats=1 -artifact_prefix="artifacts/$t/" "$@"
[ -f "dict/$t.dict" ] && set -- -dict="dict/$t.dict" "$@"
# The first directory gets the new inputs; the seeds are only read.
set -- "$@" "corpus/$t"
[ -d "seeds/$t" ] && set -- "$@" "seeds/$t"
bin=target/x86_64-unknown-linux-gnu/release/$t
case $t in
dump_read | tar_read) [ "$(id -u)" = 0 ] && exec nice -n 19 ./sandbox.sh "$bin" "$@" ;;
esac
exec nice -n 19 "$bin" "$@"
