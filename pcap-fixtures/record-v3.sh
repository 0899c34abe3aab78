#!/bin/bash
# record-v3.sh -- record the NDMP v3 packet-capture fixtures (*-v3.pcap).
#
#   pcap-fixtures/record-v3.sh        record (root, ~15 s)
#
# As record.sh, but every agent speaks NDMP v3 (ndmjob "/3t"): Amanda's
# /usr/lib/amanda/ndmjob as DMA against the reference "ndmjob -o daemon"
# started by the oracle's ndmjob-refserver.sh, NDMP control connections on
# 127.0.0.1:10000 only.  The fixtures are copied here only if every job
# behaved as expected.  Environment: ORACLE (default ../shared/oracle),
# NDMJOB_TIMEOUT (120), KEEP=1 keeps the work dir.
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
ORACLE=${ORACLE:-../shared/oracle}
case "$ORACLE" in /*) ;; *) ORACLE=$ROOT/$ORACLE ;; esac
NDMJOB=/usr/lib/amanda/ndmjob
PORT=10000
TMO=${NDMJOB_TIMEOUT:-120}
WORK=/tmp/ndmpd-pcap-v3        # fixed path: it appears inside the captures
A="127.0.0.1:$PORT/3t,ndmp,ndmp"
FIXTURES="query-v3 test-mover-v3 backup-tar-v3 restore-dar-v3"

die() { echo "ERROR: $*" >&2; exit 2; }
[ "$(id -u)" = 0 ] || die "must run as root (tcpdump)"
for t in tcpdump tshark timeout cmp; do command -v $t >/dev/null || die "$t not found"; done
[ -x "$ORACLE/ndmjob-refserver.sh" ] || die "no oracle at $ORACLE (set ORACLE=)"
(exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && die "port $PORT already in use"
if [ -e "$WORK" ]; then
    [ -f "$WORK/.ndmpd-pcap-work" ] || die "$WORK exists and is not ours; remove it"
    rm -rf "$WORK"
fi
mkdir -p "$WORK"/{out,logs,state,tapes,small/sub,dar} && touch "$WORK/.ndmpd-pcap-work" || die "mkdir"
printf 'a\n' > "$WORK/small/a.txt"; printf 'b\n' > "$WORK/small/b.txt"
printf 'c\n' > "$WORK/small/sub/c.txt"
touch -d '2024-01-02 03:04:05 UTC' "$WORK/small" "$WORK/small/a.txt" "$WORK/small/b.txt" \
    "$WORK/small/sub" "$WORK/small/sub/c.txt"

TD_PID=""
cleanup() {
    [ -n "$TD_PID" ] && { kill -INT "$TD_PID" 2>/dev/null; wait "$TD_PID" 2>/dev/null; }
    "$ORACLE/ndmjob-refserver.sh" stop $PORT "$WORK/state" >/dev/null 2>&1
    [ "${KEEP:-0}" = 1 ] && echo "work dir kept: $WORK" || rm -rf "$WORK"
}
trap cleanup EXIT
"$ORACLE/ndmjob-refserver.sh" start $PORT "$WORK/state" || die "daemon did not start"

FAILS=0
fail() { echo "FAIL: $*"; FAILS=$((FAILS + 1)); }
cap() {   # cap NAME NCONN ndmjob-args...
    local name=$1 nconn=$2; shift 2
    local pcap="$WORK/out/$name.pcap" err="$WORK/logs/$name.tcpdump" n
    LOG="$WORK/logs/$name.log"
    tcpdump -i lo -s 0 -U -Z root -w "$pcap" "tcp port $PORT" 2> "$err" &
    TD_PID=$!
    for _ in $(seq 100); do grep -q 'listening on' "$err" 2>/dev/null && break; sleep 0.05; done
    timeout -k 5 "$TMO" "$NDMJOB" "$@" > "$LOG" 2>&1
    sleep 1
    kill -INT "$TD_PID"; wait "$TD_PID"; TD_PID=""
    n=$(tshark -r "$pcap" -T fields -e tcp.stream 2>/dev/null | sort -u | wc -l)
    [ "$n" = "$nconn" ] || fail "$name: $n TCP connections captured, expected $nconn"
    echo "   $name: $(stat -c %s "$pcap") bytes, $n connection(s)"
}
op_ok() { grep -q '"Operation ended OKAY"' "$1"; }

T=$WORK/tapes/tar; : > "$T"
cap query-v3 2 -q -D "$A" -T "$A"
grep -q 'NDMPv3' "$LOG" && ! grep -q '"err ' "$LOG" || fail "query-v3"
: > "$WORK/tapes/mover"
cap test-mover-v3 1 -o test-mover -vv -T "$A" -f "$WORK/tapes/mover"
# expected on the reference: its v3 mover refuses MOVER_SET_WINDOW in IDLE, so the suite stops
# at M-IDLE #6 after 10 steps (ndmpd passes all 100)
grep -q 'M-IDLE #6 -- Failed NDMP3_MOVER_SET_WINDOW' "$LOG" \
    && [ "$(grep -c -- ' -- Passed ' "$LOG")" -ge 5 ] || fail "test-mover-v3: unexpected result"
rm -f "$WORK"/tapes/*.lck "$WORK"/tapes/*.pos
cap backup-tar-v3 2 -c -v -D "$A" -T "$A" -B tar -f "$T" -C "$WORK/small" -I "$WORK/index"
op_ok "$LOG" || fail "backup-tar-v3"
rm -f "$WORK"/tapes/*.lck "$WORK"/tapes/*.pos
cap restore-dar-v3 2 -x -v -D "$A" -T "$A" -B tar -f "$T" -C "$WORK/dar" -J "$WORK/index" /sub/c.txt
op_ok "$LOG" && cmp "$WORK/small/sub/c.txt" "$WORK/dar/sub/c.txt" || fail "restore-dar-v3"

for f in $FIXTURES; do
    bad=$(tshark -r "$WORK/out/$f.pcap" -d tcp.port==$PORT,ndmp -Y '_ws.malformed || _ws.expert.severity >= error' 2>/dev/null)
    [ -z "$bad" ] || { echo "   $f: tshark flags: $bad" | head -3; }
done
if [ $FAILS -ne 0 ]; then
    echo "$FAILS failure(s); fixtures NOT copied (logs: $WORK/logs, KEEP=1 keeps them)"; exit 1
fi
for f in $FIXTURES; do cp "$WORK/out/$f.pcap" "$HERE/"; done
echo "copied: $FIXTURES"
