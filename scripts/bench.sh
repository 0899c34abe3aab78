#!/usr/bin/env bash
# Backup and restore throughput of ndmpd against the tools it replaces and against the
# machine's own limits, every comparison in one sitting, printed as one table.
#
# Trees (generated once, cached in $BENCH_DIR/trees):
#   bench : ../shared/oracle/gen-bench-tree.sh (4 x 208 MiB random files + 20,000 files of
#           1-20 KiB in 400 directories, ~1.09 GB); BENCH_TREE=DIR uses an existing copy
#   small : SMALL_FILES (200000) files of 1-8 KiB, 100 per directory (2,000 directories for
#           200,000); SMALL_FILES=0 leaves it out, SMALL_FILES=20000 is a quick run
# Per tree and round, in this order (so each pair is interleaved):
#   backup  : `ndmpd dma backup` (dump onto vtape0, tar onto vtape1, LOCAL, no history)
#             vs `tar cf FILE -C TREE .`
#   limits  : read the tree (`find | xargs cat > /dev/null`), write the same bytes
#             (`dd bs=1M` of /dev/zero into the work dir; again with `conv=fsync`, since a
#             backup ends with its cartridge synced; and with `conv=notrunc,fsync` over that
#             file, since a backup onto a used cartridge writes over its old records in place);
#             send the same bytes over loopback TCP from one process to another (the data
#             connection of a three-way backup, alone)
#   restore : `ndmpd dma restore` of the dump vs `tar xf` of the tar file vs the stock
#             `restore -r` and `restore -x` of the same dump image, each into a fresh directory
# Every restore is compared with its tree (`diff -r`, then type, mode, size and mtime of every
# name: to the microsecond for ndmpd, to the second for the stock tools); a difference fails
# the script. Page cache warm, no fsync in the runs (a sync before each restore), wall time;
# medians and min-max of ROUNDS. Each round reads the tree once untimed first, and each backup
# and `tar cf` starts after a sync and 2 s.
#   together: two `ndmpd dma backup` at once of the same tree (dump onto vtape0 and vtape1 of
#             one server), against one backup's time; and the three-way backup (`--tape-server`:
#             DATA on one server, the tape on a second over loopback TCP), against LOCAL; with
#             the CPU the servers used, and what two cores and the disk allow two at once
# HISTORY_FILES=N (opt-in, e.g. 1000000) adds a tree of N empty files (1,000 per directory)
# backed up with and without file history, dump (HIST=y: FH_ADD_DIR/FH_ADD_NODE) and tar (path
# history, FH_ADD_FILE), each by `ndmpd dma backup` on a server of its own, and by Amanda's
# `ndmjob -I` when installed; a second table gives wall time, the server's peak RSS (VmHWM)
# and the entries posted (counted by the DMA).
# BASE_NDMPD=PATH adds the restore of another ndmpd binary (a baseline) to the same rounds.
# Usage: scripts/bench.sh [ROUNDS=3]   (BENCH_DIR picks the file system; default target/bench)
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-3}
small_files=${SMALL_FILES:-200000}
history_files=${HISTORY_FILES:-0}
oracle=${ORACLE:-$PWD/../shared/oracle}
bin=${NDMPD:-}
if [ -z "$bin" ]; then
    cargo build --release -q
    bin=$PWD/target/release/ndmpd
fi
base=${BASE_NDMPD:-}
for t in tar restore python3 diff; do
    command -v "$t" > /dev/null || { echo "bench.sh: $t is not installed" >&2; exit 1; }
done
root=${BENCH_DIR:-$PWD/target/bench}
mkdir -p "$root/trees"
root=$(cd "$root" && pwd)
work=$(mktemp -d "$root/run.XXXXXX")
pids=()
mounted=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2> /dev/null || true; done
    for m in "${mounted[@]}"; do [ -n "$m" ] && umount "$m" 2> /dev/null || true; done
    rm -rf "$work"
}
trap cleanup EXIT

# --- trees -------------------------------------------------------------------------------
trees=()
if [ -n "${BENCH_TREE:-}" ]; then
    trees+=("bench=$(cd "$BENCH_TREE" && pwd)")
else
    t=$root/trees/bench
    if [ ! -e "$t.complete" ]; then
        [ -x "$oracle/gen-bench-tree.sh" ] || { echo "bench.sh: $oracle/gen-bench-tree.sh not found (ORACLE=DIR or BENCH_TREE=DIR)" >&2; exit 1; }
        rm -rf "$t"
        echo "generating the bench tree in $t ..." >&2
        "$oracle/gen-bench-tree.sh" "$t" >&2
        touch "$t.complete"
    fi
    trees+=("bench=$t")
fi
if [ "$small_files" -gt 0 ]; then
    t=$root/trees/small-$small_files
    if [ ! -e "$t.complete" ]; then
        rm -rf "$t"
        echo "generating $small_files small files in $t ..." >&2
        python3 - "$t" "$small_files" << 'PY'
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
        touch "$t.complete"
    fi
    trees+=("small=$t")
fi

hist_tree=
if [ "$history_files" -gt 0 ]; then
    hist_tree=$root/trees/hist-$history_files
    if [ ! -e "$hist_tree.complete" ]; then
        rm -rf "$hist_tree"
        echo "generating $history_files empty files in $hist_tree ..." >&2
        python3 - "$hist_tree" "$history_files" << 'PY'
import os, sys
root, n = sys.argv[1], int(sys.argv[2])
os.makedirs(root)
for i in range(n):
    if i % 1000 == 0:
        d = os.path.join(root, "d%04d" % (i // 1000))
        os.mkdir(d)
    os.close(os.open(os.path.join(d, "f%07d" % i), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644))
PY
        touch "$hist_tree.complete"
    fi
fi

# --- servers -----------------------------------------------------------------------------
printf 'bench-pw' > "$work/pw"
mkdir -p "$work/out"
port=$((20000 + RANDOM % 10000))
start_server() { # binary port datadir
    local exports=()
    for e in "${trees[@]}"; do exports+=(--export "${e#*=}"); done
    "$1" serve --listen "127.0.0.1:$2" --data-dir "$3" "${exports[@]}" --export "$work/out" \
        --user ndmp --password-file "$work/pw" > "$3.log" 2>&1 &
    pids+=($!)
}
start_server "$bin" "$port" "$work/data"
# the tape server of the three-way backups
start_server "$bin" $((port + 2)) "$work/data-tape"
[ -n "$base" ] && start_server "$base" $((port + 1)) "$work/data-base"
sleep 1

now() { date +%s.%N; }
# CPU ticks (user + sys) of the two ndmpd servers of the backups, together
server_ticks() { cat "/proc/${pids[0]}/stat" "/proc/${pids[1]}/stat" | awk '{ t += $14 + $15 } END { print t }'; }
declare -A times ticks
timed() { # key command...   (stdout and stderr to $work/cmd.log; a failure stops the script)
    local key=$1 t0 t1 c0 c1
    shift
    c0=$(server_ticks)
    t0=$(now)
    if ! "$@" > "$work/cmd.log" 2>&1; then
        echo "bench.sh: $key failed: $*" >&2
        tail -20 "$work/cmd.log" >&2
        exit 1
    fi
    t1=$(now)
    c1=$(server_ticks)
    times[$key]+="$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", b - a }') "
    ticks[$key]+="$((c1 - c0)) "
}
# the bytes of a tree sent over loopback TCP from one process to another in 1 MiB sends, and
# nothing else: what a three-way backup's data connection costs on this machine by itself
cat > "$work/tcp.py" << 'PY'
import os, socket, sys
n, chunk = int(sys.argv[1]), 1 << 20
listener = socket.socket()
listener.bind(("127.0.0.1", 0))
listener.listen(1)
if os.fork() == 0:
    s = socket.create_connection(listener.getsockname())
    buf, sent = memoryview(bytearray(chunk)), 0
    while sent < n:
        s.sendall(buf[: min(chunk, n - sent)])
        sent += min(chunk, n - sent)
    s.close()
    os._exit(0)
conn, _ = listener.accept()
buf, got = bytearray(chunk), 0
while True:
    k = conn.recv_into(buf)
    if k == 0:
        break
    got += k
os.wait()
sys.exit(0 if got == n else 1)
PY
# each backup starts its cartridge afresh (`--overwrite`: `dma backup` appends by default, and
# the stock restores read tape file 0); the catalog is a scratch one
export NDMPD_CATALOG="$work/catalog.db"
dma() { # port subcommand args...
    local p=$1
    shift
    "$bin" dma "$@" --server "127.0.0.1:$p" --password-file "$work/pw"
}
# name: type, mode, size (not of directories) and mtime (seconds when $2 is "s", else to the
# microsecond, what a dump image carries)
stamp() {
    (cd "$1" && find . -mindepth 1 ! -name restoresymtable -printf '%p %y %m %s %T@\n') |
        awk -v s="$2" '{ if ($2 == "d") $4 = "-"
            if (s == "s") sub(/\.[0-9]*$/, "", $5); else $5 = substr($5, 1, length($5) - 4)
            print }' | sort
}
verify() { # key tree dest precision
    (cd "$3" && rm -f restoresymtable)
    if ! diff -r "$2" "$3" > "$work/diff.log" 2>&1; then
        echo "bench.sh: $1 restored a different tree:" >&2
        head -10 "$work/diff.log" >&2
        exit 1
    fi
    if ! diff <(stamp "$2" "$4") <(stamp "$3" "$4") > "$work/diff.log"; then
        echo "bench.sh: $1 restored different types, modes, sizes or times:" >&2
        grep "^<" "$work/diff.log" | head -5 >&2; grep "^>" "$work/diff.log" | head -5 >&2
        exit 1
    fi
}
# Each restore goes into a new directory, after a sync so that no run pays for the write-back
# of the one before. As root (FRESH_FS=0 turns it off), that directory is a file system made
# for this one restore (ext4 without a journal like the work disk, inode tables written by
# mkfs, in a loop-mounted image on the same disk), unmounted after the comparison: ext4 without
# a journal skips inodes freed in the last 5 s (300 s while their inode table block is dirty)
# when it allocates new ones, and after a round's `rm -rf` that scan, not the tool, set the
# pace (40% of a restore's kernel samples; tar xf 1.1-4.8 s on the old directory, 1.1-2.0 s on
# a fresh file system). Without root the directories are deleted together at the end of the
# round, then the file system is synced and 6 s pass, which lessens that scan.
n_out=0
fresh_fs=0
if [ "${FRESH_FS:-1}" = 1 ] && [ "$(id -u)" = 0 ] && command -v mkfs.ext4 > /dev/null; then
    fresh_fs=1
fi
fresh() {
    n_out=$((n_out + 1))
    dest=$work/out/r$n_out
    mkdir "$dest"
    if [ "$fresh_fs" = 1 ]; then
        local img=$work/img$n_out size=$(((bytes * 2 >> 20) + 1024))
        truncate -s "${size}M" "$img"
        mkfs.ext4 -q -F -O ^has_journal -N $((files * 2 + 65536)) \
            -E lazy_itable_init=0,lazy_journal_init=0,nodiscard "$img"
        mount -o loop "$img" "$dest"
        mounted+=("$dest")
        rmdir "$dest/lost+found"
    fi
    sync -f "$work"
    # the disk goes on writing back (and discarding) for seconds after sync returns: a
    # restore started at once took 0.7-3.4 s for the same work, one started 5 s later 0.7-0.9
    [ "$fresh_fs" = 1 ] && sleep 5
    return 0
}
# after a restore's comparison: its file system goes
unfresh() {
    if [ "$fresh_fs" = 1 ]; then
        umount "$dest"
        rm -f "$work/img$n_out"
        mounted=("${mounted[@]/$dest/}")
    fi
}
settle() { rm -rf "$work"/out/r* "$work/tree.tar" "$work/tree.dump"; sync -f "$work"; sleep 6; }
restore_stock() ( # flags image
    cd "$dest" && restore $1 -f "$2"
)

restore_one() { # kind  (uses $name, $tree, $port)
    fresh
    case $1 in
        ndmpd)
            timed "$name restore ndmpd" dma "$port" restore "$dest"
            verify "ndmpd restore" "$tree" "$dest" us ;;
        base)
            timed "$name restore base" dma $((port + 1)) restore "$dest"
            verify "base restore" "$tree" "$dest" us ;;
        "tar xf")
            timed "$name tar xf" tar xf "$work/tree.tar" -C "$dest"
            verify "tar xf" "$tree" "$dest" s ;;
        "restore -r")
            timed "$name restore -r" restore_stock "-r -y" "$work/tree.dump"
            verify "restore -r" "$tree" "$dest" s ;;
        "restore -x")
            timed "$name restore -x" restore_stock "-x -a -o -y" "$work/tree.dump"
            verify "restore -x" "$tree" "$dest" s ;;
    esac
    unfresh
}

# what the run before left in the page cache goes to disk first, then a pause
quiet() {
    sync -f "$work"
    sleep 2
}
# two backups of one tree at once onto the two drives, each with its own catalog
two_backups() {
    local p0 p1
    dma "$port" backup --overwrite --no-history --catalog "$work/two0.db" "$1" > "$work/two0.log" 2>&1 &
    p0=$!
    dma "$port" backup --overwrite --no-history --catalog "$work/two1.db" --tape vtape1 "$1" \
        > "$work/two1.log" 2>&1 &
    p1=$!
    wait "$p0" && wait "$p1"
}

# one history backup (kind: dump or tar; hist: y or n; dma: ndmpd, ndmjob, or ndmpd-own-core:
# the server held to CPU 0 and our DMA to CPU 1, standing in for a DMA on a host of its own, as far
# as two vCPUs that may share a physical core can) on a server
# of its own, so that its peak RSS is this run's: adds the wall time to times[], the server's
# VmHWM (KiB) to hwm[] and the entries the DMA counted to entries[]
declare -A hwm entries
hist_backup() { # kind hist dma
    local key="hist $3 $1 HIST=$2" hp=$((port + 3)) d=$work/hist-data t0 t1 n spid
    local spin=() dpin=()
    [ "$3" = ndmpd-own-core ] && spin=(taskset -c 0) && dpin=(taskset -c 1)
    rm -rf "$d" "$work/index"
    "${spin[@]}" "$bin" serve --listen "127.0.0.1:$hp" --data-dir "$d" --export "$hist_tree" \
        --user ndmp --password-file "$work/pw" > "$work/hist.log" 2>&1 &
    spid=$!
    for _ in $(seq 100); do grep -q listening "$work/hist.log" && break; sleep 0.1; done
    local tape=vtape0
    [ "$1" = tar ] && tape=vtape1
    t0=$(now)
    if [ "$3" != ndmjob ]; then
        local h=()
        [ "$2" = n ] && h=(--no-history)
        "${dpin[@]}" "$bin" dma backup --overwrite "${h[@]}" --butype "$1" --tape "$tape" \
            "$hist_tree" --server "127.0.0.1:$hp" --password-file "$work/pw" \
            > "$work/cmd.log" 2>&1 || { tail "$work/cmd.log" >&2; kill "$spid"; exit 1; }
        n=$(sed -n 's/.*, \([0-9]*\) history entries$/\1/p' "$work/cmd.log")
    else
        local i=()
        [ "$2" = y ] && i=(-I "$work/index")
        /usr/lib/amanda/ndmjob -c -D "127.0.0.1:$hp/4t,ndmp,$(cat "$work/pw")" -B "$1" -b 128 \
            -f "$tape" -C "$hist_tree" "${i[@]}" > "$work/cmd.log" 2>&1
        grep -q "Operation ended OKAY" "$work/cmd.log" || { tail "$work/cmd.log" >&2; kill "$spid"; exit 1; }
        n=0
        [ "$2" = y ] && n=$(grep -c '^DH[fdn] ' "$work/index")
    fi
    t1=$(now)
    times[$key]+="$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", b - a }') "
    hwm[$key]+="$(awk '/^VmHWM/ { print $2 }' "/proc/$spid/status") "
    entries[$key]=$n
    kill "$spid"
    wait "$spid" 2> /dev/null || true
}
hist_dmas=(ndmpd)
[ -x /usr/lib/amanda/ndmjob ] && hist_dmas+=(ndmjob)
[ "$(nproc)" -ge 2 ] && command -v taskset > /dev/null && hist_dmas+=(ndmpd-own-core)

sync -f "$work"
sleep 6
for r in $(seq "$rounds"); do
    for e in "${trees[@]}"; do
        name=${e%%=*} tree=${e#*=}
        bytes=$(du -sb --apparent-size "$tree" | cut -f1)
        files=$(find "$tree" | wc -l)
        mib=$(((bytes >> 20) + 1))
        # page cache warm, as the figures say: the first backup of a round must not be the one
        # that reads the tree back from disk after the other tree's round pushed it out
        find "$tree" -type f -print0 | xargs -0 cat > /dev/null
        # each backup and `tar cf` starts with nothing left to write back from the one before
        quiet
        timed "$name backup dump" dma "$port" backup --overwrite --no-history "$tree"
        quiet
        timed "$name tar cf" tar cf "$work/tree.tar" -C "$tree" .
        quiet
        timed "$name backup tar" dma "$port" backup --overwrite --no-history --butype tar --tape vtape1 "$tree"
        quiet
        timed "$name 2 backups at once" two_backups "$tree"
        quiet
        timed "$name backup 3-way TCP" dma "$port" backup --overwrite --no-history \
            --tape-server "127.0.0.1:$((port + 2))" "$tree"
        quiet
        timed "$name read the tree" sh -c "find '$tree' -type f -print0 | xargs -0 cat > /dev/null"
        timed "$name write the bytes" dd if=/dev/zero of="$work/dd.out" bs=1M count="$mib"
        rm -f "$work/dd.out"
        # a backup ends with the cartridge synced (its data on disk before the DMA hears
        # "done"), so its fair limit is the same bytes written and synced
        sync -f "$work"
        timed "$name write the bytes, synced" dd if=/dev/zero of="$work/dd.out" bs=1M count="$mib" conv=fsync
        # a backup onto a used cartridge writes over its old records in place: the same bytes
        # over the file just written, synced
        sync -f "$work"
        timed "$name write the bytes in place, synced" dd if=/dev/zero of="$work/dd.out" bs=1M count="$mib" conv=notrunc,fsync
        rm -f "$work/dd.out"
        timed "$name send the bytes over loopback TCP" python3 "$work/tcp.py" "$bytes"
        "$bin" vtape cat VT0001 --data-dir "$work/data" > "$work/tree.dump"
        if [ -n "$base" ]; then
            dma $((port + 1)) backup --no-history "$tree" > /dev/null 2>&1
        fi
        kinds=(ndmpd "tar xf" "restore -r" "restore -x")
        [ -n "$base" ] && kinds+=(base)
        # every other round in the opposite order, so no tool always runs first
        if [ $((r % 2)) = 0 ]; then
            for ((i = ${#kinds[@]} - 1; i >= 0; i--)); do restore_one "${kinds[i]}"; done
        else
            for k in "${kinds[@]}"; do restore_one "$k"; done
        fi
        files=$(find "$tree" -type f | wc -l)
        echo "${name}_bytes=$bytes ${name}_files=$files" > "$work/$name.size"
        settle
    done
    if [ -n "$hist_tree" ]; then
        for dmap in "${hist_dmas[@]}"; do
            for kind in dump tar; do
                # every other round HIST=y first
                if [ $((r % 2)) = 0 ]; then order="y n"; else order="n y"; fi
                for h in $order; do hist_backup "$kind" "$h" "$dmap"; done
            done
        done
    fi
    echo "round $r of $rounds done" >&2
done

# --- the table ---------------------------------------------------------------------------
stats() { # "t1 t2 ..." -> "median min max"
    printf '%s\n' $1 | sort -n | awk '{ a[NR] = $1 } END { printf "%s %s %s", a[int((NR + 1) / 2)], a[1], a[NR] }'
}
med() { stats "${times[$1]}" | cut -d' ' -f1; }
# the cores a run kept busy in ndmpd's servers: median ticks over median wall time
cores() { awk -v t="$(stats "${ticks[$1]}" | cut -d' ' -f1)" -v s="$(med "$1")" -v hz="$(getconf CLK_TCK)" 'BEGIN { printf "%.2f", t / hz / s }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2fx", b / a }'; }
fs=$(df -T "$work" | awk 'NR == 2 { print $2 }')
cpu=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')
echo
echo "machine: $(nproc) CPUs ($cpu), Linux $(uname -r), $fs file system under $root," \
    "load average $(cut -d' ' -f1-3 /proc/loadavg) at the end; $rounds rounds, medians"
echo
printf '| tree | what | median s | min-max s | MB/s | files/s | ratio |\n|---|---|---|---|---|---|---|\n'
for e in "${trees[@]}"; do
    name=${e%%=*}
    # shellcheck disable=SC1090
    . "$work/$name.size"
    b=${name}_bytes f=${name}_files
    lim=$(awk -v a="$(med "$name read the tree")" -v b="$(med "$name write the bytes")" 'BEGIN { print (a > b) ? a : b }')
    slim=$(awk -v a="$(med "$name read the tree")" -v b="$(med "$name write the bytes, synced")" 'BEGIN { print (a > b) ? a : b }')
    plim=$(awk -v a="$(med "$name read the tree")" -v b="$(med "$name write the bytes in place, synced")" 'BEGIN { print (a > b) ? a : b }')
    for k in "backup dump" "backup tar" "2 backups at once" "backup 3-way TCP" "tar cf" \
             "read the tree" "write the bytes" "write the bytes, synced" \
             "write the bytes in place, synced" "send the bytes over loopback TCP" \
             "restore ndmpd" "restore base" "tar xf" "restore -r" "restore -x"; do
        key="$name $k"
        [ -n "${times[$key]:-}" ] || continue
        read -r m lo hi <<< "$(stats "${times[$key]}")"
        case $k in
            "backup dump" | "backup tar") note="$(ratio "$m" "$(med "$name tar cf")") tar cf; this/limit $(ratio "$lim" "$m" | tr -d x), synced $(ratio "$slim" "$m" | tr -d x), in place $(ratio "$plim" "$m" | tr -d x); server $(cores "$name $k") cores busy" ;;
            "restore ndmpd" | "restore base")
                note="$(ratio "$m" "$(med "$name tar xf")") tar xf, $(ratio "$m" "$(med "$name restore -x")") restore -x, $(ratio "$m" "$(med "$name restore -r")") restore -r, this/backup $(ratio "$(med "$name backup dump")" "$m" | tr -d x)" ;;
            "2 backups at once")
                # two backups need twice one backup's CPU and twice its bytes written: what
                # the cores and the disk allow at best, as multiples of one backup's throughput
                one=$(med "$name backup dump")
                note="together $(ratio "$m" "$(awk -v a="$one" 'BEGIN { print 2 * a }')") one backup's throughput (goal 1.6x); at most $(awk -v c="$(cores "$name backup dump")" -v n="$(nproc)" 'BEGIN { r = n / c; printf "%.2fx", (r > 2 ? 2 : r) }') on $(nproc) cores (one backup keeps $(cores "$name backup dump") busy), $(awk -v a="$one" -v w="$(med "$name write the bytes in place, synced")" 'BEGIN { r = a / w; printf "%.2fx", (r > 2 ? 2 : r) }') on the disk (twice the bytes written in place)" ;;
            "backup 3-way TCP") note="$(ratio "$m" "$(med "$name backup dump")" | tr -d x) of LOCAL's throughput (goal 0.90); sending the bytes over loopback TCP alone: $(ratio "$(med "$name send the bytes over loopback TCP")" "$(med "$name backup dump")" | tr -d x) of LOCAL's; servers $(cores "$name $k") cores busy" ;;
            *) note="" ;;
        esac
        copies=1
        [ "$k" = "2 backups at once" ] && copies=2
        printf '| %s | %s | %s | %s-%s | %.0f | %.0f | %s |\n' "$name" "$k" "$m" "$lo" "$hi" \
            "$(awk -v n="${!b}" -v s="$m" -v c=$copies 'BEGIN { print c * n / s / 1e6 }')" \
            "$(awk -v n="${!f}" -v s="$m" -v c=$copies 'BEGIN { print c * n / s }')" "$note"
    done
done
echo
echo "ratio: NNx TOOL = TOOL's time over this one (>1: faster than TOOL); this/limit: this backup's"
echo "time over the slower of reading the tree and writing its bytes (1: at the machine's limit;"
echo "synced: against writing them into a new file and syncing, as a backup's cartridge is synced"
echo "at its end; in place: against writing them over an existing file of that size and syncing,"
echo "as a backup onto a used cartridge does);"
echo "this/backup: this restore's time over the dump backup's (<=1: restore as fast as backup);"
echo "cores busy: CPU time of the ndmpd servers over wall time (user + sys, medians)."
if [ -n "$hist_tree" ]; then
    echo
    echo "file history: $history_files empty files in $((history_files / 1000)) directories, each backup on a"
    echo "server of its own; peak RSS is the server's VmHWM (largest of the rounds); ndmpd-own-core:"
    echo "our DMA with the server held to CPU 0 and the DMA to CPU 1 (standing in for a DMA on a host of"
    echo "its own, as far as two vCPUs that may share a physical core can)"
    echo
    printf '| DMA | what | median s | min-max s | peak RSS MiB | entries posted | HIST=y / HIST=n |\n|---|---|---|---|---|---|---|\n'
    for dmap in "${hist_dmas[@]}"; do
        for kind in dump tar; do
            for h in n y; do
                key="hist $dmap $kind HIST=$h"
                read -r m lo hi <<< "$(stats "${times[$key]}")"
                peak=$(printf '%s\n' ${hwm[$key]} | sort -n | tail -1)
                note=""
                [ "$h" = y ] && note=$(awk -v y="$m" -v n="$(med "hist $dmap $kind HIST=n")" 'BEGIN { printf "%.2f", y / n }')
                printf '| %s | %s HIST=%s | %s | %s-%s | %.0f | %s | %s |\n' "$dmap" "$kind" "$h" \
                    "$m" "$lo" "$hi" "$(awk -v k="$peak" 'BEGIN { print k / 1024 }')" \
                    "${entries[$key]}" "$note"
            done
        done
    done
fi
