#!/bin/bash
# record.sh -- re-record the NDMP v4 packet-capture fixtures in this directory.
#
#   pcap-fixtures/record.sh            record everything (root, ~30 s)
#   pcap-fixtures/record.sh summary    only print per-fixture NDMP message counts
#                                      and run the tshark malformed check
#
# Both peers are programs we did not write: Amanda's /usr/lib/amanda/ndmjob as
# DMA, and the reference NDMP server "ndmjob -o daemon" started through the
# oracle's ndmjob-refserver.sh (auth ndmp/ndmp, butypes tar and dump).  All
# traffic is on loopback, NDMP control connections on 127.0.0.1:10000 only
# (the mover's data connection uses another port and is not captured).
#
# Environment:
#   ORACLE=../shared/oracle   oracle directory (relative to the repo root, or
#                             absolute); needs ndmjob-refserver.sh, ndmjob.conf,
#                             wrappers/
#   NDMJOB_TIMEOUT=120        seconds per ndmjob call
#   KEEP=1                    keep the work dir (/tmp/ndmpd-pcap: logs, trees,
#                             tapes, indexes) instead of deleting it
#
# Requires: root (tcpdump), amanda-common, tcpdump, tshark/editcap, port 10000
# free.  Nothing in the test suite runs this script; the captures are committed.
# The fixtures are copied into this directory only if every job behaved as
# expected.
set -u

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
ORACLE=${ORACLE:-../shared/oracle}
case "$ORACLE" in /*) ;; *) ORACLE=$ROOT/$ORACLE ;; esac
NDMJOB=/usr/lib/amanda/ndmjob
PORT=10000
HOST=127.0.0.1
TMO=${NDMJOB_TIMEOUT:-120}
WORK=/tmp/ndmpd-pcap          # fixed path: it appears inside the captures
A="$HOST:$PORT/4t,ndmp,ndmp"  # TEXT auth
AM="$HOST:$PORT/4m,ndmp,ndmp" # MD5 auth
ABAD="$HOST:$PORT/4t,ndmp,wrong-password"

FIXTURES="query-text query-md5 auth-fail test-tape test-mover test-data
backup-tar-fh backup-dump-fh restore-full restore-dar list-filehist backup-local robot"

die() { echo "ERROR: $*" >&2; exit 2; }
note() { echo "== $*"; }

# ---------------------------------------------------------------- summary --
# NDMPv4 message names (ndmp4.x) by code, for the counts.
msg_names() {
    cat <<'EOF'
0x00000100 CONFIG_GET_HOST_INFO
0x00000102 CONFIG_GET_CONNECTION_TYPE
0x00000103 CONFIG_GET_AUTH_ATTR
0x00000104 CONFIG_GET_BUTYPE_INFO
0x00000105 CONFIG_GET_FS_INFO
0x00000106 CONFIG_GET_TAPE_INFO
0x00000107 CONFIG_GET_SCSI_INFO
0x00000108 CONFIG_GET_SERVER_INFO
0x00000200 SCSI_OPEN
0x00000201 SCSI_CLOSE
0x00000206 SCSI_EXECUTE_CDB
0x00000300 TAPE_OPEN
0x00000301 TAPE_CLOSE
0x00000302 TAPE_GET_STATE
0x00000303 TAPE_MTIO
0x00000304 TAPE_WRITE
0x00000305 TAPE_READ
0x00000400 DATA_GET_STATE
0x00000401 DATA_START_BACKUP
0x00000402 DATA_START_RECOVER
0x00000403 DATA_ABORT
0x00000404 DATA_GET_ENV
0x00000407 DATA_STOP
0x00000409 DATA_LISTEN
0x0000040a DATA_CONNECT
0x0000040b DATA_START_RECOVER_FILEHIST
0x00000501 NOTIFY_DATA_HALTED
0x00000502 NOTIFY_CONNECTION_STATUS
0x00000503 NOTIFY_MOVER_HALTED
0x00000504 NOTIFY_MOVER_PAUSED
0x00000505 NOTIFY_DATA_READ
0x00000602 LOG_FILE
0x00000603 LOG_MESSAGE
0x00000703 FH_ADD_FILE
0x00000704 FH_ADD_DIR
0x00000705 FH_ADD_NODE
0x00000900 CONNECT_OPEN
0x00000901 CONNECT_CLIENT_AUTH
0x00000902 CONNECT_CLOSE
0x00000903 CONNECT_SERVER_AUTH
0x00000a00 MOVER_GET_STATE
0x00000a01 MOVER_LISTEN
0x00000a02 MOVER_CONTINUE
0x00000a03 MOVER_ABORT
0x00000a04 MOVER_STOP
0x00000a05 MOVER_SET_WINDOW
0x00000a06 MOVER_READ
0x00000a07 MOVER_CLOSE
0x00000a08 MOVER_SET_RECORD_SIZE
0x00000a09 MOVER_CONNECT
EOF
}

# counts FILE -> "NAME request/reply" lines ("NAME" alone for notifications,
# which are requests without replies in NDMP)
counts() {
    tshark -r "$1" -d tcp.port==$PORT,ndmp -T fields -e ndmp.msg -e ndmp.msg_type 2>/dev/null |
    awk -F'\t' -v names=<(msg_names) '
        BEGIN { while ((getline l < names) > 0) { split(l, a, " "); nm[tolower(a[1])] = a[2] } }
        $1 != "" { n = split($1, m, ","); split($2, t, ",")
                   for (i = 1; i <= n; i++) { k = tolower(m[i]); name = (k in nm) ? nm[k] : k
                       if (t[i] == 0) req[name]++; else rep[name]++; seen[name] = 1; tot++ } }
        END { for (s in seen) printf "%s %d/%d\n", s, req[s], rep[s] | "sort"; close("sort")
              printf "TOTAL %d\n", tot }'
}

malformed() {  # frames tshark flags as malformed or expert severity >= error
    tshark -r "$1" -d tcp.port==$PORT,ndmp -Y '_ws.malformed || _ws.expert.severity >= error' 2>/dev/null
}

summary() {   # summary DIR
    local d=$1 f bad
    command -v tshark >/dev/null || die "tshark not found"
    for f in $FIXTURES; do
        [ -f "$d/$f.pcap" ] || { echo "$f.pcap: missing"; continue; }
        echo "### $f.pcap ($(stat -c %s "$d/$f.pcap") bytes, $(capinfos -c -M "$d/$f.pcap" 2>/dev/null | awk -F': *' '/Number of packets/{print $2}') frames; counts = requests/replies)"
        counts "$d/$f.pcap" | sed 's/^/    /'
        bad=$(malformed "$d/$f.pcap")
        [ -n "$bad" ] && { echo "    MALFORMED/ERROR frames:"; echo "$bad" | sed 's/^/      /'; }
        local mf
        mf=$(tshark -r "$d/$f.pcap" -d tcp.port==$PORT,ndmp -Y 'ndmp.fragment.count > 1' \
               -T fields -e frame.number -e ndmp.msg -e ndmp.fragment.count -e ndmp.reassembled.length 2>/dev/null)
        [ -n "$mf" ] && echo "$mf" | awk '{print "    multi-fragment record: frame " $1 ", msg " $2 ", " $3 " fragments, " $4 " bytes"}'
    done
    if [ -f "$d/query-md5.pcapng" ]; then
        echo "### query-md5.pcapng ($(stat -c %s "$d/query-md5.pcapng") bytes)"
        counts "$d/query-md5.pcapng" | sed 's/^/    /'
    fi
}

if [ "${1:-}" = summary ]; then summary "$HERE"; exit 0; fi

# --------------------------------------------------------------- recording --
[ "$(id -u)" = 0 ] || die "must run as root (tcpdump)"
[ -x "$NDMJOB" ] || die "$NDMJOB not found (apt-get install amanda-common)"
for t in tcpdump tshark editcap timeout diff cmp; do command -v $t >/dev/null || die "$t not found"; done
[ -x "$ORACLE/ndmjob-refserver.sh" ] || die "no oracle at $ORACLE (set ORACLE=)"
(exec 3<>"/dev/tcp/$HOST/$PORT") 2>/dev/null && die "port $PORT already in use"
if [ -e "$WORK" ]; then
    [ -f "$WORK/.ndmpd-pcap-work" ] || die "$WORK exists and is not ours; remove it"
    rm -rf "$WORK"
fi
mkdir -p "$WORK"/{out,logs,state,bin,tapes} && touch "$WORK/.ndmpd-pcap-work" || die "mkdir $WORK"

TD_PID=""
DAEMON_UP=0
cleanup() {
    if [ -n "$TD_PID" ]; then kill -INT "$TD_PID" 2>/dev/null; wait "$TD_PID" 2>/dev/null; fi
    [ $DAEMON_UP = 1 ] && "$ORACLE/ndmjob-refserver.sh" stop $PORT "$WORK/state" >/dev/null
    rm -f "$WORK"/tapes/*.lck
    if [ "${KEEP:-0}" = 1 ]; then echo "work dir kept: $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

FAILS=0
fail() { echo "FAIL: $*"; FAILS=$((FAILS + 1)); }

# The oracle's wrappers/wrap_dump should be a symlink to wrap_tar; if it came
# out of the checkout as a plain non-executable file, the daemon's "sh -c
# wrap_dump" would fail and every dump backup would be EMPTY (the agent does
# not check).  Put a working symlink on the daemon's PATH after the oracle's
# wrappers dir (sh skips the non-executable entry and finds this one).
WRAPFIX=""
if [ ! -x "$ORACLE/wrappers/wrap_dump" ]; then
    ln -s "$ORACLE/wrappers/wrap_tar" "$WORK/bin/wrap_dump"
    WRAPFIX="$WORK/bin:"
    note "oracle wrappers/wrap_dump is not executable: using $WORK/bin/wrap_dump -> wrap_tar"
fi
PATH="$WRAPFIX$PATH" NDMJOB_DEBUG=0 "$ORACLE/ndmjob-refserver.sh" start $PORT "$WORK/state" || die "daemon did not start"
DAEMON_UP=1

# make_tree DIR: deterministic source tree, 214 entries: 204 regular files
# (mostly small; 120 with 63-97 char names), 1 symlink, 8 directories below
# the root (3 levels deep, one empty), an empty file, names with a space and
# UTF-8, a 72 KB file for the DAR restore; all mtimes 2024-01-02 03:04:05 UTC.
make_tree() {
    local d=$1 i long
    mkdir -p "$d/docs" "$d/data/raw" "$d/alpha/beta/gamma" "$d/alpha/delta" "$d/empty-dir"
    long=this-is-a-deliberately-long-file-name-to-make-ndmp-file-history-big
    for i in $(seq -w 1 60); do printf 'short file %s\n' "$i" > "$d/f$i.txt"; done
    for i in $(seq -w 1 50); do printf 'long name file %s\n' "$i" > "$d/docs/$long-$i.txt"; done
    for i in $(seq -w 1 40); do
        head -c $((10#$i * 37)) /dev/zero | tr '\0' x \
            > "$d/data/raw/sample-record-with-a-fairly-long-descriptive-name-number-$i.dat"
    done
    for i in $(seq -w 1 30); do
        printf 'nested %s\n' "$i" > "$d/alpha/beta/gamma/$long-and-even-longer-suffix-$i.log"
    done
    for i in $(seq -w 1 20); do printf 'delta %s\n' "$i" > "$d/alpha/delta/d$i"; done
    : > "$d/alpha/empty-file"
    printf 'space\n' > "$d/name with spaces.txt"
    printf 'utf8\n' > "$d/caf$(printf '\303\251').txt"
    for i in $(seq 1 1500); do printf 'line %05d of the big file for the DAR restore\n' "$i"; done \
        > "$d/alpha/beta/big-file-for-dar.txt"
    ln -s ../f01.txt "$d/alpha/link-to-f01"
    chmod 600 "$d/f01.txt"; chmod 750 "$d/alpha/delta"
    find "$d" -depth -exec touch -h -d '2024-01-02 03:04:05 UTC' {} +
}
make_small_tree() {
    local d=$1
    mkdir -p "$d/sub"
    printf 'one\n' > "$d/a.txt"; printf 'two\n' > "$d/b.txt"; printf 'three\n' > "$d/sub/c.txt"
    find "$d" -depth -exec touch -h -d '2024-01-02 03:04:05 UTC' {} +
}
SRC=$WORK/src; SMALL=$WORK/small
make_tree "$SRC"; make_small_tree "$SMALL"

blank_tape() { : > "$1"; rm -f "$1.lck" "$1.pos"; }
clean_tape() { rm -f "$1.lck" "$1.pos"; }   # keep contents, drop side files

# cap NAME NCONN ndmjob-args... : capture one DMA run into $WORK/out/NAME.pcap
cap() {
    local name=$1 nconn=$2; shift 2
    local pcap="$WORK/out/$name.pcap" log="$WORK/logs/$name.log" err="$WORK/logs/$name.tcpdump" i rc n
    tcpdump -i lo -s 0 -U -Z root -w "$pcap" "tcp port $PORT" 2> "$err" &
    TD_PID=$!
    for i in $(seq 100); do grep -q 'listening on' "$err" 2>/dev/null && break; sleep 0.05; done
    grep -q 'listening on' "$err" || { fail "$name: tcpdump not ready"; cat "$err"; }
    timeout -k 5 "$TMO" "$NDMJOB" "$@" > "$log" 2>&1
    rc=$?
    [ $rc -eq 124 ] || [ $rc -eq 137 ] && fail "$name: ndmjob timed out"
    sleep 1
    kill -INT "$TD_PID"; wait "$TD_PID"; TD_PID=""
    grep -q '^0 packets dropped by kernel' "$err" || fail "$name: tcpdump dropped packets"
    n=$(tshark -r "$pcap" -T fields -e tcp.stream 2>/dev/null | sort -u | wc -l)
    [ "$n" = "$nconn" ] || fail "$name: $n TCP connections captured, expected $nconn"
    echo "   $name: ndmjob exit $rc, $(stat -c %s "$pcap") bytes, $n connection(s)"
    LOG=$log
}
op_ok() { grep -q '"Operation ended OKAY"' "$1" && grep -q '^SESS "Operation complete"$' "$1"; }
tree_list() {   # type, mode, size, link target, path
    (cd "$1" && find . -mindepth 1 \( -type f -printf '%y %m %s %p\n' \) -o \
        \( -type l -printf '%y %m - %p -> %l\n' \) -o \( ! -type f ! -type l -printf '%y %m - %p\n' \) ) | LC_ALL=C sort
}
same_tree() { diff -r --no-dereference "$1" "$2" && diff <(tree_list "$1") <(tree_list "$2"); }

T=$WORK/tapes
note "1-3 query / auth"
cap query-text 2 -q -D "$A" -T "$A"
grep -q '"Data Agent .* NDMPv4' "$LOG" && grep -q '"Tape Agent .* NDMPv4' "$LOG" && ! grep -q '"err ' "$LOG" \
    || fail "query-text"
cap query-md5 2 -q -D "$AM" -T "$AM"
grep -q '"Data Agent .* NDMPv4' "$LOG" && grep -q '"Tape Agent .* NDMPv4' "$LOG" && ! grep -q '"err ' "$LOG" \
    || fail "query-md5"
cap auth-fail 2 -q -D "$ABAD" -T "$ABAD"
[ "$(grep -c '"err connect-auth-text-failed"' "$LOG")" = 2 ] || fail "auth-fail: expected two auth failures"

note "4 conformance suites"
blank_tape "$T/test-tape"
cap test-tape 1 -o test-tape -vv -T "$A" -f "$T/test-tape"
# expected on the reference: 17 passed, then T-BW #6 fails inside the DMA (zero-length TAPE_WRITE never sent)
[ "$(grep -c -- ' -- Passed ' "$LOG")" = 17 ] && grep -q 'T-BW #6 -- Failed' "$LOG" \
    && grep -q 'ERR-AGENT NDMP4_TAPE_WRITE  NDMP4_NOT_SUPPORTED_ERR' "$LOG" || fail "test-tape: unexpected result"
clean_tape "$T/test-tape"                        # the DMA quits with the tape open: stale .lck
blank_tape "$T/test-mover"
cap test-mover 1 -o test-mover -vv -T "$A" -f "$T/test-mover"
grep -q 'FINAL .* Passed' "$LOG" && ! grep -q -E ' -- (Failed|Almost) ' "$LOG" || fail "test-mover"
clean_tape "$T/test-mover"
cap test-data 1 -o test-data -vv -D "$A"
# expected on the reference: 5 passed, D-LISTEN #3 fails (DATA_LISTEN -> NOT_SUPPORTED)
[ "$(grep -c -- ' -- Passed ' "$LOG")" = 5 ] && grep -q 'D-LISTEN #3 -- Failed' "$LOG" || fail "test-data: unexpected result"

note "5-6 backups with file history (two connections, NDMP_ADDR_TCP)"
blank_tape "$T/tar"
cap backup-tar-fh 2 -c -v -D "$A" -T "$A" -B tar -f "$T/tar" -C "$SRC" -I "$WORK/index-tar"
op_ok "$LOG" && grep -q '^DHf /alpha/beta/big-file-for-dar.txt ' "$WORK/index-tar" || fail "backup-tar-fh"
blank_tape "$T/dump"
cap backup-dump-fh 2 -c -v -D "$A" -T "$A" -B dump -f "$T/dump" -C "$SRC" -I "$WORK/index-dump"
op_ok "$LOG" && grep -q '^DHr ' "$WORK/index-dump" && grep -q '^DHn ' "$WORK/index-dump" || fail "backup-dump-fh"

note "7-9 restores and list of the tar backup"
clean_tape "$T/tar"; mkdir -p "$WORK/restore-full"
cap restore-full 2 -x -v -D "$A" -T "$A" -B tar -f "$T/tar" -C "$WORK/restore-full"
op_ok "$LOG" && same_tree "$SRC" "$WORK/restore-full" > "$WORK/logs/restore-full.diff" 2>&1 \
    || { fail "restore-full"; head "$WORK/logs/restore-full.diff"; }
clean_tape "$T/tar"; mkdir -p "$WORK/restore-dar"
DARF=/alpha/beta/big-file-for-dar.txt
cap restore-dar 2 -x -v -D "$A" -T "$A" -B tar -f "$T/tar" -C "$WORK/restore-dar" -J "$WORK/index-tar" "$DARF"
op_ok "$LOG" && ! grep -q 'Missing index entries' "$LOG" && cmp "$SRC$DARF" "$WORK/restore-dar$DARF" \
    && [ "$(cd "$WORK/restore-dar" && find . -type f)" = ".$DARF" ] || fail "restore-dar"
clean_tape "$T/tar"
cap list-filehist 2 -t -v -D "$A" -T "$A" -B tar -f "$T/tar" -I "$WORK/toc-tar"
op_ok "$LOG" && [ "$(grep -c '^DHf ' "$WORK/toc-tar")" = "$(grep -c '^DHf ' "$WORK/index-tar")" ] || fail "list-filehist"
clean_tape "$T/tar"

note "10 backup over one connection (NDMP_ADDR_LOCAL)"
blank_tape "$T/local"
cap backup-local 1 -c -v -D "$A" -B tar -f "$T/local" -C "$SMALL" -I "$WORK/index-local"
op_ok "$LOG" && [ "$(grep -c '^DHf ' "$WORK/index-local")" = 5 ] || fail "backup-local"
clean_tape "$T/local"

note "11 robot (the reference's robot simulator: SCSI_OPEN of a directory)"
mkdir -p "$WORK/robot"
cap robot 1 -o load=1025 -v -T "$A" -r "$WORK/robot"
grep -q 'Commanding robot to load slot @1025 into drive @128' "$LOG" \
    && grep -q '^SESS "Operation complete"$' "$LOG" || fail "robot"

note "12 pcapng copy"
editcap -F pcapng "$WORK/out/query-md5.pcap" "$WORK/out/query-md5.pcapng" || fail "editcap"

note "verify (tshark)"
# Known: the reference answers DATA_LISTEN (test-data, D-LISTEN #3) with a
# header-only reply (header error NOT_SUPPORTED_ERR, no body), which Wireshark
# 4.0 flags as malformed.  Anything else is a failure.
KNOWN_MALFORMED='NOT_SUPPORTED_ERR DATA_LISTEN Reply \[Malformed Packet\]'
for f in $FIXTURES; do
    bad=$(malformed "$WORK/out/$f.pcap")
    if [ "$f" = test-data ] && [ "$(echo "$bad" | grep -c -E "$KNOWN_MALFORMED")" = 1 ]; then
        echo "   test-data: expected header-only DATA_LISTEN reply flagged by tshark: $(echo "$bad" | grep -E "$KNOWN_MALFORMED" | awk '{print "frame " $1}')"
        bad=$(echo "$bad" | grep -v -E "$KNOWN_MALFORMED")
    fi
    [ -z "$bad" ] || { fail "$f: tshark reports malformed/error frames"; echo "$bad" | head; }
done
[ -n "$(tshark -r "$WORK/out/backup-tar-fh.pcap" -d tcp.port==$PORT,ndmp -Y 'ndmp.fragment.count > 1' 2>/dev/null)" ] \
    || fail "backup-tar-fh: no multi-fragment record"

if [ $FAILS -ne 0 ]; then
    echo "$FAILS failure(s); fixtures NOT copied (logs: $WORK/logs, KEEP=1 keeps them)"; exit 1
fi
for f in $FIXTURES; do cp "$WORK/out/$f.pcap" "$HERE/"; done
cp "$WORK/out/query-md5.pcapng" "$HERE/"
note "recorded $(date -u +%F) with: $("$NDMJOB" -v 2>/dev/null | tr -s ' \n' ' ')"
summary "$HERE"
echo "ALL OK"
